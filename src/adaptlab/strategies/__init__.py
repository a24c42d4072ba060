"""Strategy registry: every module in this package defines one strategy.

``discover()`` imports them all so that ``@register`` has run; a new strategy is a
new module here (plus its row in the test matrix), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import REGISTRY, Strategy, Task, get_strategy, register, summary

__all__ = ["REGISTRY", "Strategy", "Task", "discover", "get_strategy", "register", "summary"]

_PRIVATE = {"base"}


def discover() -> dict[str, type]:
    """Import every strategy module once; return the registry."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _PRIVATE and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
