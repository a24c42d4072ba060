"""ORPO: supervised fine-tuning and preference alignment in one stage, with no reference model.

Hong et al. 2024, eq. 6-7: ``L = L_SFT + lambda * L_OR`` where ``L_SFT`` is the usual next-token loss on
the chosen answer and ``L_OR = -log sigma(log odds(yw|x) - log odds(yl|x))``, with
``odds(y|x) = P(y|x) / (1 - P(y|x))`` and ``P(y|x)`` the length-normalised likelihood
``exp(mean token log-prob)`` (eq. 4). Unlike DPO there is nothing to cache: the odds ratio compares the
policy with itself, so a single stage replaces SFT followed by DPO.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ..models.lm_head import answer_logps
from ..tasks.preference import pair_stats
from .base import ObjectiveConfig, register


class ORPOConfig(ObjectiveConfig):
    name: Literal["orpo"] = "orpo"
    weight: float = Field(0.1, gt=0)
    """lambda of eq. 6: the odds-ratio term's weight next to the SFT loss (the paper's 0.1)."""


def log_odds(mean_logp: torch.Tensor) -> torch.Tensor:
    """log(P / (1 - P)) for P = exp(mean_logp) < 1, computed stably: mean_logp - log(1 - exp(mean_logp))."""
    return mean_logp - torch.log1p(-torch.exp(mean_logp.clamp(max=-1e-6)))


def odds_ratio_loss(logps: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Eq. 7 from summed answer log-probs and answer lengths (2B rows: chosen, then rejected)."""
    mean = logps / counts.clamp(min=1)
    half = mean.shape[0] // 2
    return -F.logsigmoid(log_odds(mean[:half]) - log_odds(mean[half:])).mean()


@register
class ORPO:
    """SFT and preference in one stage, reference-free (Hong et al. 2024); ``method`` decides what trains."""

    Config = ORPOConfig
    tasks = ("preference",)
    train_defaults: dict[str, Any] = {"lr": 1e-4, "epochs": 1, "schedule": "linear", "dropout": 0.0}
    reference = "none"
    online = False

    def __init__(self, config: ORPOConfig):
        self.config = config
        self.stats: dict[str, torch.Tensor] = {}

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        tokens, mask = answer_logps(outputs, batch["labels"])
        half = tokens.shape[0] // 2
        nll, count = -tokens[:half].sum(), mask[:half].sum()
        logps = tokens.sum(-1)
        self.stats = pair_stats(logps, logps[:half] - logps[half:], "likelihood_accuracy")
        return nll / count.clamp(min=1) + self.config.weight * odds_ratio_loss(logps, mask.sum(-1))

    def step_stats(self) -> dict[str, torch.Tensor]:
        return self.stats
