"""(IA)^3 through peft: learned rescaling vectors for keys, values and feed-forward activations.

Liu et al. 2022 (T-Few), §3.3: ``l_k``, ``l_v`` and ``l_ff`` multiply the keys,
the values and the input of the second feed-forward layer element-wise; they
start at one (the pretrained function) and are the only backbone-side
parameters that train -- about one per hidden unit and layer, an order of
magnitude fewer than LoRA. The new classification head trains too. Being a
per-channel rescaling of weight inputs, the update folds into the weights
exactly (``adaptlab merge``). The artefact is a peft adapter folder.

Where: the key and value projections and the feed-forward output projection of every block, read
from the model (:mod:`adaptlab.models.placement`). Where a family computes queries, keys and values
in one fused projection (GPT-2, NeoX, Bloom, Falcon, Phi-3, ModernBERT) the scale sits on its whole
output, so queries are rescaled too -- what peft itself does for those families -- and the run's
``adapted_modules`` says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..models.placement import Layout, PlacementError, layout
from ..settings import StrategyConfig
from .base import Task, register
from .lora import load_adapter, merge_adapter, peft_classifier, save_adapter


class IA3Config(StrategyConfig):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = None
    """Layers whose input or output is rescaled; ``null`` uses peft's choice for the family (keys, values, feed-forward)."""
    feedforward_modules: list[str] | None = None
    """Which of ``target_modules`` are feed-forward layers (their input is rescaled); must be set with ``target_modules``."""
    init_ia3_weights: bool = Field(True)
    """Start every scale at one, so the untrained model is the pretrained one."""


def default_targets(found: Layout) -> tuple[str, str]:
    """peft's ``(target_modules, feedforward_modules)`` regexes for a model of this layout: keys, values (or the fused
    qkv) and the feed-forward output projection of every block."""
    attention = found.key_value or ((found.fused_qkv,) if found.fused_qkv else None)
    if attention is None:
        names = ", ".join(found.attention.names)
        raise PlacementError(f"ia3: cannot tell the key and value projections of '{found.family}' attention apart ({names}); "
                             f"set strategy.target_modules=[KEY,VALUE,{found.feed_forward.output.name}] and "
                             f"strategy.feedforward_modules=[{found.feed_forward.output.name}]")
    feedforward = (found.feed_forward.output.name,)
    return found.pattern((*attention, *feedforward)), found.pattern(feedforward)


@register
class IA3:
    """(IA)^3: learned scales of keys, values and feed-forward activations, through peft (Liu et al. 2022)."""

    Config = IA3Config
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 1e-2, "epochs": 3, "schedule": "linear"}
    step_cost = 3.0
    tasks = ("classification", "sft")
    caveat = ("(IA)^3 only rescales existing activations and is tuned for ~1000 steps in the paper (Liu et al. 2022, "
              "§3.3); with tens of steps, and a frozen [CLS] pooler that a mean-pooled sentence-embedding backbone "
              "never trained, it has little to work with.")

    def __init__(self, config: IA3Config):
        self.config = config

    def check(self, task: Task) -> None:
        c = self.config
        if (c.target_modules is None) != (c.feedforward_modules is None):
            raise AdaptlabError("ia3: set both strategy.target_modules and strategy.feedforward_modules, or neither")
        if c.target_modules is None:
            default_targets(task.backbone.layout())  # the keys and values can be told apart: before any weight loads

    def peft_config(self, task: Task, model: nn.Module):
        from peft import IA3Config as PeftIA3Config
        from peft import TaskType

        c = self.config
        targets, feedforward = (c.target_modules, c.feedforward_modules) if c.target_modules else default_targets(layout(model))
        return PeftIA3Config(task_type=getattr(TaskType, task.type.peft_task_type), target_modules=targets,
                             feedforward_modules=feedforward, init_ia3_weights=c.init_ia3_weights)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        return peft_classifier(model, self.peft_config(task, model))

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        save_adapter(module, folder, task)

    def load(self, folder: Path, task: Task) -> nn.Module:
        return load_adapter(folder, task)

    def merge(self, module: nn.Module) -> nn.Module:
        return merge_adapter(module)
