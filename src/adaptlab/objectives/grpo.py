"""GRPO: reinforcement learning from a reward, the advantage of each answer measured against its group.

Shao et al. 2024 (DeepSeekMath), §4.1, eq. 3: for each prompt, G answers are sampled from the policy and
rewarded; each answer's advantage is its reward normalised within the group,
``A_i = (r_i - mean(r)) / std(r)``, given to every one of its tokens; the loss is PPO's clipped surrogate
``-min(rho A, clip(rho, 1 - eps, 1 + eps) A)`` with ``rho = pi / pi_old``, plus ``beta`` times the per-token
KL estimate to the reference (eq. 4). No value model. One optimisation step per sampled batch (TRL's
default ``num_iterations = 1``): ``pi_old`` is the policy itself, so ``rho = 1`` with the policy gradient's
value, and the clip is inactive (its share is still logged). ``normalise: token`` averages over every answer
token of the batch (DAPO, Yu et al. 2025; TRL's default ``loss_type``), ``sequence`` over each answer's
tokens first, then over answers (the paper's eq. 3).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ..models.lm_head import answer_logps
from . import _group
from ._group import ADVANTAGES, REF_TOKENS, GroupConfig, RolloutContext
from .base import register


class GRPOConfig(GroupConfig):
    name: Literal["grpo"] = "grpo"
    epsilon: float = Field(0.2, gt=0)
    """PPO's clip range (eq. 3's epsilon)."""
    scale_rewards: bool = True
    """Divide by the group's standard deviation (eq. 3); False keeps the centred reward (Dr. GRPO, Liu et al. 2025)."""
    normalise: Literal["token", "sequence"] = "token"
    """How token losses are averaged: over all answer tokens of the batch, or per answer first."""


def group_advantages(rewards: torch.Tensor, group: int, scale: bool) -> torch.Tensor:
    """``(r - group mean) / (group std + 1e-4)`` per answer (rows grouped by prompt, G adjacent)."""
    r = rewards.view(-1, group)
    centred = r - r.mean(-1, keepdim=True)
    return (centred / (r.std(-1, keepdim=True) + 1e-4) if scale else centred).view(-1)


def clipped_loss(logps: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token: PPO's clipped surrogate with ``pi_old`` = the policy that sampled (detached); the clipped share."""
    ratio = torch.exp(logps - logps.detach())
    a = advantages[:, None]
    per_token = -torch.min(ratio * a, ratio.clamp(1 - epsilon, 1 + epsilon) * a)
    clipped = ((ratio - 1).abs() > epsilon) & mask
    return per_token, clipped.float().sum() / mask.sum().clamp(min=1)


def average(per_token: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    m = mask.to(per_token.dtype)
    if how == "sequence":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).mean()
    return (per_token * m).sum() / m.sum().clamp(min=1)


@register
class GRPO:
    """Online RL from reward functions, group-normalised advantages (Shao et al. 2024 §4.1); ``method`` decides what trains."""

    Config = GRPOConfig
    tasks = ("sft",)
    train_defaults: dict[str, Any] = {"lr": 1e-5, "epochs": 1, "schedule": "constant", "dropout": 0.0, "batch_size": 4}
    """batch_size: prompts per step (x group_size answers)."""
    reference = "online"
    online = True

    def __init__(self, config: GRPOConfig):
        self.config = config
        self.rewards = _group.rewards_of(config)
        self.stats: dict[str, torch.Tensor] = {}

    def rollout(self, model: torch.nn.Module, batch: dict[str, Any], ctx: RolloutContext) -> dict[str, Any]:
        c = self.config
        out, rewards, self.stats = _group.sample(model, batch, c, ctx, self.rewards)
        out[ADVANTAGES] = group_advantages(rewards, c.group_size, c.scale_rewards)
        return out

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        c = self.config
        logps, mask = answer_logps(outputs, batch["labels"])
        per_token, clipped = clipped_loss(logps, mask, batch[ADVANTAGES], c.epsilon)
        stats = {"clipped": clipped.detach()}
        if c.beta > 0:
            kl = _group.token_kl(logps, batch[REF_TOKENS])
            per_token = per_token + c.beta * kl
            stats["kl"] = average(kl.detach(), mask, "token")
        self.stats = {**self.stats, **stats}
        return average(per_token, mask, c.normalise)

    def step_stats(self) -> dict[str, torch.Tensor]:
        """Reward mean and within-group std, answer length, truncated and clipped shares, KL to the reference."""
        return self.stats

    def held_out(self, scores: dict[str, Any]) -> dict[str, Any]:
        return _group.held_out_reward(self.rewards, scores)
