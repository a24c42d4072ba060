"""LoRA through peft: low-rank updates beside frozen weight matrices.

Hu et al. 2021, §4: each adapted weight ``W`` becomes ``W + (alpha / r) * B A``
with ``A`` (r x d) and ``B`` (d x r), ``B`` initialised to zero so training
starts from the pretrained function. A classification head is new, so it
trains in full and is saved with the adapter (peft's ``modules_to_save``); a
causal LM (task ``sft``) keeps its pretrained head frozen.
The artefact is a peft adapter folder: ``PeftModel.from_pretrained`` loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import nn

from ..models.architectures import LINEAR
from ..settings import StrategyConfig
from .base import Task, register

TARGETS = LINEAR  # which linear layers to adapt, per family; unknown families use peft's "all-linear"


def default_targets(family: str) -> list[str] | str:
    return TARGETS.get(family, "all-linear")


class LoRAConfig(StrategyConfig):
    name: Literal["lora"] = "lora"
    r: int = Field(8, ge=1)
    """Rank of the update matrices."""
    alpha: float = Field(16, gt=0)
    """Scale: the update is multiplied by ``alpha / r``."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the input of the low-rank path (peft's default 0: it slows CPU steps)."""
    target_modules: list[str] | None = None
    """Module names to adapt; ``null`` picks attention and feed-forward layers for the family."""


def peft_classifier(model: nn.Module, peft_config) -> nn.Module:
    """Wrap a sequence classifier with a peft method; the new head trains and is saved."""
    from peft import get_peft_model

    return get_peft_model(model, peft_config)


def save_adapter(module: nn.Module, folder: Path, task: Task) -> None:
    """The peft adapter folder alone: what trained (and the head), not the backbone's tokenizer."""
    module.save_pretrained(folder)


def load_adapter(folder: Path, task: Task) -> nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(task.type.build(task), folder)


def merge_adapter(module: nn.Module) -> nn.Module:
    """Fold a weight-update adapter (LoRA, DoRA, IA3) into the weights: a plain transformers model."""
    return module.merge_and_unload()


@register
class LoRA:
    """Low-rank adapters on attention and feed-forward weights, through peft (Hu et al. 2021)."""

    Config = LoRAConfig
    train_defaults = {"lr": 1e-3, "epochs": 3, "schedule": "linear"}
    search_space = {"strategy.r": [4, 8, 16, 32], "strategy.alpha": [8, 16, 32]}
    """What ``adaptlab tune`` searches besides the shared settings (``training/space.py``)."""
    tasks = ("classification", "sft")

    def __init__(self, config: LoRAConfig):
        self.config = config

    def peft_config(self, task: Task):
        from peft import LoraConfig, TaskType

        c = self.config
        return LoraConfig(
            task_type=getattr(TaskType, task.type.peft_task_type),
            r=c.r,
            lora_alpha=c.alpha,
            lora_dropout=c.dropout,
            target_modules=c.target_modules or default_targets(task.backbone.family),
        )

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        return peft_classifier(model, self.peft_config(task))

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        save_adapter(module, folder, task)

    def load(self, folder: Path, task: Task) -> nn.Module:
        return load_adapter(folder, task)

    def merge(self, module: nn.Module) -> nn.Module:
        return merge_adapter(module)
