"""Prototypical networks: a class is the mean embedding of its examples.

Snell et al. 2017: an encoder maps every example to an embedding; the
*prototype* of a class is the mean embedding of its support examples (eq. 1),
and a query is scored by minus its squared Euclidean distance to each prototype
(eq. 2). Trained episodically (§2.2): every batch is an N-way K-shot episode
whose prototypes come from its own support set, so the encoder learns an
embedding in which classes cluster, for any set of classes. With
``episodic: false`` nothing trains: the pretrained encoder's mean embeddings
of the training examples are the prototypes (a nearest-centroid classifier).

After training, the prototypes of the task's classes are computed from all the
training examples; the artefact holds them (and the encoder if it trained).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..eval.metrics import evaluate
from ..models.modeling import freeze
from ._fewshot import (
    EmbeddingOutput,
    EpisodeOptions,
    build_encoder,
    class_means,
    device_of,
    embed_rows,
    encode,
    episode_sampler,
    freeze_unused,
    neg_sq_distances,
    relabel,
    unwrap,
)
from .base import Task, batch_sampler, register


class ProtoNetConfig(EpisodeOptions):
    name: Literal["protonet"] = "protonet"
    episodic: bool = True
    """Train the encoder on N-way K-shot episodes; ``false``: frozen pretrained encoder, prototypes only."""


class ProtoModel(nn.Module):
    """Encoder + a buffer of class prototypes; logits are minus squared distances to them."""

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("prototypes", torch.zeros(num_labels, encoder.config.hidden_size))

    def embed(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return encode(self.encoder, inputs)

    def forward(self, features: torch.Tensor | None = None, **inputs: torch.Tensor) -> EmbeddingOutput:
        emb = features.float() if features is not None else self.embed(inputs)
        return EmbeddingOutput(logits=neg_sq_distances(emb, self.prototypes), embeddings=emb)


@register
class ProtoNet:
    """Prototypical networks: classes are mean embeddings, encoder trained on episodes (Snell et al. 2017)."""

    Config = ProtoNetConfig
    train_defaults = {"lr": 2e-5, "epochs": 5, "schedule": "linear", "weight_decay": 0.0}
    auto = ()

    def __init__(self, config: ProtoNetConfig):
        self.config = config
        self.support: list[dict] | None = None  # the training rows: the support set of the task's prototypes
        self.episodes = None
        self.batch_size = 64

    def build(self, task: Task) -> nn.Module:
        return build_encoder(task)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        if self.config.episodic:
            freeze_unused(model)
        else:
            freeze(model)
        self.batch_size = getattr(task.train_config, "eval_batch_size", 64)
        return ProtoModel(model, task.num_labels)

    @torch.inference_mode()
    def precompute(self, module: ProtoModel, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        """A frozen encoder runs once per example (cached embeddings); a trained one every time."""
        if self.config.episodic:
            return rows
        module.eval()
        emb, _ = embed_rows(module.embed, rows, batch_size, device)
        return [{"features": e.cpu(), "labels": r["labels"]} for e, r in zip(emb, rows)]

    def batch_sampler(self, rows: list[dict], cfg: Any) -> Any:
        self.support = rows
        if not self.config.episodic:
            return batch_sampler(rows, cfg)  # never iterated: nothing trains
        self.episodes = episode_sampler(self.config, rows, cfg)
        return self.episodes

    def loss(self, outputs: EmbeddingOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Episode loss: queries against the prototypes of the episode's own support set."""
        n_support = self.episodes.n_support
        support_y, query_y, n = relabel(batch["labels"], n_support)
        prototypes = class_means(outputs.embeddings[:n_support], support_y, n)
        return F.cross_entropy(neg_sq_distances(outputs.embeddings[n_support:], prototypes), query_y)

    def refresh(self, model: nn.Module) -> None:
        """Prototypes of the task's classes from every training example, with the current encoder."""
        module = unwrap(model)
        if self.support is None:
            return
        was_training = module.training
        module.eval()
        emb, labels = embed_rows(module.embed, self.support, self.batch_size, device_of(module))
        module.prototypes.copy_(class_means(emb, labels, module.prototypes.shape[0]))
        module.train(was_training)

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, float]:
        self.refresh(model)
        return evaluate(model, batches, accelerator)

    def adapt_episode(self, module: ProtoModel, support: dict, support_y: torch.Tensor, query: dict, n_way: int) -> torch.Tensor:
        prototypes = class_means(module.embed(support), support_y, n_way)
        return neg_sq_distances(module.embed(query), prototypes)

    def save(self, module: ProtoModel, folder: Path, task: Task) -> None:
        self.refresh(module)  # the kept (best) encoder's prototypes
        save_file({"prototypes": module.prototypes.contiguous().cpu()}, folder / "prototypes.safetensors")
        (folder / "protonet.json").write_text(json.dumps(self.config.model_dump(), indent=2), encoding="utf-8")
        if self.config.episodic:
            module.encoder.save_pretrained(folder / "encoder")
            task.backbone.tokenizer.save_pretrained(folder / "encoder")

    def load(self, folder: Path, task: Task) -> nn.Module:
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(folder / "encoder") if (folder / "encoder").is_dir() else build_encoder(task)
        module = ProtoModel(freeze(encoder), task.num_labels)
        module.prototypes.copy_(load_file(folder / "prototypes.safetensors")["prototypes"])
        return module
