"""Data: reading files and bundled datasets, validating them, batching them."""

from .task import Examples, TaskData, build_task

__all__ = ["Examples", "TaskData", "build_task"]
