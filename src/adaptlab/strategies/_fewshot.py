"""Pieces the few-shot strategies share (protonet, maml, contrastive); not a strategy.

A sentence encoder (the backbone without its pooler) gives mean-pooled
embeddings; episodes are laid out support first (``data.episodes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.utils import ModelOutput

from ..data.batching import BucketBatchSampler, Collate, lengths_of
from ..data.episodes import EpisodeSampler, episode_sizes
from ..eval.metrics import model_inputs
from ..models.modeling import freeze
from ..settings import StrategyConfig


@dataclass
class EmbeddingOutput(ModelOutput):
    """What the few-shot models return: class scores and the sentence embeddings."""

    logits: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


class EpisodeOptions(StrategyConfig):
    """Options of the episodic strategies (their config classes derive from this one)."""

    n_way: int = Field(5, ge=2)
    """Classes per training episode (at most the number of classes)."""
    k_shot: int | None = Field(None, ge=1)
    """Support examples per class in a training episode; ``null``: half of the smallest class, at most 5."""
    queries: int | None = Field(None, ge=1)
    """Query examples per class in a training episode; ``null``: the rest of the smallest class, at most 10."""
    episodes: int | None = Field(None, ge=1)
    """Episodes per epoch; ``null``: about one pass over the training examples."""


def build_encoder(task: Any, **kwargs: Any) -> nn.Module:
    """The backbone as a sentence encoder (no classification head)."""
    from transformers import AutoModel

    dropout = getattr(task.train_config, "dropout", None)
    if dropout is not None:
        from ..models.modeling import set_dropout

        config = task.backbone.config.__class__.from_dict(task.backbone.config.to_dict())
        set_dropout(config, dropout)
        kwargs["config"] = config
    from ..models.modeling import load_dtype

    return AutoModel.from_pretrained(task.backbone.source, dtype=load_dtype(task.train_config), **kwargs)


def freeze_unused(encoder: nn.Module) -> None:
    """Mean pooling never reads BERT's pooler: keep it frozen so that all that trains gets gradients."""
    pooler = getattr(encoder, "pooler", None)
    if pooler is not None:
        freeze(pooler)


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def encode(encoder: nn.Module, inputs: dict[str, torch.Tensor], params: dict | None = None) -> torch.Tensor:
    """Mean-pooled sentence embeddings; with ``params``, a functional call with those weights."""
    if params is None:
        states = encoder(**inputs).last_hidden_state
    else:
        states = torch.func.functional_call(encoder, params, args=(), kwargs=inputs, strict=False).last_hidden_state
    return mean_pool(states, inputs["attention_mask"]).float()


def episode_sampler(options: Any, rows: list[dict], cfg: Any) -> EpisodeSampler:
    labels = [int(r["labels"]) for r in rows]
    k, q = episode_sizes(labels, options.k_shot, options.queries)
    return EpisodeSampler(labels, options.n_way, k, q, options.episodes, cfg.seed)


def relabel(labels: torch.Tensor, n_support: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Episode labels 0..n-1 (in order of first appearance in the support set) for support and query."""
    classes = list(dict.fromkeys(labels[:n_support].tolist()))
    remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long, device=labels.device)
    remap[torch.tensor(classes, device=labels.device)] = torch.arange(len(classes), device=labels.device)
    return remap[labels[:n_support]], remap[labels[n_support:]], len(classes)


def split_episode(batch: dict[str, torch.Tensor], n_support: int) -> tuple[dict, torch.Tensor, dict, torch.Tensor, int]:
    """Support inputs and labels, query inputs and labels, and the number of classes of an episode batch."""
    inputs = model_inputs(batch)
    support_y, query_y, n = relabel(batch["labels"], n_support)
    support = {k: v[:n_support] for k, v in inputs.items()}
    query = {k: v[n_support:] for k, v in inputs.items()}
    return support, support_y, query, query_y, n


def unwrap(model: nn.Module) -> nn.Module:
    """The module under an Accelerate/DDP wrapper."""
    return getattr(model, "module", model)


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    """One mean embedding per class ``0..n-1`` (Snell et al. 2017, eq. 1)."""
    sums = torch.zeros(n, embeddings.shape[-1], dtype=embeddings.dtype, device=embeddings.device)
    sums = sums.index_add(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=n).clamp(min=1).unsqueeze(-1).to(embeddings.dtype)
    return sums / counts


def neg_sq_distances(x: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Logits: minus the squared Euclidean distance to each prototype (Snell et al. 2017, eq. 2)."""
    return -(x.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1)


@torch.no_grad()
def embed_rows(embed: Any, rows: list[dict], batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings and labels of ``rows`` (token rows, or cached ``features``), in row order."""
    out: list[torch.Tensor | None] = [None] * len(rows)
    collate = Collate(pad_token_id=0)  # padded positions are masked out of the pooling
    for ids in BucketBatchSampler(lengths_of(rows), batch_size, shuffle=False):
        batch = collate([rows[i] for i in ids])
        inputs = {k: v.to(device) for k, v in model_inputs(batch).items()}
        emb = inputs["features"].float() if "features" in inputs else embed(inputs)
        for j, i in enumerate(ids):
            out[i] = emb[j]
    labels = torch.tensor([int(r["labels"]) for r in rows], device=device)
    return torch.stack(out), labels  # type: ignore[arg-type]


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def fit_linear_head(x: torch.Tensor, y: torch.Tensor, n: int, steps: int = 100, lr: float = 0.1) -> nn.Linear:
    """Logistic regression on fixed embeddings (full-batch Adam), as a few-shot head."""
    head = nn.Linear(x.shape[-1], n).to(x.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(head(x), y).backward()
            optimizer.step()
    return head
