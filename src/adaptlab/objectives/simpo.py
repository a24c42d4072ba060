"""SimPO: a reference-free preference loss on the length-normalised log-likelihood, with a target margin.

Meng et al. 2024, eq. 6: ``L = -log sigma(beta/|yw| log pi(yw|x) - beta/|yl| log pi(yl|x) - gamma)``.
The implicit reward is the *average* answer log-probability (eq. 4), so longer answers gain nothing by
their length, and no reference model is kept or cached. ``beta`` 2.0 and ``gamma`` 1.0 follow the paper's
recommended ranges (§4: beta 2.0-2.5, gamma/beta about 0.5).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ..models.lm_head import answer_logps
from ..tasks.preference import pair_stats
from .base import ObjectiveConfig, register


class SimPOConfig(ObjectiveConfig):
    name: Literal["simpo"] = "simpo"
    beta: float = Field(2.0, gt=0)
    """Scale of the length-normalised reward (eq. 6's beta)."""
    gamma: float = Field(1.0, ge=0)
    """Target reward margin between chosen and rejected (eq. 6's gamma)."""


@register
class SimPO:
    """Reference-free preference tuning on length-normalised likelihoods (Meng et al. 2024); ``method`` decides what trains."""

    Config = SimPOConfig
    tasks = ("preference",)
    train_defaults: dict[str, Any] = {"lr": 5e-5, "epochs": 1, "schedule": "linear", "dropout": 0.0}
    reference = "none"
    online = False

    def __init__(self, config: SimPOConfig):
        self.config = config
        self.stats: dict[str, torch.Tensor] = {}

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        tokens, mask = answer_logps(outputs, batch["labels"])
        logps = tokens.sum(-1)
        mean = logps / mask.sum(-1).clamp(min=1)
        half = mean.shape[0] // 2
        margin = self.config.beta * (mean[:half] - mean[half:])
        self.stats = pair_stats(logps, margin, "reward_accuracy")
        return -F.logsigmoid(margin - self.config.gamma).mean()

    def step_stats(self) -> dict[str, torch.Tensor]:
        """The training pairs' share won on the length-normalised reward, its margin and the log-probs."""
        return self.stats
