"""Gradual unfreezing with discriminative learning rates (ULMFiT).

Howard & Ruder 2018, §3.2-3.3: the head trains first; each epoch (or every
``unfreeze_every`` epochs) the next group of layers below is unfrozen, so the
lower, more general layers change last and least. Discriminative fine-tuning
gives each group down ``lr / lr_decay`` of the group above it (their eq. 2 with
``eta^(l-1) = eta^l / 2.6``), and the slanted triangular schedule (their eq. 3)
warms up briefly and decays long.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from torch import nn

from ..models.modeling import freeze, layer_groups, unfreeze
from ..models.placement import require_separate_blocks
from ..settings import StrategyConfig
from .base import Task, decay_groups, register


class GradualUnfreezeConfig(StrategyConfig):
    name: Literal["gradual_unfreeze"] = "gradual_unfreeze"
    layers_per_group: int = Field(1, ge=1)
    """Transformer blocks unfrozen together at each stage."""
    unfreeze_every: int = Field(1, ge=1)
    """Epochs between two unfreezing stages."""
    lr_decay: float = Field(2.6, ge=1.0)
    """Each group down trains at ``lr / lr_decay`` of the group above (ULMFiT: 2.6)."""
    embeddings: bool = True
    """Unfreeze the embeddings as the last stage (else they stay frozen)."""


@register
class GradualUnfreeze:
    """ULMFiT: unfreeze one layer group per epoch from the top, discriminative learning rates."""

    Config = GradualUnfreezeConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 2e-4, "epochs": 4, "schedule": "slanted_triangular"}
    step_cost = 1.5  # blocks open epoch by epoch (demo: 0.41x full's time per epoch)
    auto = ("lr",)  # epochs open the layer groups one by one
    tasks = ("classification", "sft")

    def __init__(self, config: GradualUnfreezeConfig):
        self.config = config
        self.groups: list[list[nn.Parameter]] = []

    def check(self, task: Task) -> None:
        require_separate_blocks(task.backbone.layout(), self.name)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        g = layer_groups(model)
        size = self.config.layers_per_group
        blocks = g.layers[::-1]
        self.groups = [g.top] + [sum(blocks[i : i + size], []) for i in range(0, len(blocks), size)]
        if self.config.embeddings and g.bottom:
            self.groups.append(g.bottom)
        freeze(model)
        unfreeze(self.groups[0])
        return model

    def stages_open(self, epoch: int) -> int:
        return min(1 + epoch // self.config.unfreeze_every, len(self.groups))

    def on_epoch_start(self, epoch: int, module: nn.Module) -> None:
        """Unfreeze every group due by ``epoch`` (idempotent, so resuming replays it safely)."""
        for group in self.groups[: self.stages_open(epoch)]:
            unfreeze(group)

    def param_groups(self, module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """One optimiser group per layer group, each ``lr_decay`` times slower than the one above.

        Frozen groups are in the optimiser from the start; AdamW skips parameters
        without gradients, so they stay untouched until unfrozen.
        """
        names = {id(p): n for n, p in module.named_parameters()}
        out = []
        for depth, params in enumerate(self.groups):
            out += decay_groups(((names[id(p)], p) for p in params), lr / self.config.lr_decay**depth, weight_decay)
        return out
