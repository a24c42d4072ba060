"""Direct preference optimisation: the policy learns to prefer the chosen answers over a frozen reference.

Rafailov et al. 2023, eq. 7: ``L = -log sigma(beta * [(log pi(yw|x) - log ref(yw|x)) - (log pi(yl|x) -
log ref(yl|x))])``, sequence log-probabilities summed over answer tokens; ``loss: ipo`` is Azar et al.
2023's squared variant (eq. 17). ``beta`` sets how far the policy may move from the reference.

The reference is the model as it starts (after an ``sft`` stage, that stage's model); its log-probabilities
are cached once before training (``reference = "cached"``: only one model is ever in memory).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ..tasks.preference import REFERENCE, dpo_logits, pair_stats, sequence_logps
from .base import ObjectiveConfig, register


class DPOConfig(ObjectiveConfig):
    name: Literal["dpo"] = "dpo"
    beta: float = Field(0.1, gt=0)
    """Strength of the pull towards the reference (eq. 7's beta; 0.1 as in the paper's dialogue runs)."""
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    """``sigmoid``: DPO (Rafailov et al. 2023); ``ipo``: Azar et al. 2023 (bounded margins)."""


def dpo_loss(logits: torch.Tensor, beta: float, kind: str = "sigmoid") -> torch.Tensor:
    """``sigmoid``: -log sigma(beta * h) (eq. 7); ``ipo``: (h - 1/(2 beta))^2 (Azar et al. 2023, eq. 17), which
    does not push the margin without bound on deterministic preferences."""
    if kind == "ipo":
        return ((logits - 1 / (2 * beta)) ** 2).mean()
    return -F.logsigmoid(beta * logits).mean()


@register
class DPO:
    """Preference tuning against a cached reference (Rafailov et al. 2023); ``method`` decides what trains."""

    Config = DPOConfig
    tasks = ("preference",)
    train_defaults: dict[str, Any] = {"lr": 5e-5, "epochs": 1, "schedule": "linear", "dropout": 0.0}  # dropout 0: loss log 2 at the start
    reference = "cached"
    online = False

    def __init__(self, config: DPOConfig):
        self.config = config
        self.stats: dict[str, torch.Tensor] = {}

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        logps = sequence_logps(outputs, batch["labels"])
        h = dpo_logits(logps, batch[REFERENCE])
        self.stats = pair_stats(logps, h, "reward_accuracy")
        return dpo_loss(h, self.config.beta, self.config.loss)

    def step_stats(self) -> dict[str, torch.Tensor]:
        """The training pairs' reward accuracy, margin and log-probs."""
        return self.stats
