"""Regularisers that balance adapting to a task against what the pretrained model knew
(``train.regularize``): label smoothing, R-Drop, layer-wise learning-rate decay, L2-SP,
mixout and an exponential moving average of the weights.

Each is a plain function or a small hook the shared loop calls (the loss, the optimiser's
parameter groups, after an optimiser step, around evaluation), so every strategy gets them
the same way. Written here because none of the libraries adaptlab builds on offers them as
parts: the Trainer has label smoothing and LLRD-less groups, ``torch.optim.swa_utils.AveragedModel``
keeps a copy of the *whole* model (frozen weights too: a second 135M-parameter LLM beside a
LoRA run) where this keeps the trained tensors only, and mixout's reference code swaps in its
own ``Linear`` class (the saved model's keys would change).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdaptlabError
from ..eval.metrics import model_inputs
from ..settings import RegularizeConfig

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")


def pretrained_params(module: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that hold pretrained weights: those of a transformers model's base model
    (``module.base_model``: not the new head). A peft model trains only new tensors (adapters, a head)."""
    if hasattr(module, "peft_config"):
        return {}
    base = getattr(module, "base_model", None)
    if not isinstance(base, nn.Module) or base is module:
        return {}
    ids = {id(p) for p in base.parameters()}
    return {n: p for n, p in module.named_parameters() if id(p) in ids}


def l2_sp_penalty(params: dict[str, nn.Parameter], anchor: dict[str, torch.Tensor], strength: float) -> torch.Tensor:
    """``strength / 2 * sum ||w - w0||^2`` (Li et al. 2018, eq. 3, the ``alpha`` term): zero at the
    pretrained weights, its gradient ``strength * (w - w0)`` pointing back to them."""
    total = sum(((p - anchor[n]) ** 2).sum() for n, p in params.items())
    return 0.5 * strength * total


def symmetric_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """R-Drop's term (Liang et al. 2021, eq. 2): the mean of KL(a||b) and KL(b||a) over the batch."""
    la, lb = F.log_softmax(a.float(), -1), F.log_softmax(b.float(), -1)
    return 0.5 * (F.kl_div(la, lb, log_target=True, reduction="batchmean") + F.kl_div(lb, la, log_target=True, reduction="batchmean"))


def layer_depths(module: nn.Module) -> tuple[dict[int, int], int]:
    """``id(parameter) -> depth`` for transformer-layer parameters (layer index) and embeddings (-1),
    and the number of layers; parameters absent from the map (head, final norm) are at the top."""
    depths, n_layers = {}, 0
    for name, p in module.named_parameters():
        m = _LAYER.search(name)
        if m:
            depths[id(p)] = int(m.group(1))
            n_layers = max(n_layers, int(m.group(1)) + 1)
        elif "embed" in name or ".wte." in name or ".wpe." in name:
            depths[id(p)] = -1
    return depths, n_layers


def llrd_groups(groups: list[dict[str, Any]], module: nn.Module, decay: float) -> list[dict[str, Any]]:
    """Split every optimiser group by depth: layer ``i`` of ``L`` at ``lr * decay ** (L - i)``, embeddings at
    ``lr * decay ** (L + 1)``, the rest at ``lr`` (ELECTRA's layer-wise decay, Clark et al. 2020, appendix A)."""
    depths, n_layers = layer_depths(module)
    out = []
    for group in groups:
        by_power: dict[int, list] = {}
        for p in group["params"]:
            d = depths.get(id(p))
            by_power.setdefault(0 if d is None else n_layers - d, []).append(p)
        for power, params in sorted(by_power.items()):
            out.append({**group, "params": params, "lr": group["lr"] * decay**power})
    return out


def mixout_weight(weight: torch.Tensor, anchor: torch.Tensor, p: float) -> torch.Tensor:
    """Mixout (Lee et al. 2020, eq. 4): each element is the pretrained one with probability ``p``, rescaled
    so that the expectation is ``weight``: ``(M*w0 + (1-M)*w - p*w0) / (1-p)``."""
    mask = torch.rand_like(weight) < p
    return (torch.where(mask, anchor, weight) - p * anchor) / (1 - p)


def _mixout_forward(layer: nn.Linear, anchor: torch.Tensor, p: float) -> Callable:
    def forward(x: torch.Tensor) -> torch.Tensor:
        weight = mixout_weight(layer.weight, anchor, p) if layer.training else layer.weight
        return F.linear(x, weight, layer.bias)

    return forward


