"""Runs that did not learn: flagged, with the evidence and the next thing to try.

A classifier that ends at the majority-class baseline has learned nothing a
constant could not do, however long it trained. Such a run is worse than no
run in a comparison -- it looks like an answer -- so it is flagged in
``metrics.json`` and the report, and ``compare`` never recommends it. A run
that trains nothing (zero-shot, nearest class mean on frozen features) is held
to the same test: at the majority class it is no answer either.

"Within noise" is one-sided: accuracy no more than two standard errors of a
proportion (``sqrt(b (1 - b) / n)`` for baseline ``b`` on ``n`` evaluation
examples) above the baseline. The evidence read from the run: whether the
training loss fell across epochs (flat or rising loss points at the learning
rate), and whether the predictions collapsed onto one class.
"""

from __future__ import annotations

import math
from typing import Any

FLAT = 0.05
"""A training loss that fell by less than this share from the first epoch to the last counts as flat."""
ONE_CLASS = 0.95
"""Predictions collapsed when this share of them is one class."""


def did_not_learn(accuracy: float | None, baseline: float, examples: int, top_share: float | None,
                  train_losses: list[float], lr: float | None, trained: bool) -> dict[str, Any] | None:
    """The flag, evidence and advice for a classification run; ``None`` when it beats the majority class beyond noise."""
    if accuracy is None or not examples:
        return None
    margin = 2 * math.sqrt(max(baseline * (1 - baseline), 1e-12) / examples)
    if accuracy > baseline + margin:
        return None
    evidence = [f"accuracy {accuracy:.3f} is within noise of the majority-class baseline {baseline:.3f} "
                f"(two standard errors: {margin:.3f} on {examples} examples)"]
    if not trained:
        evidence.append("it trains nothing: its predictions are the pretrained model's as it is")
        return {"flag": True, "evidence": evidence, "next": "a strategy that trains on the task (linear_probe, lora, full), "
                "or a backbone whose features separate these classes"}
    trend = loss_trend(train_losses)
    if trend:
        evidence.append(f"training loss {trend} ({' -> '.join(f'{x:.4f}' for x in train_losses)})")
    if top_share is not None and top_share >= ONE_CLASS:
        evidence.append(f"{top_share:.0%} of the predictions are one class")
    return {"flag": True, "evidence": evidence, "next": advice(trend, lr)}


def loss_trend(losses: list[float]) -> str | None:
    if len(losses) < 2 or not losses[0]:
        return "over a single epoch" if losses else None
    change = (losses[-1] - losses[0]) / abs(losses[0])
    if change > FLAT:
        return "rose"
    return "stayed flat" if change > -FLAT else "fell"


def advice(trend: str | None, lr: float | None) -> str:
    rate = f"{lr:.1e}" if lr else "the rate used"
    if trend == "rose":
        return f"the learning rate ({rate}) is too high for this strategy: try --lr {lr / 10:.1e}" if lr else "lower the learning rate"
    if trend == "stayed flat":
        return (f"the weights hardly moved at {rate}: let the range test choose (--lr auto) or raise it tenfold; "
                "or give it more optimiser steps (--epochs auto, a smaller --batch-size)")
    return ("the loss fell but the predictions did not improve: more steps (--epochs auto) on more data, or a strategy "
            "that trains more of the model; with imbalanced classes check macro-F1")
