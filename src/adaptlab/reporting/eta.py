"""The time left in a comparison: each pending strategy's work, priced at this machine's measured speed.

The mean time of the finished strategies says little about the next one (issue 27: after a 20 s linear probe,
``compare`` said "about 40 s left" before a LoRA run of 9 minutes). Instead each pending run's work is counted
in *forward-token units* from what is known before it starts -- its training tokens per epoch, its planned
epochs and range-test steps (the loop's own plan: ``planned_epochs``, ``lr_find.budget``) and its strategy's
declared ``step_cost`` (a training step's cost in inference forward passes over the same batch) -- and priced
with seconds per unit measured on the runs that finished, from their ``timing`` block:

- training: the optimiser steps and range tests of finished runs that trained through the backbone give the
  seconds per cost-weighted token; before any has finished, the forgetting probe's forward passes (the same
  reference set for every strategy) price a forward token;
- evaluation, the probe, preparing and saving: the finished runs' own times for the same rows (an epoch's
  validation pass scaled from the final evaluation by the number of rows).

A strategy with cached features (``step_cost`` 0: the linear probe) costs one forward pass over its rows (its
validation passes read the cache); one that trains nothing (``step_cost`` None: zero-shot) only its evaluation.
Runs that stop early finish sooner than planned: the estimate is for the planned epochs.
"""

from __future__ import annotations

from typing import Any

from ..config import RunConfig
from ..data.batching import lengths_of
from ..strategies import get_strategy
from ..training.lr_find import budget
from .estimate import planned_epochs, steps_per_epoch

FIXED = ("prepare", "score_before", "forgetting_probe", "final_eval", "save")


def pending_seconds(cfg: RunConfig, setup: Any, finished: list[dict[str, Any]]) -> float | None:
    """Estimated seconds of one pending run; None before any run has finished."""
    from ..training.runner import resolve_train, run_task_type

    timed = [m for m in finished if m.get("timing")]
    if not timed:
        return None
    cls = get_strategy(cfg.strategy.name)
    train = resolve_train(cfg, run_task_type(cls(cfg.strategy), setup, cfg))
    per_unit, forward = _prices(timed)
    fixed = sum(sum(m["timing"].get(k, 0.0) for k in FIXED if k != "forgetting_probe") + 2 * _probe_pass(m) for m in timed) / len(timed)
    eval_rows = max(1, sum(m.get("eval_examples") or 0 for m in timed) / len(timed))
    per_eval_row = sum(m["timing"].get("final_eval", 0.0) for m in timed) / len(timed) / eval_rows
    tokens = sum(lengths_of(setup.train_rows))
    if cls.step_cost is None or not tokens:  # nothing trains: evaluation only
        return fixed
    epochs = planned_epochs(train, len(setup.train_rows))
    steps = epochs * steps_per_epoch(train, len(setup.train_rows))
    probe = budget(train, steps) if train.lr in (None, "auto") and "lr" in cls.auto else 0
    validation = epochs * len(setup.val_rows) * per_eval_row
    if cls.step_cost == 0:  # cached features: one forward pass over the rows, then nearly free steps
        return fixed + forward * (tokens + sum(lengths_of(setup.val_rows)))
    work = cls.step_cost * tokens * (epochs + probe / max(steps / epochs, 1))
    return fixed + validation + work * per_unit


def _prices(timed: list[dict[str, Any]]) -> tuple[float, float]:
    """(seconds per cost-weighted training token, seconds per inference forward token) on this machine."""
    seconds = units = 0.0
    for m in timed:
        cost = get_strategy(m["strategy"]).step_cost
        trained = (m.get("train_tokens_per_second") or 0.0) * (m.get("train_seconds") or 0.0)
        t = m["timing"]
        if cost and trained and t.get("steps"):
            steps = (m.get("train_settings") or {}).get("optimizer_steps") or 1
            tested = ((m.get("train_settings") or {}).get("lr_find") or {}).get("steps") or 0
            seconds += t["steps"] + t.get("range_test", 0.0)
            units += cost * trained * (1 + tested / steps)
    probe = [_probe_pass(m) / m["forgetting"]["tokens"] for m in timed
             if (m.get("forgetting") or {}).get("tokens") and m["timing"].get("forgetting_probe")]
    forward = sum(probe) / len(probe) if probe else 0.0
    return (seconds / units if units else forward), forward


def _probe_pass(m: dict[str, Any]) -> float:
    """Seconds of one pass of the forgetting probe; a run measures it before and after training (``forgetting.passes``
    2), one that trained nothing only once (1; runs written before that field measured twice)."""
    return m["timing"].get("forgetting_probe", 0.0) / ((m.get("forgetting") or {}).get("passes") or 2)


def time_left(pending: list[tuple[RunConfig, Any]], finished: list[dict[str, Any]]) -> float | None:
    """Seconds left for ``pending`` (config, setup) runs, or None when nothing has finished to price them by."""
    estimates = [pending_seconds(cfg, setup, finished) for cfg, setup in pending]
    return None if any(e is None for e in estimates) else sum(e for e in estimates if e is not None)
