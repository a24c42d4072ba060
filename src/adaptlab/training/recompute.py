"""Gradient checkpointing for the training loop (``train.gradient_checkpointing``).

transformers' own implementation (``gradient_checkpointing_enable``, non-reentrant ``torch.utils.checkpoint``)
on every transformers model inside the module a strategy prepared: each block keeps only its input in the
forward pass and recomputes the rest in the backward pass (Chen et al. 2016, "Training Deep Nets with
Sublinear Memory Cost"). This module only decides when, and switches it off again after training.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from ..errors import AdaptlabError
from ..settings import TrainConfig

log = logging.getLogger("adaptlab")


def checkpointing(module: nn.Module, cfg: TrainConfig | None, task_type: Any, strategy: Any = None, on: bool = True) -> bool:
    """Switch transformers' gradient checkpointing on (``train.gradient_checkpointing``; ``auto``: for generative
    tasks) or off again after training; True when it was switched on. A model (or a strategy: ``checkpointing =
    False``) that cannot do it is one error line when asked for explicitly, and trains without it under ``auto``."""
    wanted = on and cfg is not None and (task_type.generative if cfg.gradient_checkpointing == "auto" else cfg.gradient_checkpointing)
    if on and not wanted:
        return False
    if on and strategy is not None and not strategy.checkpointing:
        if cfg.gradient_checkpointing is True:
            raise AdaptlabError(f"train.gradient_checkpointing: {strategy.name} cannot train with it ({strategy.checkpointing_why}); "
                                "set it to false")
        return False
    models = [m for m in module.modules() if hasattr(m, "gradient_checkpointing_enable") and hasattr(m, "supports_gradient_checkpointing")]
    models = [m for m in models if not any(m is not o and any(x is m for x in o.modules()) for o in models)]  # outermost
    able = [m for m in models if m.supports_gradient_checkpointing]
    if on and not able:
        if cfg.gradient_checkpointing is True:
            raise AdaptlabError(f"train.gradient_checkpointing: {type(module).__name__} cannot recompute its activations "
                                "(no transformers model with gradient checkpointing inside); set it to false")
        log.info("gradient checkpointing: %s cannot recompute its activations; training without it", type(module).__name__)
        return False
    for m in able:
        if on:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            m.gradient_checkpointing_disable()
    return on
