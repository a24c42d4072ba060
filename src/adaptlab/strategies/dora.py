"""DoRA through peft: LoRA on the direction of each weight, with its magnitude learned apart.

Liu et al. 2024, §4.1: ``W' = m * (W + B A) / ||W + B A||_c`` -- the pretrained
weight is split into a column-wise magnitude ``m`` (trainable, initialised to
``||W||_c``) and a direction updated by a LoRA pair, which brings LoRA's learning
pattern closer to full fine-tuning's. Same options, targets, artefact (peft
adapter folder) and merging as :mod:`lora`; one magnitude vector per adapted
layer more, and slower steps (the norm is recomputed every forward pass).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from .base import Task, register
from .lora import LoRA, LoRAConfig


class DoRAConfig(LoRAConfig):
    name: Literal["dora"] = "dora"


@register
class DoRA(LoRA):
    """Weight-decomposed low-rank adaptation: LoRA on direction, learned magnitude, through peft (Liu et al. 2024)."""

    Config = DoRAConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 1e-3, "epochs": 3, "schedule": "linear"}

    def peft_config(self, task: Task, model: nn.Module):
        config = super().peft_config(task, model)
        config.use_dora = True
        return config
