"""Compacter: bottleneck adapters whose weights are sums of Kronecker products.

Karimi Mahabadi et al. 2021: each adapter projection is a parameterised
hypercomplex multiplication layer, ``W = sum_{i=1..n} A_i (x) B_i`` (§3.2), with
the "slow" ``n x n`` rules ``A_i`` shared by every adapter of the model and the
"fast" ``B_i`` factorised as rank-one products ``s_i t_i^T`` (§3.3). An adapter
then holds about ``(in + out) * rank`` weights instead of ``in * out``: on
MiniLM-L6 the whole task costs ~8k parameters against ~113k for the same
bottleneck adapters. ``placement: pfeiffer`` (the default) is Compacter++
(adapters after the feed-forward block only, §3.4); ``houlsby`` is Compacter.

Same artefact, loading and merging as :mod:`adapter` (the modules are in
:mod:`adaptlab.bottleneck`); the shared rules are saved once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..models.bottleneck import Bottleneck, CompacterBottleneck, KroneckerRules
from .adapter import Adapter, AdapterConfig
from .base import Task, register


class CompacterConfig(AdapterConfig):
    name: Literal["compacter"] = "compacter"
    placement: Literal["houlsby", "pfeiffer"] = "pfeiffer"
    """``pfeiffer`` (Compacter++): after the feed-forward block only; ``houlsby`` (Compacter): after attention too."""
    n: int = Field(4, ge=1)
    """Number of Kronecker products summed per weight (the paper's ``n``); must divide hidden and bottleneck sizes."""
    rank: int = Field(1, ge=1)
    """Rank of each fast factor ``B_i = s_i t_i^T`` (the paper uses 1)."""


@register
class Compacter(Adapter):
    """Compacter++ adapters: Kronecker-product weights with shared factors (Karimi Mahabadi et al. 2021)."""

    Config = CompacterConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 3e-3, "epochs": 3, "schedule": "linear"}

    def check(self, task: Task) -> None:
        super().check(task)
        hidden = getattr(task.backbone.config, "hidden_size", None)
        if hidden and hidden % self.config.n:
            raise AdaptlabError(f"compacter: n={self.config.n} must divide the hidden size {hidden}")

    def make(self, model: nn.Module, width: int) -> Bottleneck:
        c = self.config
        if not isinstance(getattr(model, "adapter_rules", None), KroneckerRules):
            model.adapter_rules = KroneckerRules(c.n)  # registered once, shared by every adapter
        size = max(c.n, (width // c.reduction_factor) // c.n * c.n)  # a multiple of n
        return CompacterBottleneck(width, size, c.activation, model.adapter_rules, c.rank)
