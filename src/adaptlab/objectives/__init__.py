"""Objectives: what a run optimises -- how a batch becomes a loss -- apart from what trains (a *method*).

Every module in this package defines one objective (``@register``); its registry name is its module name.
A run is ``{objective, method}``: ``-s dpo`` is the objective ``dpo`` on its default method (``lora``),
``{name: dpo, method: full}`` the same objective on full fine-tuning. The strategy registry lists each
objective under its own name (``strategies/_policy.py`` composes it with the method), so a new objective
is one module here plus its row in the test matrix.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import OBJECTIVES, Objective, get_objective, register

__all__ = ["OBJECTIVES", "Objective", "discover", "get_objective", "register"]


def discover() -> dict[str, type[Any]]:
    """Import every objective module once; return the registry."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return OBJECTIVES
