"""Full fine-tuning: every parameter of the backbone and the new head trains.

The reference point every other strategy is measured against (Devlin et al. 2019,
§4): most accurate when data is plentiful, and the most expensive in memory,
time and disk (a whole model per task), and the most prone to forgetting.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from ..models.modeling import unfreeze
from ..settings import StrategyConfig
from .base import Task, register


class FullConfig(StrategyConfig):
    name: Literal["full"] = "full"


@register
class Full:
    """Full fine-tuning: every parameter trains (Devlin et al. 2019)."""

    Config = FullConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 5e-5, "epochs": 3, "schedule": "linear"}
    tasks = ("classification", "sft")

    def __init__(self, config: FullConfig):
        self.config = config

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        unfreeze(model.parameters())
        return model
