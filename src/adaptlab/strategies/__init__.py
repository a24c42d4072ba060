"""Strategy registry: every module in this package defines one strategy.

``discover()`` imports them all so that ``@register`` has run; a new strategy is a
new module here (plus its row in the test matrix), nothing else. Strategies marked
``method = True`` decide what trains and can carry an objective (``adaptlab.objectives``:
DPO, ORPO, SimPO, KTO, GRPO, RLOO), which the registry lists under the objective's name.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import REGISTRY, Strategy, Task, get_strategy, register, summary

__all__ = ["REGISTRY", "Strategy", "Task", "discover", "get_strategy", "register", "summary"]

_PRIVATE = {"base"}


def discover() -> dict[str, type[Any]]:
    """Import every strategy module once, and list every objective (``adaptlab.objectives``) under its own name
    as ``{objective, method}`` (``_policy.py``); return the registry."""
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _PRIVATE and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    from ..objectives import discover as objectives
    from ._policy import composed

    for name, objective in objectives().items():
        if name in REGISTRY and getattr(REGISTRY[name], "objective_cls", None) is not objective:
            raise ValueError(f"'{name}' is both a strategy and an objective")
        REGISTRY.setdefault(name, composed(objective))
    return REGISTRY