class Regularizers:
    """What ``train.regularize`` asks of one run, set up for its module."""

    def __init__(self, cfg: RegularizeConfig, module: nn.Module, strategy: Any = None, task_type: Any = None):
        check(cfg, module, strategy, task_type)
        self.cfg, self.task_type = cfg, task_type
        # the starting point, taken before any step (and before a resumed run loads its checkpoint)
        self.pretrained = pretrained_params(module) if cfg.l2_sp or cfg.mixout else {}
        self.anchor = {n: p.detach().clone() for n, p in self.pretrained.items()}
        self.mixed: list[nn.Linear] = []
        self.ema: dict[str, torch.Tensor] = {}
        self.trained: dict[str, nn.Parameter] = {}
        self.saved_ema: dict[str, torch.Tensor] = {}

    def groups(self, make_groups: Callable) -> Callable:
        """The strategy's ``param_groups`` hook, with layer-wise decay when asked."""
        if self.cfg.llrd is None:
            return make_groups
        return lambda module, lr, wd: llrd_groups(make_groups(module, lr, wd), module, self.cfg.llrd)

    def loss(self, model: nn.Module, batch: dict[str, Any], loss_fn: Callable) -> torch.Tensor:
        """The batch's training loss with the output regularisers (label smoothing, R-Drop) and L2-SP."""
        inputs = model_inputs(batch)
        outputs = model(**inputs)
        smoothing = {"label_smoothing": self.cfg.label_smoothing} if self.cfg.label_smoothing else {}
        task_loss = (lambda out: self.task_type.loss(out, batch, **smoothing)) if smoothing else (lambda out: loss_fn(out, batch))
        loss = task_loss(outputs)
        if self.cfg.r_drop:  # a second pass: other dropout masks
            again = model(**inputs)
            loss = 0.5 * (loss + task_loss(again)) + self.cfg.r_drop * symmetric_kl(outputs.logits, again.logits)
        if self.cfg.l2_sp:
            trained = {n: p for n, p in self.pretrained.items() if p.requires_grad}
            loss = loss + l2_sp_penalty(trained, self.anchor, self.cfg.l2_sp)
        return loss

    def epoch_start(self, module: nn.Module) -> None:
        """What trains from this epoch on (gradual unfreezing opens more): mixout on its pretrained linear
        layers, its moving average started (a resumed run continues its saved average)."""
        ids = {id(p): n for n, p in self.pretrained.items() if p.requires_grad}
        for layer in module.modules() if self.cfg.mixout else ():
            if isinstance(layer, nn.Linear) and id(layer.weight) in ids and layer not in self.mixed:
                layer.forward = _mixout_forward(layer, self.anchor[ids[id(layer.weight)]], self.cfg.mixout)
                self.mixed.append(layer)
        for n, p in module.named_parameters() if self.cfg.ema is not None else ():
            if p.requires_grad and n not in self.trained:
                self.trained[n] = p
                self.ema[n] = self.saved_ema[n].to(p.device) if n in self.saved_ema else p.detach().clone()

    def close(self) -> None:
        """Training is over: every layer back to its class's forward (the saved model is a plain one)."""
        for layer in self.mixed:
            del layer.forward
        self.mixed = []

    @torch.no_grad()
    def after_step(self) -> None:
        """``ema = decay * ema + (1 - decay) * w`` after each optimiser step."""
        if self.ema:
            names = list(self.ema)
            torch._foreach_lerp_([self.ema[n] for n in names], [self.trained[n].detach() for n in names], 1 - self.cfg.ema)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """The averaged weights in place of the trained ones (evaluation, keeping the best epoch)."""
        if not self.ema:
            yield
            return
        raw = {n: p.detach().clone() for n, p in self.trained.items()}
        self._load(self.ema)
        try:
            yield
        finally:
            self._load(raw)

    def finish(self) -> None:
        """End with the averaged weights (the last epoch kept: no best-weights copy holds them)."""
        if self.ema:
            self._load(self.ema)

    @torch.no_grad()
    def _load(self, tensors: dict[str, torch.Tensor]) -> None:
        for n, p in self.trained.items():
            p.copy_(tensors[n])


def check(cfg: RegularizeConfig, module: nn.Module, strategy: Any, task_type: Any) -> None:
    """Reject a regulariser this run cannot apply: one line naming the field, before any folder exists."""
    own_loss = getattr(getattr(strategy, "_strategy", strategy), "loss", None) is not None
    takes = task_type is not None and "label_smoothing" in inspect.signature(task_type.loss).parameters
    for field in ("label_smoothing", "r_drop"):
        if getattr(cfg, field) and (own_loss or not takes):
            whose = f"strategy {strategy.name} has its own loss" if own_loss else f"task {getattr(task_type, 'name', '?')} has no class logits"
            raise AdaptlabError(f"train.regularize.{field} applies to classification with the task's loss; {whose}")
    if cfg.r_drop and not any(isinstance(m, nn.Dropout) and m.p > 0 for m in module.modules()):
        raise AdaptlabError("train.regularize.r_drop needs dropout (it compares two dropout masks); this model has none "
                            "(set train.dropout, e.g. 0.1)")
    opens_later = getattr(getattr(strategy, "_strategy", strategy), "on_epoch_start", None) is not None
    updates = any(p.requires_grad for p in pretrained_params(module).values()) or (opens_later and pretrained_params(module))
    for field in ("l2_sp", "mixout"):
        if getattr(cfg, field) and not updates:
            raise AdaptlabError(f"train.regularize.{field} needs a strategy that updates pretrained weights (full, top_k, "
                                f"gradual_unfreeze); {getattr(strategy, 'name', 'this strategy')} trains none")
