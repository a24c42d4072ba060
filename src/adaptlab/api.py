"""Entry points of the Python API that span the layers below them.

``adaptlab.train`` runs one strategy (:func:`adaptlab.training.runner.train`) or,
for a recipe with ``stages``, the whole pipeline (:mod:`adaptlab.reporting.pipeline`);
choosing between the two is the caller's business, not the runner's, so the
runner never imports the pipeline that is built on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import RunConfig
from .reporting.pipeline import has_stages, train_stages
from .training.runner import RunResult, _as_dict, fields_to_overrides
from .training.runner import train as train_one


def train(
    recipe: str | Path | dict | RunConfig | None = None,
    *,
    overrides: list[str] | dict[str, Any] | None = None,
    resume: bool = False,
    **fields: Any,
) -> RunResult:
    """Train one strategy (or every stage of a recipe with ``stages``); return the finished run.

    ``fields`` are settings by name: ``strategy="lora"``, ``backbone=...``,
    ``data="reviews.csv"``, ``eval_data=...``, ``output=...``, or any dotted key
    with ``__`` for the dot (``train__lr=3e-4``); ``overrides`` takes dotted keys
    (``{"train.lr": 3e-4}`` or ``["train.lr=3e-4"]``).
    """
    if has_stages(recipe):
        return train_stages(recipe, {**fields_to_overrides(fields), **_as_dict(overrides)}, resume)
    return train_one(recipe, overrides=overrides, resume=resume, **fields)
