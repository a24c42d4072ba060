"""Top-k layer freezing: the top ``k`` transformer blocks and the head train.

Lower layers hold general features and upper layers task-specific ones
(Yosinski et al. 2014; for BERT, Lee et al. 2019 "What would Elsa do?" found
that tuning only the top quarter of the layers keeps ~90 % of full fine-tuning's
quality). Backpropagation stops at the lowest trainable block; and since the
blocks below it are frozen, their output for an example never changes: it is
computed once before training (:mod:`adaptlab.models.frozen_prefix`) and every
step runs only the top ``k`` blocks, forward and backward.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..models.frozen_prefix import KEY, cache_bytes, cache_prefix, install, pad_prefix
from ..models.modeling import freeze, layer_groups, unfreeze
from ..models.placement import require_separate_blocks
from ..settings import StrategyConfig
from .base import Task, register


class TopKConfig(StrategyConfig):
    name: Literal["top_k"] = "top_k"
    k: int = Field(2, ge=0)
    """Number of top transformer blocks that train with the head (0: the head alone)."""
    cache: bool = True
    """Compute the frozen blocks once per example and train the top on their cached output (the same
    result, without dropout in frozen blocks). Pays from the second epoch: MiniLM-L6 at k=2, 3 epochs of
    2,000 reviews, 23.6 s instead of 30.6 s at the same accuracy; a single epoch is left uncached."""
    cache_max_gb: float = Field(4.0, gt=0)
    """Largest cache kept in memory (tokens x width x 4 bytes); beyond it every step runs the whole model."""

log = logging.getLogger("adaptlab")


@register
class TopK:
    """Freeze all but the top k transformer blocks; those and the head train."""

    Config = TopKConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 1e-4, "epochs": 3, "schedule": "linear"}
    step_cost = 1.5  # a forward pass, and backward through the top k blocks only (demo sizes: 0.45x full's time)
    search_space = {"strategy.k": [1, 2, 3, 4]}
    """What ``adaptlab tune`` searches besides the shared settings (``training/space.py``)."""
    caveat = ("only the top k blocks adapt: the rest of the network (and, on a generative task, the habits of the "
              "instruction model it was tuned from) stays as it was, so a short run moves it less than updates of every "
              "layer do (Lee et al. 2019 find quality falls as k shrinks).")
    tasks = ("classification", "sft")

    def __init__(self, config: TopKConfig):
        self.config = config
        self.frozen = 0  # blocks below the trained ones, whose output is cached
        self.task: Task | None = None

    def check(self, task: Task) -> None:
        """Blocks of their own and enough of them, read from the backbone before anything loads."""
        found = task.backbone.layout()
        require_separate_blocks(found, self.name)
        if self.config.k > found.num_blocks:
            raise AdaptlabError(f"strategy.k={self.config.k} but the backbone has only {found.num_blocks} layers")

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        groups = layer_groups(model)
        k = self.config.k
        if k > len(groups.layers):
            raise AdaptlabError(f"strategy.k={k} but the backbone has only {len(groups.layers)} layers")
        freeze(model)
        unfreeze(groups.top)
        for layer in groups.layers[len(groups.layers) - k :]:
            unfreeze(layer)
        self.task, self.frozen = task, (len(groups.layers) - k if self.config.cache and k > 0 else 0)
        if self.frozen:
            install(model, self.frozen)
        return model

    def precompute(self, module: nn.Module, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        if not self.frozen or not rows:
            return rows
        epochs = getattr(self.task.train_config, "epochs", None)
        if isinstance(epochs, int) and epochs < 2:  # the cache costs about one epoch's frozen forward passes
            return rows
        size = cache_bytes(rows, self.task.backbone.config.hidden_size) / 2**30
        if size > self.config.cache_max_gb:
            log.info("top_k: the frozen blocks' output would take %.1f GB (> strategy.cache_max_gb=%g): not cached", size,
                     self.config.cache_max_gb)
            return rows
        return cache_prefix(module, self.frozen, rows, self._task_collate(), batch_size, device)

    def collate(self, pad_token_id: int) -> Any:
        return PrefixCollate(self._task_collate(pad_token_id))

    def _task_collate(self, pad_token_id: int | None = None) -> Any:
        pad = self.task.backbone.tokenizer.pad_token_id if pad_token_id is None else pad_token_id
        return self.task.type.collate(pad or 0)


class PrefixCollate:
    """The task's batches, with the rows' cached frozen-block output alongside when they carry one."""

    def __init__(self, collate: Any):
        self.collate = collate

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        if KEY not in rows[0]:
            return self.collate(rows)
        return pad_prefix(rows, self.collate([{k: v for k, v in r.items() if k != KEY} for r in rows]))
