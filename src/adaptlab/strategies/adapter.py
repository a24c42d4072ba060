"""Bottleneck adapters: small residual modules inside every transformer layer.

Houlsby et al. 2019: each layer gets adapters (down-projection to
``hidden / reduction_factor``, non-linearity, up-projection, residual) after its
attention and feed-forward sub-layers; only the adapters and the new head train,
so a task costs a few hundred thousand parameters on disk while the backbone is
shared. ``placement: pfeiffer`` keeps only the adapter after the feed-forward
block (Pfeiffer et al. 2021), half the parameters for about the same accuracy.

The modules are adaptlab's own (:mod:`adaptlab.bottleneck` says why). The
artefact is the trained tensors in ``adapter.safetensors`` plus ``adapter.json``;
``load`` rebuilds the backbone, inserts fresh adapters and loads them. With
``activation: identity`` an adapter is a linear map and ``adaptlab merge`` folds
it into the projection it follows, exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import AdaptlabError
from ..models.bottleneck import Bottleneck, fold_adapters, insert_adapters
from ..models.modeling import freeze, unfreeze
from ..models.placement import head_names
from ..settings import StrategyConfig
from .base import Task, build_classifier, register


class AdapterConfig(StrategyConfig):
    name: Literal["adapter"] = "adapter"
    reduction_factor: int = Field(16, ge=1)
    """Hidden size divided by the bottleneck size (MiniLM's 384 / 16 = 24 units)."""
    placement: Literal["houlsby", "pfeiffer"] = "houlsby"
    """``houlsby``: after attention and after the feed-forward block; ``pfeiffer``: after the feed-forward block only."""
    activation: Literal["relu", "gelu", "swish", "tanh", "identity"] = "relu"
    """Non-linearity inside the bottleneck; ``identity`` makes the adapter linear, so ``adaptlab merge`` can fold it."""
    layers: list[int] | None = None
    """Which transformer layers (0-based) get adapters; ``null`` is every layer."""
    train_norms: bool = False
    """Also train the layer norms (Houlsby et al. 2019, §2.1 do; a few thousand parameters more)."""


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The classifier's new head: every module of the task model outside its base model."""
    names = head_names(model)
    if not names:
        raise AdaptlabError(f"cannot find the classification head of {type(model).__name__}: it has no module outside its base model")
    return [model.get_submodule(name) for name in names]


def trained_tensors(module: nn.Module) -> dict:
    return {n: p.detach().contiguous().cpu() for n, p in module.named_parameters() if p.requires_grad}


def save_trained(module: nn.Module, folder: Path, config: StrategyConfig, task: Task) -> None:
    """What trained (adapters and head) in safetensors, and the options that rebuild the modules."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(trained_tensors(module), folder / "adapter.safetensors")
    meta = {"backbone": task.backbone.name, "labels": task.labels, **config.model_dump()}
    (folder / "adapter.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_trained(module: nn.Module, folder: Path) -> nn.Module:
    tensors = load_file(folder / "adapter.safetensors")
    result = module.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise AdaptlabError(f"{folder} does not fit this model: unexpected tensors {result.unexpected_keys[:3]}")
    return freeze(module).eval()


@register
class Adapter:
    """Bottleneck adapters in every layer, backbone frozen (Houlsby et al. 2019; Pfeiffer et al. 2021)."""

    Config = AdapterConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 1e-3, "epochs": 3, "schedule": "linear"}
    step_cost = 3.0
    search_space = {"strategy.reduction_factor": [4, 8, 16, 32]}
    """What ``adaptlab tune`` searches besides the shared settings (``training/space.py``)."""
    caveat = ("adapters start as the identity and need hundreds of optimiser steps (Houlsby et al. 2019 train 3-20 "
              "epochs); with tens of steps they barely move, and on a sentence-embedding backbone (mean-pooled, like "
              "all-MiniLM) the frozen [CLS] pooler the head reads starts out carrying little.")

    def __init__(self, config: AdapterConfig):
        self.config = config

    def make(self, model: nn.Module, width: int) -> Bottleneck:
        return Bottleneck(width, max(1, width // self.config.reduction_factor), self.config.activation)

    def insert(self, model: nn.Module) -> nn.Module:
        """Insert fresh (identity) adapters; frozen backbone, adapters and head trainable."""
        freeze(model)
        insert_adapters(model, lambda width: self.make(model, width), self.config.placement, self.config.layers)
        for head in head_modules(model):
            unfreeze(head.parameters())
        if self.config.train_norms:
            unfreeze(p for n, p in model.named_parameters() if "layernorm" in n.lower() or "norm." in n.lower())
        return model

    def check(self, task: Task) -> None:
        """Where the adapters go and which layers exist, read from the backbone's modules before anything loads."""
        found = task.backbone.layout()
        n = found.num_blocks
        bad = [i for i in self.config.layers or [] if not 0 <= i < n]
        if bad:
            raise AdaptlabError(f"{self.name}: layers {bad} do not exist: the backbone has layers 0-{n - 1}")

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        return self.insert(model)

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        save_trained(module, folder, self.config, task)

    def load(self, folder: Path, task: Task) -> nn.Module:
        return load_trained(self.insert(build_classifier(task)), folder)

    def merge(self, module: nn.Module) -> nn.Module:
        """A plain transformers model with every (linear) adapter folded into its projection."""
        return fold_adapters(module)
