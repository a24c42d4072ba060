"""Top-k layer freezing: the top ``k`` transformer blocks and the head train.

Lower layers hold general features and upper layers task-specific ones
(Yosinski et al. 2014; for BERT, Lee et al. 2019 "What would Elsa do?" found
that tuning only the top quarter of the layers keeps ~90 % of full fine-tuning's
quality). Backpropagation stops at the lowest trainable block, so a step costs a
full forward pass but only ``k`` blocks of backward pass.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..models.modeling import freeze, layer_groups, unfreeze
from ..settings import StrategyConfig
from .base import Task, register


class TopKConfig(StrategyConfig):
    name: Literal["top_k"] = "top_k"
    k: int = Field(2, ge=0)
    """Number of top transformer blocks that train with the head (0: the head alone)."""


@register
class TopK:
    """Freeze all but the top k transformer blocks; those and the head train."""

    Config = TopKConfig
    train_defaults = {"lr": 1e-4, "epochs": 3, "schedule": "linear"}
    caveat = ("only the top k blocks adapt: the rest of the network (and, on a generative task, the habits of the "
              "instruction model it was tuned from) stays as it was, so a short run moves it less than updates of every "
              "layer do (Lee et al. 2019 find quality falls as k shrinks).")
    tasks = ("classification", "sft")

    def __init__(self, config: TopKConfig):
        self.config = config

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        groups = layer_groups(model)
        k = self.config.k
        if k > len(groups.layers):
            raise AdaptlabError(f"strategy.k={k} but the backbone has only {len(groups.layers)} layers")
        freeze(model)
        unfreeze(groups.top)
        for layer in groups.layers[len(groups.layers) - k :]:
            unfreeze(layer)
        return model
