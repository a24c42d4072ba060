"""LoRA through peft: low-rank updates beside frozen weight matrices.

Hu et al. 2021, §4: each adapted weight ``W`` becomes ``W + (alpha / r) * B A``
with ``A`` (r x d) and ``B`` (d x r), ``B`` initialised to zero so training
starts from the pretrained function. A classification head is new, so it
trains in full and is saved with the adapter (peft's ``modules_to_save``); a
causal LM (task ``sft``) keeps its pretrained head frozen.

Which weights: every attention and feed-forward projection of every block (adapting all beats
q/v alone at equal budgets: QLoRA §4, Dettmers et al. 2023) and the pooler between the last block and a
classifier's head where the family has one (BERT's: the head reads it), read from the model itself
(:mod:`adaptlab.models.placement`): separate or fused (Phi-3's ``qkv_proj``, NeoX's
``query_key_value``), ``nn.Linear`` or GPT-2's ``Conv1D``. They reach peft as one regular
expression anchored at the block list, so nothing outside the blocks (a pooler, the LM head) is
adapted by a name that happens to match. The new classification head is whatever the task model
holds outside its base model (DistilBERT's ``pre_classifier`` and ModernBERT's ``head`` included).
The artefact is a peft adapter folder: ``PeftModel.from_pretrained`` loads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..models.placement import head_names, layout
from ..settings import StrategyConfig
from .base import Task, register


def default_targets(model: nn.Module) -> str:
    """Every attention and feed-forward projection of every block of ``model``, and the pooler a classification head
    reads (BERT's, never trained by a sentence-embedding backbone such as MiniLM), as peft's regex."""
    found = layout(model)
    pooler = "".join(f"|{re.escape(name)}" for name in found.pooler)
    return f"(?:{found.pattern(found.projections)}{pooler})"


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
    """Wrap a model with a peft method; a classifier's new head (every module outside its base model) trains
    and is saved with the adapter. A ``target_modules`` that names nothing in the model is one error line."""
    from peft import TaskType, get_peft_model

    if peft_config.task_type == TaskType.SEQ_CLS and getattr(peft_config, "modules_to_save", None) is None and head_names(model):
        peft_config.modules_to_save = head_names(model)
    try:
        return get_peft_model(model, peft_config)
    except ValueError as e:
        if "target_modules" not in str(e) and "Target modules" not in str(e):
            raise
        from ..models.placement import linear_names

        raise AdaptlabError(f"strategy.target_modules={peft_config.target_modules} names no layer of this "
                            f"{model.config.model_type} model; its linear layers include: {', '.join(linear_names(model)[:12])}") from None


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
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 1e-3, "epochs": 3, "schedule": "linear"}
    step_cost = 3.0  # the backward pass still runs through every block (0.70-0.92x full's time measured on MiniLM)
    search_space = {"strategy.r": [4, 8, 16, 32], "strategy.alpha": [8, 16, 32]}
    """What ``adaptlab tune`` searches besides the shared settings (``training/space.py``)."""
    tasks = ("classification", "sft")

    def __init__(self, config: LoRAConfig):
        self.config = config

    def peft_config(self, task: Task, model: nn.Module):
        from peft import LoraConfig, TaskType

        c = self.config
        return LoraConfig(
            task_type=getattr(TaskType, task.type.peft_task_type),
            r=c.r,
            lora_alpha=c.alpha,
            lora_dropout=c.dropout,
            target_modules=c.target_modules or default_targets(model),
        )

    def check(self, task: Task) -> None:
        """Where the adapters go, read from the backbone's modules before any weight loads (one line when it cannot be)."""
        if not self.config.target_modules:
            task.backbone.layout()

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        return peft_classifier(model, self.peft_config(task, model))

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        save_adapter(module, folder, task)

    def load(self, folder: Path, task: Task) -> nn.Module:
        return load_adapter(folder, task)

    def merge(self, module: nn.Module) -> nn.Module:
        return merge_adapter(module)
