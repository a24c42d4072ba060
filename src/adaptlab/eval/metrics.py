"""Evaluation: accuracy, macro-F1 and loss, computed the same way for every strategy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch without its labels, generation fields (``gen_*``) and bookkeeping (``_*``): what a model's
    ``forward`` receives."""
    return {k: v for k, v in batch.items() if k != "labels" and not k.startswith(("gen_", "_"))}


def macro_f1(predictions: list[int], labels: list[int]) -> float:
    """Unweighted mean F1 over the classes present in labels or predictions (as scikit-learn)."""
    classes = sorted(set(labels) | set(predictions))
    scores = []
    for c in classes:
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


CORRECT = "correct"
"""Scores key: one character per evaluation example, ``1`` right and ``0`` wrong, in the evaluation split's
order (rows carry ``INDEX``; batches come in length buckets), so two runs of a comparison can be compared
example by example (``reporting/noise.py``); kept out of the per-epoch history."""
PER_EXAMPLE = (CORRECT, "generations")
"""Scores keys that hold one entry per evaluation example (``eval.generation.GENERATIONS`` is the second)."""


def lean(scores: dict[str, Any]) -> dict[str, Any]:
    """Scores without their per-example entries: what the per-epoch history and metrics.json keep."""
    return {k: v for k, v in scores.items() if k not in PER_EXAMPLE}


INDEX = "_index"
"""A row's position in its evaluation split (set by the loop; ``_`` keys never reach the model)."""


def indexed(rows: list[dict]) -> list[dict]:
    """Evaluation rows with their position, so that per-example results can be put back in split order."""
    return [{**r, INDEX: i} for i, r in enumerate(rows)]


def scores(predictions: list[int], labels: list[int], loss_sum: float, order: list[int] | None = None) -> dict[str, float]:
    n = len(labels)
    if order is not None and len(order) == n:  # back into the split's order
        predictions, labels = [predictions[i] for i in _argsort(order)], [labels[i] for i in _argsort(order)]
    return {
        CORRECT: "".join("1" if p == y else "0" for p, y in zip(predictions, labels)),
        "accuracy": sum(p == y for p, y in zip(predictions, labels)) / n if n else 0.0,
        "macro_f1": macro_f1(predictions, labels),
        "loss": loss_sum / n if n else 0.0,
        "examples": n,
        "top_prediction_share": max(Counter(predictions).values()) / n if n else 0.0,
    }


def _argsort(values: list[int]) -> list[int]:
    return sorted(range(len(values)), key=values.__getitem__)


@torch.inference_mode()
def evaluate(module: nn.Module, batches: Iterable[dict[str, torch.Tensor]], accelerator=None) -> dict[str, float]:
    """Score ``module`` on labelled batches (gathered across processes). Predictions and losses stay on
    the device until the end: one host sync for the whole pass, not one per batch."""
    was_training = module.training
    module.eval()
    predictions: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    losses: list[torch.Tensor] = []
    positions: list[torch.Tensor] = []
    device = None if accelerator is not None else next(module.parameters()).device  # Accelerate places its batches
    main = accelerator is None or accelerator.is_local_main_process
    for batch in tqdm(batches, desc="evaluating", unit="batch", leave=False, disable=None if main else True):
        if device is not None:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        logits = module(**model_inputs(batch)).logits.float()
        y = batch["labels"]
        loss = F.cross_entropy(logits, y, reduction="none")
        pred = logits.argmax(-1)
        where = batch[INDEX] if INDEX in batch else torch.full_like(y, -1)
        if accelerator is not None:
            pred, y, loss, where = accelerator.gather_for_metrics((pred, y, loss, where))
        positions.append(where)
        predictions.append(pred)
        labels.append(y)
        losses.append(loss.sum())
    loss_sum = torch.stack(losses).sum().item() if losses else 0.0
    predictions_, labels_ = (torch.cat(predictions).tolist(), torch.cat(labels).tolist()) if predictions else ([], [])
    order = torch.cat(positions).tolist() if positions else []
    module.train(was_training)
    return scores(predictions_, labels_, loss_sum, order if order and min(order) >= 0 else None)
