"""Atomic checkpoints, so that a killed run resumes where it stopped.

A checkpoint holds what changes during training and nothing else: the parameters
that are or were trainable (safetensors), the best weights seen so far, the
optimiser and scheduler state, the RNG state and the loop's counters. It is
written into ``checkpoint.tmp`` and renamed into place, so a kill at any moment
leaves either the previous checkpoint or the new one, never half of one.
Optimiser state is read back with ``torch.load(weights_only=True)``: no
unpickling of arbitrary objects.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass
class LoopState:
    """The loop's counters and history; everything needed to continue."""

    epoch: int = 0
    """Current epoch (0-based)."""
    batch: int = 0
    """Batches of the current epoch already consumed."""
    step: int = 0
    """Optimiser steps taken."""
    examples: int = 0
    tokens: int = 0
    """Input tokens trained on (padding excluded), summed over processes."""
    train_seconds: float = 0.0
    best_epoch: int = -1
    best_score: float = float("-inf")
    stale_epochs: int = 0
    best_loss: float = float("inf")
    """Lowest validation loss so far: early stopping waits while either it or the metric improves."""
    history: list[dict[str, Any]] = field(default_factory=list)
    ever_trainable: list[str] = field(default_factory=list)
    lr: float | None = None
    """The peak learning rate used (given, or chosen by the range test: a resume keeps it)."""
    epochs: int | None = None
    """The epochs planned (given, or set from the data size)."""
    patience: int | None = None
    warmup_steps: int = 0
    lr_find: dict[str, Any] | None = None
    """The range test's curve and choice, when it ran."""
    gradient_checkpointing: bool = False
    """Whether activations were recomputed in the backward pass (``train.gradient_checkpointing``)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each part of the loop so far (``phases.py``: steps, range test, evaluation, checkpoints)."""
    epoch_losses: list[float] = field(default_factory=list)
    """Training losses of the current epoch's batches so far (its mean goes into the history)."""
    log_window: list[float] = field(default_factory=list)
    epoch_stats: dict[str, list[float]] = field(default_factory=dict)
    """A strategy's per-step statistics of the current epoch so far (``step_stats``), as the losses."""
    """Losses since the last steps.jsonl line (that line averages them)."""


def rng_state() -> dict[str, Any]:
    """The global torch RNG state (CPU, and every CUDA device when there are any)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class BestWeights:
    """CPU copies of the trainable parameters at the best epoch.

    Only parameters that are (or were) trainable are copied. One that starts
    training only after the best epoch (gradual unfreezing) is copied by
    :meth:`cover` before its first update, when it still holds its best value.
    ``on_device``: copies stay beside the parameters (each process's shard, under FSDP).

    Nothing is copied before a best epoch exists, and the last epoch, when it is the best, is kept as the
    weights themselves (``update(..., copy=False)``): for full fine-tuning a copy is a second model in
    memory, held for the whole run if it were taken up front.
    """

    def __init__(self, on_device: bool = False) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.on_device = on_device
        self.recorded = False  # a best epoch exists (before it, there is nothing to keep)

    def _copy(self, p: torch.Tensor) -> torch.Tensor:
        return p.detach().clone() if self.on_device else p.detach().to("cpu", copy=True)

    def update(self, module: nn.Module, names: set[str], copy: bool = True) -> None:
        """The weights as they are now are the best; ``copy=False``: and they will not change again."""
        self.tensors = {n: self._copy(p) for n, p in module.named_parameters() if n in names} if copy else {}
        self.recorded = True

    def cover(self, module: nn.Module, names: set[str]) -> None:
        if not self.recorded:
            return
        for n, p in module.named_parameters():
            if n in names and n not in self.tensors:
                self.tensors[n] = self._copy(p)

    def restore(self, module: nn.Module) -> None:
        with torch.no_grad():
            for n, p in module.named_parameters():
                if n in self.tensors:
                    p.copy_(self.tensors[n].to(p.device))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Checkpointer:
    """Save and restore training state in ``folder`` atomically."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def _old(self) -> Path:
        return self.folder.with_name(self.folder.name + ".old")

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file() or (self._old / "state.json").is_file()

    def save(self, module: nn.Module, optimizer, scheduler, best: BestWeights, state: LoopState,
             extra: dict[str, torch.Tensor] | None = None) -> None:
        """``extra``: further tensors to keep (the moving average of the weights), read by :meth:`load_extra`."""
        tmp = self.folder.with_name(self.folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        names = set(state.ever_trainable)
        params = {n: p.detach().contiguous().cpu() for n, p in module.named_parameters() if n in names}
        save_file(params, tmp / "params.safetensors")
        save_file({n: t.contiguous() for n, t in best.tensors.items()}, tmp / "best.safetensors")
        if extra:
            save_file({n: t.detach().contiguous().cpu() for n, t in extra.items()}, tmp / "extra.safetensors")
        if optimizer is not None:  # None: training is over (a 1B model's AdamW state alone is 8.8 GB to write)
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}, tmp / "optim.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(state)), encoding="utf-8")
        if self.folder.exists():
            shutil.rmtree(self._old, ignore_errors=True)
            os.replace(self.folder, self._old)
        os.replace(tmp, self.folder)
        shutil.rmtree(self._old, ignore_errors=True)

    def _current(self) -> Path:
        return self.folder if (self.folder / "state.json").is_file() else self._old

    def peek(self) -> LoopState:
        """The saved loop state alone (cheap)."""
        return LoopState(**json.loads((self._current() / "state.json").read_text(encoding="utf-8")))

    def load(self, module: nn.Module, optimizer, scheduler, best: BestWeights) -> LoopState:
        folder = self._current()
        state = self.peek()
        params = load_file(folder / "params.safetensors")
        with torch.no_grad():
            for n, p in module.named_parameters():
                if n in params:
                    p.copy_(params[n].to(p.device))
        best.tensors = load_file(folder / "best.safetensors")
        best.recorded = state.best_epoch > 0
        if not (folder / "optim.pt").is_file():  # saved after the last epoch: nothing more to train
            return state
        saved = torch.load(folder / "optim.pt", weights_only=True, map_location="cpu")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"])
        return state

    def load_extra(self) -> dict[str, torch.Tensor]:
        path = self._current() / "extra.safetensors"
        return load_file(path) if path.is_file() else {}

    def remove(self) -> None:
        for folder in (self.folder, self._old, self.folder.with_name(self.folder.name + ".tmp")):
            shutil.rmtree(folder, ignore_errors=True)
