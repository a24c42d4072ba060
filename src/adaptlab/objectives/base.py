"""The objective protocol: how a batch of the task becomes a loss, and what else one step needs.

An objective never decides what trains (the *method* does: ``strategies/``) and never touches the
optimiser (the loop does). What an objective may need beyond its loss is declared as class attributes,
so the composing strategy (``strategies/_policy.py``) reads them instead of probing for methods:

- ``reference``: ``"none"``; ``"cached"`` -- the starting model's summed answer log-probabilities, once
  per row before training (DPO; TRL's ``precompute_ref_log_probs``); or ``"online"`` -- per token, on
  the answers the policy has just sampled (GRPO's KL term; computed inside :meth:`Online.rollout`).
- ``online``: True when the batch must first be sampled from the policy (:class:`Online`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch

from ..errors import unknown
from ..settings import StrategyConfig
from .rewards import Reward

Reference = Literal["none", "cached", "online"]


@runtime_checkable
class Objective(Protocol):
    """What every objective provides."""

    name: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]]
    tasks: ClassVar[tuple[str, ...]]
    """The task types whose batches it reads (``preference``: pairs; ``sft``: prompts with a reference)."""
    train_defaults: ClassVar[dict[str, Any]]
    reference: ClassVar[Reference]
    online: ClassVar[bool]

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's loss from the model's outputs (labelled-token log-probs, ``models/lm_head.py``)."""
        ...

    def step_stats(self) -> dict[str, torch.Tensor]:
        """What the last ``loss`` call measured, detached scalars (steps.jsonl; ``train_*`` in the history)."""
        ...


@runtime_checkable
class Online(Objective, Protocol):
    """An objective whose training batches are sampled from the policy inside the step (GRPO, RLOO)."""

    rewards: list[Reward]
    """What scores the sampled answers (``rewards.py``); reward-model runs among them are opened by the
    composing strategy before anything trains (``rewards.open_models``)."""

    def rollout(self, model: torch.nn.Module, batch: dict[str, Any], ctx: Any) -> dict[str, Any]:
        """The prompts of ``batch`` -> sampled answers, their rewards and advantages, as a training batch
        (``ctx``: ``_group.RolloutContext``, the tokenizer, stop tokens and reference from the composing strategy)."""
        ...

    def held_out(self, scores: dict[str, Any]) -> dict[str, Any]:
        """Scores to add to an evaluation from its generations (the held-out reward)."""
        ...


OBJECTIVES: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Register an objective class under its module's name."""
    name = cls.__module__.rsplit(".", 1)[-1]
    if name in OBJECTIVES and OBJECTIVES[name] is not cls:
        raise ValueError(f"objective '{name}' registered twice")
    cls.name = name
    OBJECTIVES[name] = cls
    return cls


def get_objective(name: str) -> type[Any]:
    from . import discover

    discover()
    if name not in OBJECTIVES:
        raise unknown("objective", str(name), OBJECTIVES)
    return OBJECTIVES[name]


class ObjectiveConfig(StrategyConfig):
    """What every objective's settings share: the method it trains."""

    method: str | dict[str, Any] = "lora"
    """What trains: a method's name or its settings, ``{name: lora, r: 16}`` (``full``, ``dora``, ``top_k``, ...)."""
