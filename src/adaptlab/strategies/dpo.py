"""Direct preference optimisation: the policy learns to prefer the chosen answers over a frozen reference.

Rafailov et al. 2023, eq. 7: ``L = -log sigma(beta * [(log pi(yw|x) - log ref(yw|x)) - (log pi(yl|x) -
log ref(yl|x))])``, sequence log-probabilities summed over answer tokens; ``loss: ipo`` is Azar et al.
2023's squared variant (eq. 17). ``beta`` sets how far the policy may move from the reference.

The reference is the model as it starts (after an ``sft`` stage, that stage's model). Its log-probabilities
are computed once, before training, in the ``precompute`` hook, and ride along in every batch: only one
model is ever in memory (TRL's ``precompute_ref_log_probs``). With a peft policy (``method: lora``) the
reference for rows met later (the evaluation split, after training) is the same model with its adapters
disabled -- exact, no copy; with ``full`` it is the starting weights loaded again for that one pass.
``method`` decides what trains, as in ``dapt``: any strategy that trains the backbone (``lora``, ``full``,
``dora``, ``top_k``...).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from tqdm.auto import tqdm

from ..data.batching import BucketBatchSampler, lengths_of
from ..errors import AdaptlabError
from ..eval.metrics import model_inputs
from ..settings import StrategyConfig
from ..tasks.preference import REFERENCE, dpo_logits, dpo_loss, pair_stats, sequence_logps
from .base import Task, get_strategy, hook, register, save_pretrained

log = logging.getLogger("adaptlab")


class DPOConfig(StrategyConfig):
    name: Literal["dpo"] = "dpo"
    beta: float = Field(0.1, gt=0)
    """Strength of the pull towards the reference (eq. 7's beta; 0.1 as in the paper's dialogue runs)."""
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    """``sigmoid``: DPO (Rafailov et al. 2023); ``ipo``: Azar et al. 2023 (bounded margins)."""
    method: str | dict[str, Any] = "lora"
    """What trains: a strategy name or ``{name: lora, r: 16}`` (its ``prepare``, ``save`` and ``load``)."""


@register
class DPO:
    """Preference tuning against a cached reference (Rafailov et al. 2023); ``method`` decides what trains."""

    Config = DPOConfig
    train_defaults = {"lr": 5e-5, "epochs": 1, "schedule": "linear", "dropout": 0.0}  # dropout 0: loss log 2 at the start
    tasks = ("preference",)

    def __init__(self, config: DPOConfig):
        self.config = config
        self.inner: Any = None
        self.task: Task | None = None
        self.reference: dict[tuple, tuple[float, float]] = {}
        self.start: dict[str, torch.Tensor] | None = None  # a few trainable tensors as they started (has training begun?)
        self.stats: dict[str, torch.Tensor] = {}  # the last training batch's (step_stats)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        spec = self._spec()
        if spec.get("name") in (None, "dpo", "orpo", "reward_model", "dapt", "distill", "linear_probe", "zero_shot"):
            raise AdaptlabError(f"strategy.method must be a strategy that trains the model (lora, full, dora, top_k, ...), "
                                f"got {spec.get('name')!r}")
        self.prepare_inner()
        self.task = task
        return self.inner.prepare(model, task)

    # -- the reference, once ----------------------------------------------------------------------

    @torch.inference_mode()
    def precompute(self, module: nn.Module, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        """Each row with ``ref_logps`` (chosen, rejected) under the reference model."""
        if self.start is None:  # the first call comes before any step: the module is the reference
            trained = sorted(((p.numel(), n, p) for n, p in module.named_parameters() if p.requires_grad), key=lambda t: t[0])
            self.start = {n: p.detach().clone() for _, n, p in trained[:8]}  # the smallest (not a 100 MB embedding)
        missing = [r for r in rows if _key(r) not in self.reference]
        if missing:
            with self._as_reference(module) as reference:
                self._score(reference, missing, batch_size, device)
        return [{**r, REFERENCE: self.reference[_key(r)]} for r in rows]

    @contextlib.contextmanager
    def _as_reference(self, module: nn.Module):
        moved = self.start and any(not torch.equal(p.detach(), self.start[n]) for n, p in module.named_parameters() if n in self.start)
        if not moved:
            yield module
        elif hasattr(module, "disable_adapter"):  # peft: the base model is the reference, exactly
            with module.disable_adapter():
                yield module
        else:  # full weights moved: the starting model once more, for this pass only
            log.info("dpo: loading the reference model again to score %s", "rows met after training")
            fresh = self.task.type.build(self.task).to(next(module.parameters()).device)
            yield fresh
            del fresh

    def _score(self, model: nn.Module, rows: list[dict], batch_size: int, device: torch.device) -> None:
        """At most a training batch of pairs at a time, the answers' log-probabilities only (no logits over the
        vocabulary: :mod:`adaptlab.models.lm_head`), so this pass is never the run's memory peak."""
        batch_size = min(batch_size, getattr(self.task.train_config, "batch_size", batch_size) or batch_size)
        collate = self.task.type.collate(self.task.backbone.tokenizer.pad_token_id or 0)
        was_training = model.training
        model.eval()
        for ids in tqdm(BucketBatchSampler(lengths_of(rows), batch_size, shuffle=False), desc="reference log-probs",
                        unit="batch", leave=False, disable=None):
            batch = collate([rows[i] for i in ids])
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in model_inputs(batch).items()}
            logps = sequence_logps(model(**inputs), batch["labels"].to(device)).double().cpu()
            half = len(ids)
            for j, i in enumerate(ids):
                self.reference[_key(rows[i])] = (float(logps[j]), float(logps[half + j]))
        model.train(was_training)

    # -- training ------------------------------------------------------------------------------------

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logps = sequence_logps(outputs, batch["labels"])
        h = dpo_logits(logps, batch[REFERENCE])
        self.stats = pair_stats(logps, h, "reward_accuracy")
        return dpo_loss(h, self.config.beta, self.config.loss)

    def step_stats(self) -> dict[str, torch.Tensor]:
        """The training pairs' reward accuracy, margin and log-probs (steps.jsonl, history's ``train_*``)."""
        return self.stats

    # -- the artefact is the method's ------------------------------------------------------------------

    def save(self, module: nn.Module, folder: Any, task: Task) -> None:
        hook(self.inner, "save", save_pretrained)(module, folder, task)

    def load(self, folder: Any, task: Task) -> nn.Module:
        if self.inner is None:
            self.prepare_inner()
        own = hook(self.inner, "load", None)
        return own(folder, task) if own else task.type.load_model(folder, task)

    def prepare_inner(self) -> None:
        method = get_strategy(self._spec()["name"])
        self.inner = method(method.Config.model_validate(self._spec()))

    def _spec(self) -> dict[str, Any]:
        return {"name": self.config.method} if isinstance(self.config.method, str) else dict(self.config.method)


def _key(row: dict) -> tuple:
    return tuple(row["chosen_ids"]), tuple(row["rejected_ids"])
