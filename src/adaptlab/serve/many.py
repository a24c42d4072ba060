"""Many trained runs over one backbone in memory: ``adaptlab.load_many([...])``.

Serving ten tasks adapted from one backbone should cost one backbone plus ten
adapters, not ten backbones. :func:`load_many` loads each run with its own
strategy (any strategy: peft adapters of different kinds, bottleneck adapters,
heads with different label sets) and then makes every tensor that is bit-identical
to one already loaded point to that one: the frozen backbone weights are held
once, and each run keeps only what it trained. A request names the run it is
for, which picks that run's module; nothing is copied or swapped, so switching
costs nothing and runs can be served in any order.

Sharing by content rather than by name is what makes this work across peft's
and adaptlab's different wrappers (``base_layer``, ``modules_to_save``,
``Adapted.base``): a frozen weight is the same tensor whatever it is called.
The modules are for inference only: the shared tensors must not be changed in
place (merging or training one run would change all of them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AdaptlabError
from ..models.backbones import Backbone, load_backbone, resolve_ref
from .predict import Prediction, Predictor, read_run


@dataclass
class TensorPool:
    """Tensors already held, by a cheap content key; identical new ones are replaced by them."""

    by_key: dict[tuple, list[torch.Tensor]] = field(default_factory=dict)

    @staticmethod
    def key(t: torch.Tensor) -> tuple:
        flat = t.detach().reshape(-1)
        probe = flat[:: max(1, flat.numel() // 64)].float().sum().item() if flat.numel() else 0.0
        return (tuple(t.shape), t.dtype, t.device.type, probe)

    def intern(self, t: torch.Tensor) -> torch.Tensor:
        """A held tensor equal to ``t`` (bit for bit), or ``t`` itself, now held."""
        bucket = self.by_key.setdefault(self.key(t), [])
        for held in bucket:
            if held is t or torch.equal(held, t):
                return held
        bucket.append(t)
        return t


@torch.no_grad()
def share_weights(module: nn.Module, pool: TensorPool) -> None:
    """Point every parameter and buffer of ``module`` equal to a pooled tensor at that tensor."""
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None:
                held = pool.intern(p)
                if held is not p:
                    sub._parameters[name] = held if isinstance(held, nn.Parameter) else nn.Parameter(held, requires_grad=False)
        for name, b in list(sub._buffers.items()):
            if b is not None:
                sub._buffers[name] = pool.intern(b)


def unique_bytes(modules: Iterable[nn.Module]) -> int:
    """Bytes of distinct tensor storage held by ``modules`` (shared storage counted once)."""
    seen: set[int] = set()
    total = 0
    for module in modules:
        for t in list(module.parameters()) + list(module.buffers()):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total += t.untyped_storage().nbytes()
    return total


class ManyPredictor:
    """Several finished runs sharing their backbone's weights; ``predict(texts, run=...)``."""

    def __init__(self, run_dirs: list[str | Path], device: str | None = None):
        if not run_dirs:
            raise AdaptlabError("load_many needs at least one run folder")
        self.pool = TensorPool()
        backbones: dict[str, Backbone] = {}
        self.predictors: dict[str, Predictor] = {}
        for run_dir in run_dirs:
            name = str(run_dir)
            if name in self.predictors:
                raise AdaptlabError(f"run folder given twice: {name}")
            run, cfg, _ = read_run(run_dir)
            source = resolve_ref(cfg.backbone, run.parent)  # "@stage" backbones live beside the run
            if source not in backbones:  # config and tokenizer once per backbone
                backbones[source] = load_backbone(source)
            predictor = Predictor(run_dir, device, backbone=backbones[source])
            share_weights(predictor.module, self.pool)
            self.predictors[name] = predictor

    @property
    def runs(self) -> list[str]:
        return list(self.predictors)

    def __getitem__(self, run: str | Path) -> Predictor:
        if str(run) not in self.predictors:
            raise AdaptlabError(f"run {run} is not loaded; loaded: {', '.join(self.predictors)}")
        return self.predictors[str(run)]

    def predict(self, texts: list[str], run: str | Path, batch_size: int = 64) -> list[Prediction]:
        """Classify ``texts`` with the run ``run`` (its adapter and head over the shared backbone)."""
        return self[run].predict(texts, batch_size=batch_size)

    def memory_bytes(self) -> int:
        """Distinct tensor bytes held by all loaded runs together."""
        return unique_bytes(p.module for p in self.predictors.values())


def load_many(run_dirs: list[str | Path], device: str | None = None) -> ManyPredictor:
    """Load several run folders over one copy of their backbone's weights."""
    return ManyPredictor(run_dirs, device)


def predict_rows(run_dirs: list[Path], texts: list[str], batch_size: int = 64) -> list[dict[str, Any]]:
    """One output row per text (per run when several runs are given, over one shared backbone)."""
    predictors = list(load_many(run_dirs).predictors.values())
    rows = []
    for predictor in predictors:
        run = {"run": str(predictor.run_dir)} if len(predictors) > 1 else {}
        if predictor.generative:  # an sft run answers each text as a prompt
            rows += [{**run, "prompt": text, "output": out} for text, out in zip(texts, predictor.generate(texts, progress=True))]
            continue
        for text, p in zip(texts, predictor.predict(texts, batch_size=batch_size, progress=True)):
            rows.append({**run, "text": text, **p.as_dict()})
    return rows
