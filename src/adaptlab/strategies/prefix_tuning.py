"""Prefix tuning through peft: trainable key/value prefixes in every attention layer.

Li & Liang 2021, §4: ``num_virtual_tokens`` key and value vectors are prepended
in every layer's attention (peft passes them as the past key/value cache), so
every position of every layer can attend to them, while all pretrained weights
stay frozen. ``prefix_projection`` reparameterises them through a two-layer MLP,
which the paper found steadier to train (§4.3), at the price of many more
trainable parameters. The new classification head trains too, at ``head_lr``.
Works on encoders and on causal LMs (the classifier still sees the token ids,
so it finds the last real token). The artefact is a peft adapter folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from torch import nn

from ..config import StrategyConfig
from .base import Task, register
from .lora import load_adapter, peft_classifier, save_adapter
from .prompt_tuning import prompt_and_head_groups


class PrefixTuningConfig(StrategyConfig):
    name: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(10, ge=1)
    """Prefix length per layer (Li & Liang: 10 for classification-sized inputs, up to 200 for generation)."""
    prefix_projection: bool = False
    """Reparameterise the prefixes through an MLP (steadier, many more trainable parameters)."""
    encoder_hidden_size: int = Field(128, ge=1)
    """Hidden width of that MLP."""
    head_lr: float = Field(2e-3, gt=0)
    """Learning rate of the new classification head (the prefixes train at ``train.lr``)."""


@register
class PrefixTuning:
    """Prefix tuning: trainable key/value prefixes in every layer, frozen model, through peft (Li & Liang 2021)."""

    Config = PrefixTuningConfig
    train_defaults = {"lr": 1e-2, "epochs": 5, "schedule": "linear"}
    caveat = ("prefixes start from random values and on small models need more steps than full or LoRA training, "
              "and results swing with the learning rate (Li & Liang 2021, §4.3, §7.2).")

    def __init__(self, config: PrefixTuningConfig):
        self.config = config

    def peft_config(self, task: Task):
        from peft import PrefixTuningConfig as PeftPrefixTuningConfig
        from peft import TaskType

        c = self.config
        return PeftPrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=c.num_virtual_tokens,
                                      prefix_projection=c.prefix_projection, encoder_hidden_size=c.encoder_hidden_size)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        return peft_classifier(model, self.peft_config(task))

    def param_groups(self, module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return prompt_and_head_groups(module, lr, self.config.head_lr, weight_decay)

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        save_adapter(module, folder, task)

    def load(self, folder: Path, task: Task) -> nn.Module:
        return load_adapter(folder, task)
