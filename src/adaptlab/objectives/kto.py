"""KTO: alignment from answers marked desirable or undesirable, one at a time (no pairs needed).

Ethayarajh et al. 2024, eq. 8: with the implied reward ``r(x, y) = log pi(y|x) - log ref(y|x)`` and a
reference point ``z0`` (the policy's KL divergence from the reference),
``v = lambda_D sigma(beta (r - z0))`` for a desirable answer, ``lambda_U sigma(beta (z0 - r))`` for an
undesirable one, and ``L = E[lambda_y - v]``. It reads unpaired feedback (``tasks/feedback.py``: one answer
per row, marked desirable or not -- the data the paper is for) and preference pairs, where each chosen answer
counts as desirable and each rejected one as undesirable (as TRL's KTOTrainer unpairs them); both batches
carry the flag per row.

``z0`` is estimated, as in the paper (§3.2), from the batch itself and detached: here the mean over the
batch's answers of ``max(0, r)``, not from a second forward pass over mismatched (prompt, answer) pairs --
one forward pass per step, at the cost of a noisier reference point on small batches.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ..tasks.preference import DESIRABLE, PAIRED, REFERENCE, pair_stats, sequence_logps
from .base import ObjectiveConfig, register


class KTOConfig(ObjectiveConfig):
    name: Literal["kto"] = "kto"
    beta: float = Field(0.1, gt=0)
    """How far the policy may move from the reference (eq. 8's beta; the paper's 0.1)."""
    desirable_weight: float = Field(1.0, gt=0)
    """lambda_D (eq. 8): raise it when desirable answers are the rarer kind (the paper's ratio rule, §4.3)."""
    undesirable_weight: float = Field(1.0, gt=0)
    """lambda_U (eq. 8)."""


@register
class KTO:
    """Alignment from answers marked good or bad, prospect-theoretic loss (Ethayarajh et al. 2024); ``method`` decides what trains."""

    Config = KTOConfig
    tasks = ("preference", "feedback")
    train_defaults: dict[str, Any] = {"lr": 5e-5, "epochs": 1, "schedule": "linear", "dropout": 0.0}
    reference = "cached"
    online = False

    def __init__(self, config: KTOConfig):
        self.config = config
        self.stats: dict[str, torch.Tensor] = {}

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        c = self.config
        logps = sequence_logps(outputs, batch["labels"])
        r = logps - batch[REFERENCE].to(logps.dtype)
        good = batch[DESIRABLE].to(r.device)
        z0 = r.detach().clamp(min=0).mean()
        value = torch.where(good, c.desirable_weight * (1 - torch.sigmoid(c.beta * (r - z0))),
                            c.undesirable_weight * (1 - torch.sigmoid(c.beta * (z0 - r))))
        d = r.detach()
        self.stats = {"kl": z0, "desirable_reward": _mean(d, good), "undesirable_reward": _mean(d, ~good)}
        if batch.get(PAIRED):
            half = r.shape[0] // 2
            self.stats.update(pair_stats(logps, r[:half] - r[half:], "reward_accuracy"))
        return value.mean()

    def step_stats(self) -> dict[str, torch.Tensor]:
        """The KL estimate, the mean implied reward of the desirable and of the undesirable answers, and on pairs the
        reward accuracy (chosen over rejected), margin and log-probs."""
        return self.stats


def _mean(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` where ``where`` holds, on the device; NaN when it holds nowhere (a batch of one kind),
    which the step log leaves out of its means rather than counting as 0."""
    return (values * where).sum() / where.sum()
