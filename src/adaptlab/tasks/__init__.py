"""Task types (``--task``): every module in this package defines one.

``discover()`` imports them all so that ``@register_task`` has run; classification
is registered first, so it is what a table with text and label columns is taken for.
"""

from __future__ import annotations

import importlib

from .base import TASK_TYPES, TaskType, detect_task, get_task_type, register_task, task_of

__all__ = ["TASK_TYPES", "TaskType", "detect_task", "discover", "get_task_type", "register_task", "task_of"]

ORDER = ("classification", "feedback", "preference", "sft", "language_modelling")  # feedback, preference before sft: their
# rows have a prompt too


def discover() -> dict[str, TaskType]:
    """Every task type, in ``ORDER`` (the order columns are matched in, whatever order the modules were imported)."""
    for name in ORDER:
        importlib.import_module(f"{__name__}.{name}")
    return {**{name: TASK_TYPES[name] for name in ORDER}, **TASK_TYPES}
