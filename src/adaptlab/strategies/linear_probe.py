"""Feature extraction / linear probe: the backbone is frozen, a small head trains.

The backbone runs once per example, under ``torch.inference_mode``, and its
pooled features are cached; every epoch then trains the head on the cache, so
epochs take milliseconds rather than a forward pass over the data (Alain &
Bengio 2016 probes; the "feature-based approach" of Devlin et al. 2019, §5.3).
Mean pooling with L2 normalisation is the sentence-transformers embedding the
bundled MiniLM was trained to produce. The artefact is the head alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers.modeling_outputs import SequenceClassifierOutput

from ..data.batching import BucketBatchSampler, Collate, lengths_of
from ..eval.metrics import model_inputs
from ..models.modeling import freeze, load_dtype
from ..settings import StrategyConfig
from .base import Task, register


class LinearProbeConfig(StrategyConfig):
    name: Literal["linear_probe"] = "linear_probe"
    pooling: Literal["mean", "cls"] = "mean"
    """How token states become one feature vector."""
    normalize: bool = True
    """L2-normalise the pooled features."""
    hidden: int = Field(0, ge=0)
    """Hidden units of an MLP head; 0 is a linear head (logistic regression)."""


def pool(states: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return states[:, 0]
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class ProbeModel(nn.Module):
    """Frozen encoder + trainable head; takes token ids, or cached ``features``."""

    def __init__(self, encoder: nn.Module, head: nn.Module, pooling: str = "mean", normalize: bool = True):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.pooling, self.normalize = pooling, normalize

    def train(self, mode: bool = True) -> ProbeModel:
        super().train(mode)
        self.encoder.eval()  # frozen features are computed without dropout, as cached
        return self

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        pooled = pool(states, attention_mask, self.pooling).float()
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, features: torch.Tensor | None = None, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        if features is None:
            features = self.features(**inputs)
        return SequenceClassifierOutput(logits=self.head(features))


def make_head(width: int, num_labels: int, hidden: int) -> nn.Module:
    if hidden:
        return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, num_labels))
    return nn.Linear(width, num_labels)


@register
class LinearProbe:
    """Frozen backbone, features cached once, a linear (or MLP) head trained on the cache."""

    Config = LinearProbeConfig
    # cached features make a step almost free: many more of them, and patience for a noisy validation score
    train_defaults = {"lr": 1e-2, "epochs": 30, "schedule": "linear", "weight_decay": 0.0, "min_steps": 1500, "max_epochs": 50,
                      "patience": 5}
    step_cost = 0.0  # one forward pass over the rows fills the cache

    def __init__(self, config: LinearProbeConfig):
        self.config = config

    def build(self, task: Task) -> nn.Module:
        from transformers import AutoModel

        return AutoModel.from_pretrained(task.backbone.source, dtype=load_dtype(task.train_config))

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        freeze(model)
        head = make_head(model.config.hidden_size, task.num_labels, self.config.hidden)
        return ProbeModel(model, head, self.config.pooling, self.config.normalize)

    @torch.inference_mode()
    def precompute(self, module: ProbeModel, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        """Run the frozen encoder once per example; rows become ``{features, labels}``."""
        module.eval()
        collate = Collate(pad_token_id=0)  # padded positions are masked out of the pooling
        out: list[dict] = [{}] * len(rows)
        batches = BucketBatchSampler(lengths_of(rows), batch_size, shuffle=False)
        for batch_ids in tqdm(batches, desc="caching features", unit="batch", leave=False, disable=None):
            batch = collate([rows[i] for i in batch_ids])
            feats = module.features(**{k: v.to(device) for k, v in model_inputs(batch).items()}).cpu()
            for j, i in enumerate(batch_ids):
                out[i] = {"features": feats[j].clone(), "labels": rows[i]["labels"]}
        return out

    def save(self, module: ProbeModel, folder: Path, task: Task) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in module.head.state_dict().items()}, folder / "head.safetensors")
        meta = {"width": module.encoder.config.hidden_size, "num_labels": task.num_labels, **self.config.model_dump()}
        (folder / "head.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, folder: Path, task: Task) -> nn.Module:
        meta = json.loads((folder / "head.json").read_text(encoding="utf-8"))
        head = make_head(meta["width"], meta["num_labels"], meta["hidden"])
        head.load_state_dict(load_file(folder / "head.safetensors"))
        return ProbeModel(freeze(self.build(task)), head, meta["pooling"], meta["normalize"])
