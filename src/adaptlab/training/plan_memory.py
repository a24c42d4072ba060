"""``adaptlab plan-memory``: a run's peak memory from its config, before any weight is loaded.

The backbone's config and tokenizer are read (no weights); its task model is built on the meta device
(every module and shape, no memory); the strategy prepares that copy as it would the real model
(:mod:`adaptlab.models.memory` counts what then trains and how deep gradients reach). The plan is
set beside what this machine (or its GPU) has, with what to change when it does not fit.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..config import RunConfig
from ..errors import AdaptlabError
from ..models.backbones import load_backbone
from ..models.memory import advice, available_mb, plan
from ..models.verbalizer import is_causal_lm
from ..strategies.base import Task, get_strategy, hook, supported
from ..tasks import get_task_type
from .runner import input_length, resolve_train

log = logging.getLogger("adaptlab")


def weightless(task: Task, labels: int) -> torch.nn.Module:
    """The task's model for ``task.backbone`` on the meta device, as its ``build`` would give it (no weights)."""
    import transformers

    config = task.backbone.config.__class__.from_dict(task.backbone.config.to_dict())
    config.num_labels = labels
    config.pad_token_id = task.backbone.tokenizer.pad_token_id
    with torch.device("meta"):
        return getattr(transformers, task.type.auto_class).from_config(config)


def plan_memory(cfg: RunConfig, labels: int = 2, device: str | None = None, limit_gb: float | None = None) -> dict[str, Any]:
    """The plan of ``cfg`` (strategy, backbone, task, batch size, length, checkpointing) on ``device``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    backbone = load_backbone(cfg.backbone)
    task_type = get_task_type(cfg.data.task or ("sft" if is_causal_lm(backbone.config) else "classification"))
    strategy = get_strategy(cfg.strategy.name)(cfg.strategy)
    supported(strategy, task_type)
    train = resolve_train(cfg, task_type)
    task_type = task_type.configure(cfg, backbone)
    task = Task([str(i) for i in range(labels)] if not task_type.generative else [], backbone, train, type=task_type, run_config=cfg)
    hook(strategy, "check", lambda t: None)(task)
    model = weightless(task, labels)
    notes = []
    try:
        model = strategy.prepare(model, task)
    except (AdaptlabError, RuntimeError, NotImplementedError, ValueError) as e:  # prepare needs real weights (a forward pass)
        notes.append(f"{strategy.name} cannot prepare a weightless copy ({str(e).splitlines()[0][:80]}): planned as full fine-tuning")
        for p in model.parameters():
            p.requires_grad_(True)
    length = input_length(cfg.data, backbone)
    pairs = 2 if task_type.name == "preference" else 1
    checkpointing = task_type.generative if train.gradient_checkpointing == "auto" else bool(train.gradient_checkpointing)
    checkpointing = checkpointing and strategy.checkpointing
    gpu16 = device == "cuda" and train.precision in ("auto", "bf16", "fp16")  # loaded in 16 bits (modeling.load_dtype)
    bits = getattr(strategy.config, "bits", None)  # a quantised base (qlora): its bits and block scales
    weight_bytes = bits / 8 * 1.06 if bits else (2.0 if gpu16 else 4.0)
    result = plan(model, batch_tokens=train.batch_size * length * pairs, length=length, checkpointing=checkpointing,
                  weight_bytes=weight_bytes, activation_bytes=2.0 if gpu16 else 4.0, device=device, language_model=task_type.generative)
    result.notes = notes + result.notes
    limit = limit_gb * 1024 if limit_gb else available_mb(device)
    return {"backbone": cfg.backbone, "strategy": strategy.name, "task": task_type.name, "device": device,
            "batch_size": train.batch_size, "length": length, "plan": result.as_dict(), "available_mb": round(limit),
            "fits": result.total <= limit, "advice": advice(result, limit, task_type.generative, device == "cuda")}
