"""RLOO: REINFORCE with a leave-one-out baseline over the answers sampled for the same prompt.

Ahmadian et al. 2024 ("Back to Basics"), §3.2: each of the k answers to a prompt is its own baseline's
complement, ``A_i = r_i - (1 / (k - 1)) sum_{j != i} r_j``, and the loss is REINFORCE's
``-A_i log pi(y_i | x)`` over whole answers (an answer is one action: no clipping, no per-token critic).
The KL to the reference enters as the per-token penalty GRPO uses (``beta``; the paper folds a sequence KL into
the reward instead, which needs one more forward pass of the policy per sampled batch).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from ..models.lm_head import answer_logps
from . import _group
from ._group import ADVANTAGES, REF_TOKENS, GroupConfig, RolloutContext
from .base import register


class RLOOConfig(GroupConfig):
    name: Literal["rloo"] = "rloo"


def leave_one_out(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """``r_i - mean of the other k - 1 rewards`` of the same prompt (= k/(k-1) (r_i - group mean))."""
    r = rewards.view(-1, k)
    return ((r - r.mean(-1, keepdim=True)) * k / (k - 1)).view(-1)


@register
class RLOO:
    """Online RL from reward functions, REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024); ``method`` decides what trains."""

    Config = RLOOConfig
    tasks = ("sft",)
    train_defaults: dict[str, Any] = {"lr": 1e-5, "epochs": 1, "schedule": "constant", "dropout": 0.0, "batch_size": 4}
    reference = "online"
    online = True

    def __init__(self, config: RLOOConfig):
        self.config = config
        self.rewards = _group.rewards_of(config)
        self.stats: dict[str, torch.Tensor] = {}

    def rollout(self, model: torch.nn.Module, batch: dict[str, Any], ctx: RolloutContext) -> dict[str, Any]:
        out, rewards, self.stats = _group.sample(model, batch, self.config, ctx, self.rewards)
        out[ADVANTAGES] = leave_one_out(rewards, self.config.group_size)
        return out

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        logps, mask = answer_logps(outputs, batch["labels"])
        m = mask.to(logps.dtype)
        loss = -(batch[ADVANTAGES] * (logps * m).sum(-1)).mean()
        if self.config.beta > 0:
            kl = _group.token_kl(logps, batch[REF_TOKENS])
            loss = loss + self.config.beta * ((kl * m).sum(-1)).mean()
            self.stats = {**self.stats, "kl": ((kl.detach() * m).sum() / m.sum().clamp(min=1))}
        return loss

    def step_stats(self) -> dict[str, torch.Tensor]:
        """Reward mean and within-group std, answer length, truncated share, KL to the reference."""
        return self.stats

    def held_out(self, scores: dict[str, Any]) -> dict[str, Any]:
        return _group.held_out_reward(self.rewards, scores)
