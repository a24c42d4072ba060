"""Contrastive few-shot fine-tuning in the spirit of SetFit.

Tunstall et al. 2022 (SetFit): with a handful of labelled examples, fine-tune
the sentence encoder contrastively on *pairs* -- same class: cosine similarity
towards 1, different classes: towards 0 (the cosine-similarity loss of
Reimers & Gurevych 2019) -- then fit a logistic-regression head on the
embeddings, which does not back-propagate into the encoder. k examples per
class give O(k^2) pairs, which is what makes so few labels go a long way.

Written here rather than through the ``setfit`` library, which runs its own
trainer (and pulls sentence-transformers and datasets): adaptlab measures every
strategy in its one loop. Two differences, both for that loop: the pairs are all
pairs *within a batch* (each embedding serves B-1 pairs; positives and negatives
weigh half each, as SetFit samples them in equal numbers), and the head trains
at the same time, on detached embeddings, with its own learning rate, instead
of in a second stage -- so the kept epoch's head matches its encoder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from ..models.modeling import freeze
from ..settings import StrategyConfig
from ._fewshot import EmbeddingOutput, build_encoder, encode, fit_linear_head, freeze_unused
from .base import Task, decay_groups, register


class ContrastiveConfig(StrategyConfig):
    name: Literal["contrastive"] = "contrastive"
    head_lr: float = Field(1e-2, gt=0)
    """Learning rate of the logistic-regression head (the encoder trains at ``train.lr``)."""
    pair_weight: float = Field(1.0, gt=0)
    """Weight of the pair loss against the head's cross-entropy."""


class PairModel(nn.Module):
    """Encoder giving normalised mean embeddings + a linear head on the detached embeddings."""

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.normalize(encode(self.encoder, inputs), dim=-1)

    def forward(self, **inputs: torch.Tensor) -> EmbeddingOutput:
        emb = self.embed(inputs)
        return EmbeddingOutput(logits=self.head(emb.detach()), embeddings=emb)


def pair_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared error between each pair's cosine similarity and 1 (same class) or 0, classes balanced."""
    i, j = torch.triu_indices(len(labels), len(labels), 1, device=labels.device)
    cosine = (embeddings[i] * embeddings[j]).sum(-1)
    same = labels[i] == labels[j]
    error = (cosine - same.float()).pow(2)
    parts = [error[mask].mean() for mask in (same, ~same) if mask.any()]
    return sum(parts) / len(parts) if parts else embeddings.sum() * 0


@register
class Contrastive:
    """SetFit-style: contrastive pairs fine-tune the sentence encoder, a logistic head on top (Tunstall et al. 2022)."""

    Config = ContrastiveConfig
    train_defaults = {"lr": 2e-5, "epochs": 20, "schedule": "linear", "batch_size": 16, "weight_decay": 0.0}
    auto = ()

    def __init__(self, config: ContrastiveConfig):
        self.config = config

    def build(self, task: Task) -> nn.Module:
        return build_encoder(task)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        freeze_unused(model)
        return PairModel(model, task.num_labels)

    def param_groups(self, module: PairModel, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        encoder = ((f"encoder.{n}", p) for n, p in module.encoder.named_parameters() if p.requires_grad)
        return decay_groups(encoder, lr, weight_decay) + [{"params": list(module.head.parameters()), "lr": self.config.head_lr, "weight_decay": 0.0}]

    def loss(self, outputs: EmbeddingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"]
        return self.config.pair_weight * pair_loss(outputs.embeddings, labels) + F.cross_entropy(outputs.logits.float(), labels)

    def adapt_episode(self, module: PairModel, support: dict, support_y: torch.Tensor, query: dict, n_way: int) -> torch.Tensor:
        """A logistic-regression head fitted on the support embeddings (SetFit's second stage)."""
        with torch.no_grad():
            x, q = module.embed(support), module.embed(query)
        return fit_linear_head(x, support_y, n_way)(q)

    def save(self, module: PairModel, folder: Path, task: Task) -> None:
        module.encoder.save_pretrained(folder / "encoder")
        task.backbone.tokenizer.save_pretrained(folder / "encoder")
        save_file({k: v.contiguous() for k, v in module.head.state_dict().items()}, folder / "head.safetensors")
        (folder / "contrastive.json").write_text(json.dumps(self.config.model_dump(), indent=2), encoding="utf-8")

    def load(self, folder: Path, task: Task) -> nn.Module:
        from transformers import AutoModel

        module = PairModel(freeze(AutoModel.from_pretrained(folder / "encoder")), task.num_labels)
        module.head.load_state_dict(load_file(folder / "head.safetensors"))
        return module
