"""The per-step training log: steps.jsonl, the running loss for the progress bar, each epoch's means.

Losses (and a strategy's per-step statistics, its ``step_stats`` hook: DPO's reward accuracy and margin
on the pairs it trains on, as TRL logs them) stay on the device as they come (``add``) and are read in
one transfer every ``every`` steps (``flush``): a ``loss.item()`` per batch would make the CPU wait for
the GPU at every step, so it could never queue the next batch's kernels while the current ones run
(issue 14). A loss that is not finite is reported at the read, naming the first step where it appeared.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import AdaptlabError


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def _stat_mean(values: list[float]) -> float | None:
    """The mean of a statistic over the batches that measured it: a batch that could not (KTO's undesirable
    answers' reward in a batch of desirable ones only) reports NaN and is left out; None when none measured it."""
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


class StepLog:
    """Per-step JSONL log (loss, a strategy's statistics, learning rate, throughput) and running averages."""

    def __init__(self, path: Path | None, every: int, trackers: Any = None, total: int | None = None):
        # total: the optimiser steps planned, on every line (adaptlab ui's time left); early stopping may end sooner
        self.path, self.every, self.trackers, self.total = path, every, trackers, total
        self.window: list[float] = []
        self.epoch_losses: list[float] = []
        self.stats: dict[str, list[float]] = {}  # this logging window's statistics, by name
        self.epoch_stats: dict[str, list[float]] = {}
        self.pending: list[tuple[torch.Tensor, dict[str, torch.Tensor], int, int, float]] = []  # (loss, stats, step, epoch, lr)
        self.examples = self.epoch_examples = 0
        self.since = self.epoch_since = time.perf_counter()

    def truncate(self, step: int) -> None:
        """Drop lines past ``step`` (a resumed run logs them again)."""
        if self.path and self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            self.path.write_text("".join(line for line in lines if json.loads(line)["step"] <= step), encoding="utf-8")

    def add(self, loss: torch.Tensor, examples: int, step: int, epoch: int, lr: float,
            stats: dict[str, torch.Tensor] | None = None) -> None:
        self.pending.append((loss, {k: v.detach() for k, v in (stats or {}).items()}, step, epoch, lr))
        self.examples += examples
        self.epoch_examples += examples

    def flush(self) -> None:
        """Read the pending losses and statistics (one host sync); raise if a loss is NaN or infinite."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        flat = [t.detach().float().reshape(()) for loss, stats, *_ in pending for t in (loss, *stats.values())]
        values = iter(torch.stack(flat).tolist())
        for _, stats, step, epoch, lr in pending:
            value = next(values)
            if not math.isfinite(value):
                raise AdaptlabError(f"training loss became {value} at step {step} (epoch {epoch + 1}) with learning rate "
                                    f"{lr:.2e}: lower it (--lr), or let the range test choose (--lr auto)")
            self.window.append(value)
            self.epoch_losses.append(value)
            for name in stats:
                stat = next(values)
                self.stats.setdefault(name, []).append(stat)
                self.epoch_stats.setdefault(name, []).append(stat)

    def step(self, state: Any, epoch: int, lr: float) -> bool:
        """At every ``every``-th step: read the losses and write a line. True when it did."""
        if state.step % self.every:
            return False
        self.flush()
        now = time.perf_counter()
        line = {"step": state.step, "epoch": epoch + 1, "loss": round(_mean(self.window), 6),
                **{name: None if (m := _stat_mean(v)) is None else round(m, 6) for name, v in self.stats.items()},
                "lr": lr, "examples_per_second": round(self.examples / max(now - self.since, 1e-9), 2),
                "time": round(time.time(), 3), **({"steps_planned": self.total} if self.total else {})}
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        if self.trackers:
            self.trackers.log({k: v for k, v in line.items() if k not in ("step", "time") and v is not None}, state.step, "train/")
        self.window, self.stats, self.examples, self.since = [], {}, 0, now
        return True

    def running_loss(self) -> float:
        return _mean(self.epoch_losses)

    def epoch_rate(self) -> float:
        return self.epoch_examples / max(time.perf_counter() - self.epoch_since, 1e-9)

    def epoch_summary(self) -> dict[str, float]:
        """The epoch that just ended: its mean training loss (``train_loss``) and the mean of each statistic
        (``train_<name>``, over the batches it trained on); starts the next epoch."""
        self.flush()
        out = {"train_loss": self.running_loss(), **{f"train_{name}": _stat_mean(v) for name, v in self.epoch_stats.items()}}
        self.epoch_losses, self.epoch_stats, self.epoch_examples, self.epoch_since = [], {}, 0, time.perf_counter()
        return out
