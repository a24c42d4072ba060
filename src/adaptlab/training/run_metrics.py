"""What a run's ``metrics.json`` says about it, assembled from what training measured.

Kept apart from the runner (which trains and writes the folder) so that each field's source reads in one place:
the data a run used, what trained, what it cost, and how it scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..eval.metrics import lean
from ..models.adapted import adapted_modules
from ..settings import TrainConfig
from .checkpoint import LoopState
from .tracking import Trackers


@dataclass
class Rows:
    """The rows a run trains on, selects its epochs on and is finally scored on."""

    train: list[dict]
    select: list[dict]
    """Scored after each epoch (validation; the strategy's own held-out part for a strategy with its own data)."""
    eval: list[dict]
    own_data: bool = False
    """The strategy brings its own data (dapt's corpus): no validation block from the task's split."""


@dataclass
class Trained:
    """What training measured, for the rest of the run."""

    module: nn.Module
    state: LoopState
    start: dict[str, Any] | None
    """Held-out scores before any step (the history's epoch 0), when the strategy scores before."""
    added: list[dict]
    """Augmented training rows (``train.augment``)."""
    augment_seconds: float
    total_params: int
    probe_before: dict[str, Any]
    """The forgetting probe's measurement before training."""
    peak_memory_mb: float
    trackers: Trackers


def kept_scores(state: LoopState, cfg: TrainConfig) -> dict[str, Any]:
    """Scores of the weights the run ends with: the best epoch's, or the last one's without ``keep_best``."""
    if not state.history:
        return {}
    return state.history[state.best_epoch - 1] if cfg.keep_best else state.history[-1]


def on_training_batches(scores: dict[str, Any]) -> dict[str, float] | None:
    """The kept epoch's statistics over the batches it trained on (a strategy's ``step_stats``: DPO's reward
    accuracy on its training pairs), or None when the strategy logs none."""
    stats = {k.removeprefix("train_"): v for k, v in scores.items() if k.startswith("train_") and k != "train_loss"}
    return stats or None


def train_settings(state: LoopState, cfg: TrainConfig) -> dict[str, Any]:
    """What the run trained with, as settled by the loop: the lr (and how it was found), epochs, steps."""
    source = "given" if not state.lr_find else "range test" if state.lr_find["steps"] else "default (run too short to test)"
    return {"lr": state.lr, "lr_source": source, "epochs_planned": state.epochs,
            "epochs_run": sum(1 for h in state.history if h["epoch"] > 0), "optimizer_steps": state.step,
            "warmup_steps": state.warmup_steps, "patience": state.patience, "batch_size": cfg.batch_size,
            "gradient_checkpointing": state.gradient_checkpointing, "lr_find": state.lr_find}


def count_named(module: nn.Module, names: set[str]) -> int:
    """Parameters that trained at some point of the run (gradual unfreezing opens more over time)."""
    return sum(p.numel() for n, p in module.named_parameters() if n in names)


def run_metrics(strategy: str, backbone: str, train: TrainConfig, split_seed: int, packing: bool, setup: Any, task_type: Any,
                trained: Trained, rows: Rows) -> dict[str, Any]:
    """What ran on what: the strategy, backbone, task, seeds, the examples used and the parameters trained."""
    state, augmented = trained.state, train.augment.on
    trainable, total = count_named(trained.module, set(state.ever_trainable)), trained.total_params
    data = setup.data
    return {
        "strategy": strategy,
        "backbone": backbone,
        "task": {"source": data.source, "type": task_type.name, "data": setup.task_type.name, "labels": data.labels, **data.sampling},
        "seed": train.seed,
        "split_seed": split_seed,
        "train_examples": len(rows.train),
        **({"packed_examples": len(data.train)} if packing and len(data.train) != len(rows.train) else {}),
        "augmented_examples": len(trained.added) if augmented else None,
        "augment_seconds": round(trained.augment_seconds, 3) if augmented else None,
        "eval_examples": len(rows.eval),
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": trainable / total if total else 0.0,
        "adapted_modules": adapted_modules(trained.module, set(state.ever_trainable)),
        "epochs": len(state.history),
        "best_epoch": state.best_epoch,
    }


def cost_metrics(state: LoopState, earlier: dict[str, float]) -> dict[str, Any]:
    """Training time (with training a strategy did while preparing: MAD-X's language adapters) and throughput."""
    seconds = state.train_seconds
    return {
        "train_seconds": round(seconds + sum(earlier.values()), 3),
        "train_seconds_before_fit": earlier or None,
        "train_examples_per_second": round(state.examples / seconds, 2) if seconds else 0.0,
        "train_tokens_per_second": round(state.tokens / seconds, 1) if seconds else 0.0,
    }


def score_metrics(headline: Callable[[dict[str, Any]], dict[str, Any]], cfg: TrainConfig, setup: Any, task_type: Any,
                  trained: Trained, rows: Rows, final: dict[str, Any]) -> dict[str, Any]:
    """The held-out scores (the task's headline and the strategy's own), the kept epoch's training-batch and
    validation scores, and the settings the loop settled on."""
    kept = kept_scores(trained.state, cfg)
    return {
        "eval": {**task_type.headline(final), **headline(final)},
        "train": on_training_batches(kept),
        "validation": {k: v for k, v in lean(kept).items() if k != "epoch"} if setup.val_rows and not rows.own_data else None,
        "train_settings": train_settings(trained.state, cfg),
    }
