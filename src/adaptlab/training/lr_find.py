"""The learning-rate range test: the peak learning rate chosen from the data, not from a recipe.

Smith 2017 ("Cyclical Learning Rates for Training Neural Networks", §3.3) trains for
a few dozen steps while the learning rate rises exponentially and reads a good rate
off the loss curve; fastai's ``lr_find`` made it the usual first step. Here it runs
through the same pieces the loop uses -- the strategy's parameter groups, loss hook
and batches -- so it tests exactly what will train. The rate chosen is one tenth of
the rate at the lowest smoothed loss (Howard & Gugger 2020, ch. 5: "an order of
magnitude less than where the minimum loss was achieved"). fastai's *valley* rule
(the middle of the longest falling stretch) is recorded beside it: on 40-step curves
whose flat start wobbles down it lands an order of magnitude lower, too low to learn
in a CPU-sized budget (measured: 8e-4 against 4e-3 on a 3-class task where only the
latter left the majority class). Afterwards the weights, gradients and random state
are put back, so the test leaves no trace on the run except its cost, which is
counted in ``train_seconds``.

Written by hand: the range test needs the strategy's own loss and parameter groups
inside adaptlab's loop; neither Accelerate nor transformers has one (fastai's is tied
to its ``Learner``).
"""

from __future__ import annotations

import math
import time
from itertools import cycle, islice
from typing import Any

import torch
from torch import nn

from ..eval.metrics import model_inputs
from ..settings import TrainConfig
from .checkpoint import rng_state, set_rng_state

START_LR, END_LR = 1e-6, 1.0
"""The rates the test sweeps (exponentially); AdamW diverges well before 1 on every backbone here."""
MIN_STEPS = 20
"""Fewer steps than this sweep 1e-6..1 in jumps too coarse to read a rate off (each over 2x the last)."""
SMOOTHING = 0.8
"""Exponential smoothing of the loss (bias-corrected), as fastai does with its 0.98 over 100 steps."""


def budget(cfg: TrainConfig, planned_steps: int) -> int:
    """Steps the range test may take for a run of ``planned_steps`` optimiser steps; 0: skip it.

    The test is worth a share of the run (``cfg.lr_find_share``), not more: 40 probe steps before a 10-step
    fine-tuning run cost four times the training (issue 27: 483 s of a 964 s SFT run, which then fell back to
    the default rate anyway). Below :data:`MIN_STEPS` the sweep is too coarse to choose from.
    """
    steps = min(cfg.lr_find_steps, math.floor(cfg.lr_find_share * planned_steps))
    return steps if steps >= min(cfg.lr_find_steps, MIN_STEPS) else 0


def skipped(planned_steps: int, cfg: TrainConfig, fallback: float) -> dict[str, Any]:
    """What metrics.json records when :func:`budget` skipped the test."""
    return {"lr": fallback, "rule": f"skipped: the run plans {planned_steps} optimiser steps, too few for a {MIN_STEPS}-step test "
                                    f"within lr_find_share={cfg.lr_find_share:g} of them: the strategy's default rate",
            "valley_lr": None, "steps": 0, "seconds": 0.0, "curve": []}


def lr_at(step: int, steps: int, start: float = START_LR, end: float = END_LR) -> float:
    return start * (end / start) ** (step / max(steps - 1, 1))


def valley(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's valley rule: the longest falling stretch of ``losses``; a rate 1/2 of the way into it."""
    n = len(losses)
    if n < 3:
        return None
    longest = [1] * n  # longest falling sequence ending at each point
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[end]:
            end, start = i, i - longest[i] + 1
    if end - start < 2:
        return None
    third = (end - start) / 3
    return lrs[start + int(third) + int(third / 2)]


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    out, avg = [], 0.0
    for i, loss in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**i))
    return out


def range_test(module: nn.Module, loader: Any, cfg: TrainConfig, accelerator: Any, groups: list[dict],
               loss_fn: Any, fallback: float, steps: int) -> dict[str, Any]:
    """Sweep the learning rate over ``steps`` batches of ``loader``; return the chosen rate and the curve.

    ``groups`` are the strategy's parameter groups built for a peak rate of 1, so each group's
    rate is its multiplier times the swept rate; a group marked ``fixed`` (a head at its own
    ``head_lr``) keeps its rate, as it will in training. ``fallback`` is used when the loss never
    fell (the reason is recorded).
    """
    started = time.perf_counter()
    trainable = [p for p in module.parameters() if p.requires_grad]
    saved = [p.detach().to("cpu", copy=True) for p in trainable]  # on the host: no second copy in GPU memory
    rng = rng_state()
    optimizer = torch.optim.AdamW(groups, lr=1.0)
    for g in optimizer.param_groups:
        g["multiplier"] = g["lr"]
        g.setdefault("fixed", False)
    module.train()
    lrs, losses = [], []
    for i, batch in enumerate(islice(cycle(loader), steps)):
        lr = lr_at(i, steps)
        for g in optimizer.param_groups:
            g["lr"] = g["multiplier"] if g["fixed"] else g["multiplier"] * lr
        batch = {k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with accelerator.autocast():  # the precision training will use
            loss = loss_fn(module(**model_inputs(batch)), batch)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = accelerator.reduce(loss.detach().float(), "mean").item()  # the same curve on every process
        lrs.append(lr)
        losses.append(value)
        smoothed = smooth(losses)
        if not math.isfinite(value) or (i > steps // 4 and smoothed[-1] > min(4 * min(smoothed), 1.5 * smoothed[0])):
            break  # diverged (fastai: 4x the minimum; or half again the starting loss): the rest only goes higher
    with torch.no_grad():
        for p, old in zip(trainable, saved):
            p.copy_(old)
            p.grad = None
    set_rng_state(rng)
    finite = [i for i, x in enumerate(losses) if math.isfinite(x)]
    lrs, losses = [lrs[i] for i in finite], [losses[i] for i in finite]  # a diverged last step says nothing more
    smoothed = smooth(losses)
    best = min(range(len(smoothed)), key=smoothed.__getitem__) if smoothed else None
    if best is None or smoothed[best] > 0.98 * smoothed[0]:
        chosen, reason = fallback, "the loss never fell by 2%: the strategy's default rate"
    else:
        chosen, reason = lrs[best] / 10, "a tenth of the rate at the lowest loss"
    return {
        "lr": chosen,
        "rule": reason,
        "valley_lr": valley(lrs, smoothed),
        "steps": len(finite),
        "seconds": round(time.perf_counter() - started, 2),
        "curve": [[float(f"{lr:.3g}"), round(loss, 5)] for lr, loss in zip(lrs, smoothed)],
    }
