"""What GRPO and RLOO share: G answers sampled per prompt, scored by reward functions, as a training batch.

Sampling uses ``generate`` with the KV cache on the whole batch of B prompts x G answers at once
(``eval/generation.generate_ids``), in eval mode (no dropout) and without gradients. The sampled answers
are then one right-padded batch of prompt + answer, labelled on the answer tokens only (the end-of-turn
token included, so the policy also learns where to stop), and the loop's forward pass computes their
token log-probabilities in chunks (``models/lm_head.py``) like any other batch.

The KL term (``beta > 0``) needs the reference's token log-probabilities on the same answers: computed here,
under ``inference_mode``, by the reference the composing strategy hands over (with a peft method: the same
model with its adapters disabled -- no second model in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..data.batching import EXAMPLES, TOKENS
from ..data.conversations import IGNORE
from ..eval.generation import GENERATIONS, generate_ids
from ..eval.metrics import model_inputs
from ..models.lm_head import KEY as ANSWERS
from ..models.lm_head import answer_logps
from .base import ObjectiveConfig
from .rewards import Reward, resolve, score

REF_TOKENS = "ref_token_logps"
ADVANTAGES = "advantages"


class GroupConfig(ObjectiveConfig):
    """Settings every group-sampling objective shares (defaults: TRL's GRPOConfig where it has one)."""

    reward: str | dict[str, Any] | list[str | dict[str, Any]] = "chrf"
    """Reward function(s): ``chrf``, ``exact_match``, ``file.py:function``, ``module:function``, or a list of
    them, each ``{function: ..., weight: ...}`` (``objectives/rewards.py``; TRL's reward-function signature)."""
    group_size: int = Field(8, ge=2)
    """G: answers sampled per prompt (TRL's ``num_generations``); the advantages compare answers within a group."""
    max_new_tokens: int = Field(64, ge=1)
    """Longest sampled answer (TRL's ``max_completion_length``)."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature of the answers trained on (evaluation decodes greedily)."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling of the answers trained on."""
    beta: float = Field(0.04, ge=0)
    """Weight of the per-token KL penalty to the reference (DeepSeekMath §4.1's 0.04; 0 drops the reference)."""


@dataclass(frozen=True)
class Sampling:
    """What the sampler needs to know that the batch does not say."""

    max_new_tokens: int
    temperature: float
    top_p: float
    do_sample: bool = True


@dataclass
class RolloutContext:
    """Handed over by the composing strategy: the tokenizer, when answers end, and the reference."""

    tokenizer: Any
    stop_ids: list[int]
    reference: Callable[[nn.Module], AbstractContextManager[nn.Module]]


def rewards_of(cfg: GroupConfig) -> list[Reward]:
    return resolve(cfg.reward)


def sample(model: nn.Module, batch: dict[str, Any], cfg: GroupConfig, ctx: RolloutContext,
           rewards: list[Reward]) -> tuple[dict[str, Any], torch.Tensor, dict[str, torch.Tensor]]:
    """B prompts -> a batch of B x G answers (grouped: a prompt's G rows are adjacent), their rewards (B x G,) and
    the rollout's statistics."""
    g, pad = cfg.group_size, ctx.tokenizer.pad_token_id or 0
    prompt_ids = batch["gen_input_ids"].repeat_interleave(g, 0)
    prompt_mask = batch["gen_attention_mask"].repeat_interleave(g, 0)
    was_training = model.training
    model.eval()
    new = generate_ids(model, prompt_ids, prompt_mask, Sampling(cfg.max_new_tokens, cfg.temperature, cfg.top_p),
                       ctx.stop_ids, pad, keep_stop=True)
    model.train(was_training)
    texts = [t.strip() for t in ctx.tokenizer.batch_decode(new, skip_special_tokens=True)]
    prompts = [p for p in batch["gen_prompt"] for _ in range(g)]
    references = [r for r in batch["gen_reference"] for _ in range(g)]
    values, means = score(rewards, prompts, texts, reference=references)
    device = prompt_ids.device
    out = _sequences(prompt_ids, prompt_mask, new, pad, device)
    if cfg.beta > 0:
        with torch.inference_mode(), ctx.reference(model) as reference:
            out[REF_TOKENS] = answer_logps(reference(**model_inputs(out)), out["labels"])[0].clone()
    r = torch.tensor(values, dtype=torch.float32, device=device)
    lengths = torch.tensor([len(x) for x in new], dtype=torch.float32)
    stats = {"reward": r.mean(), "reward_std": r.view(-1, g).std(-1).mean(), "answer_length": lengths.mean().to(device),
             "truncated": (lengths >= cfg.max_new_tokens).float().mean().to(device)}
    if len(rewards) > 1:
        stats.update({f"reward_{k}": torch.tensor(v, device=device) for k, v in means.items()})
    return out, r, stats


def _sequences(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, new: list[list[int]], pad: int,
               device: torch.device) -> dict[str, Any]:
    """Prompt (its left padding removed) + answer per row, right-padded; labels on the answer only."""
    rows, labels = [], []
    for ids, mask, answer in zip(prompt_ids.tolist(), prompt_mask.tolist(), new):
        prompt = [t for t, m in zip(ids, mask) if m]
        rows.append(prompt + answer)
        labels.append([IGNORE] * len(prompt) + answer)
    width = max(len(x) for x in rows)
    batch: dict[str, Any] = {
        "use_cache": False,
        "input_ids": torch.tensor([x + [pad] * (width - len(x)) for x in rows], device=device),
        "attention_mask": torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rows], device=device),
        "labels": torch.tensor([y + [IGNORE] * (width - len(y)) for y in labels], device=device),
        TOKENS: sum(len(x) for x in rows), EXAMPLES: len(rows),
    }
    batch[ANSWERS] = batch["labels"]
    return batch


def token_kl(logps: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per token, the unbiased, always-positive KL estimate of DeepSeekMath eq. 4 (Schulman's k3):
    ``ref/pi - log(ref/pi) - 1``."""
    d = ref - logps
    return torch.exp(d) - d - 1


def held_out_reward(rewards: list[Reward], scores: dict[str, Any]) -> dict[str, Any]:
    """The mean reward of the answers an evaluation generated (greedy) for its held-out prompts."""
    rows = scores.get(GENERATIONS) or []
    if not rows:
        return {"reward": None}
    values, means = score(rewards, [r["prompt"] for r in rows], [r["output"] for r in rows],
                          reference=[r["reference"] for r in rows])
    extra = {f"reward_{k}": v for k, v in means.items()} if len(rewards) > 1 else {}
    return {"reward": sum(values) / len(values), **extra}


Normalise = Literal["token", "sequence"]
