"""A run is ``{objective, method}``: this module composes the two into what the training loop runs.

The *method* (a strategy with ``method = True``: ``full``, ``lora``, ``dora``, ``top_k``, ...) decides
what trains and how it is saved and loaded; the *objective* (``adaptlab.objectives``) decides how a batch
becomes a loss. What the objective declares decides the rest:

- ``reference = "cached"``: the starting model's answer log-probabilities, computed once before training
  and carried in every batch (only one model in memory: TRL's ``precompute_ref_log_probs``). Rows met
  after training (the evaluation split) are scored by the same model with its adapters disabled (peft:
  exact, no copy) or, when full weights moved, by the starting weights loaded again for that one pass.
- ``online``: each training batch is sampled from the policy first (:meth:`OnlinePolicy.rollout`), every
  evaluation adds the held-out reward, and the held-out prompts are scored once before training too
  (``metrics.json``'s history starts at epoch 0).

Each objective is listed in the strategy registry under its own name (``-s dpo`` = ``{objective: dpo,
method: lora}``), so every recipe and run folder written before the split still runs and loads.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from peft import PeftModel
from torch import nn
from tqdm.auto import tqdm

from ..data.batching import BucketBatchSampler, lengths_of
from ..errors import AdaptlabError
from ..eval.metrics import model_inputs
from ..objectives.rewards import open_models
from ..tasks.base import Generative
from ..tasks.preference import REFERENCE, sequence_logps
from .base import Task, declared, get_strategy, hook, save_pretrained

log = logging.getLogger("adaptlab")


def method_of(spec: str | dict[str, Any], role: str = "strategy.method") -> Any:
    """The method a spec names (``lora`` or ``{name: lora, r: 16}``), configured; one error line when the name
    is not a method (a strategy that does not train the backbone itself: ``dpo``, ``linear_probe``...)."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    cls = get_strategy(str(spec["name"])) if spec.get("name") else None
    if cls is None or not cls.method:
        from .base import REGISTRY

        methods = sorted(n for n, c in REGISTRY.items() if c.method)
        raise AdaptlabError(f"{role} must be a method, a strategy that trains the model ({', '.join(methods)}); "
                            f"got {spec.get('name')!r}")
    return cls(cls.Config.model_validate(spec))


class Policy:
    """An objective trained through a method (``composed`` makes one class per objective)."""

    objective_cls: ClassVar[type[Any]]
    name: ClassVar[str]
    Config: ClassVar[type[Any]]
    tasks: ClassVar[tuple[str, ...]]
    train_defaults: ClassVar[dict[str, Any]]

    def __init__(self, config: Any):
        self.config = config
        self.objective = self.objective_cls(config)
        self.inner: Any = method_of(config.method)
        self._task: Task | None = None
        self.reference: dict[tuple, tuple[float, ...]] = {}
        self.start: dict[str, torch.Tensor] | None = None  # a few trainable tensors as they started (has training begun?)
        self.before: dict[str, Any] = {}

    @property
    def run_task(self) -> Task:
        """The task ``prepare`` was given (every other hook runs after it)."""
        if self._task is None:
            raise RuntimeError(f"{self.name}: prepare() has not run")
        return self._task

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        self._task = task
        return self.inner.prepare(model, task)

    @property
    def checkpointing(self) -> bool:
        """Whether gradient checkpointing can be on is the method's to say (prefix tuning: no), not the objective's."""
        return bool(self.inner.checkpointing)

    @property
    def checkpointing_why(self) -> str:
        return str(self.inner.checkpointing_why)

    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        return self.objective.loss(outputs, batch)

    def step_stats(self) -> dict[str, torch.Tensor]:
        return self.objective.step_stats()

    # -- the reference ------------------------------------------------------------------------------

    @torch.inference_mode()
    def precompute(self, module: nn.Module, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        """Rows with ``ref_logps`` under the reference (per pair: chosen, rejected; per feedback row: its answer),
        when the objective caches one."""
        if self.start is None:  # the first call comes before any step: the module is the reference
            trained = sorted(((p.numel(), n, p) for n, p in module.named_parameters() if p.requires_grad), key=lambda t: t[0])
            self.start = {n: p.detach().clone() for _, n, p in trained[:8]}  # the smallest (not a 100 MB embedding)
        if self.objective.reference != "cached":
            return rows
        missing = [r for r in rows if _key(r) not in self.reference]
        if missing:
            with self.as_reference(module) as reference:
                self._score(reference, missing, batch_size, device)
        return [{**r, REFERENCE: self.reference[_key(r)]} for r in rows]

    @contextlib.contextmanager
    def as_reference(self, module: nn.Module) -> Iterator[nn.Module]:
        """The model as it started: ``module`` itself before any step, its base with adapters disabled, or a fresh load."""
        moved = self.start and any(not torch.equal(p.detach(), self.start[n]) for n, p in module.named_parameters() if n in self.start)
        if not moved:
            yield module
        elif isinstance(module, PeftModel):  # peft: the base model is the reference, exactly
            with module.disable_adapter():
                yield module
        else:  # full weights moved: the starting model once more, for this pass only
            log.info("%s: loading the reference model again to score rows met after training", self.name)
            fresh = self.run_task.type.build(self.run_task).to(next(module.parameters()).device)
            yield fresh
            del fresh

    def _score(self, model: nn.Module, rows: list[dict], batch_size: int, device: torch.device) -> None:
        """At most a training batch of rows at a time, the answers' log-probabilities only (no logits over the
        vocabulary: :mod:`adaptlab.models.lm_head`), so this pass is never the run's memory peak. A batch of B rows
        holds k x B sequences (pairs: the B chosen, then the B rejected); each row keeps its k values."""
        batch_size = min(batch_size, getattr(self.run_task.train_config, "batch_size", batch_size) or batch_size)
        collate = self.run_task.type.collate(self.run_task.backbone.tokenizer.pad_token_id or 0)
        was_training = model.training
        model.eval()
        for ids in tqdm(BucketBatchSampler(lengths_of(rows), batch_size, shuffle=False), desc="reference log-probs",
                        unit="batch", leave=False, disable=None):
            batch = collate([rows[i] for i in ids])
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in model_inputs(batch).items()}
            logps = sequence_logps(model(**inputs), batch["labels"].to(device)).double().cpu()
            b = len(ids)
            for j, i in enumerate(ids):
                self.reference[_key(rows[i])] = tuple(float(logps[k * b + j]) for k in range(len(logps) // b))
        model.train(was_training)

    # -- the artefact is the method's -------------------------------------------------------------------

    def save(self, module: nn.Module, folder: Any, task: Task) -> None:
        hook(self.inner, "save", save_pretrained)(module, folder, task)

    def load(self, folder: Any, task: Task) -> nn.Module:
        own = hook(self.inner, "load", None)
        return own(folder, task) if own else task.type.load_model(folder, task)


class OnlinePolicy(Policy):
    """A policy whose training batches are sampled from it inside the step (GRPO, RLOO)."""

    auto: ClassVar[tuple[str, ...]] = ("epochs",)  # a range test would need a rollout per probe step
    prompts_only: ClassVar[bool] = True
    """Trains on prompts alone (the answers are its own samples): data without an answer column will do."""
    score_before: ClassVar[bool] = True
    """The loop scores the held-out prompts once before training: the reward the run starts from (epoch 0)."""

    frozen: nn.Module | None = None

    def check(self, task: Task) -> None:
        """Settings that cannot work when every batch is sampled inside the step: one line each, before any folder."""
        train, data = task.train_config, task.run_config.data if task.run_config is not None else None
        if train is not None and train.lr == "auto":
            raise AdaptlabError(f"train.lr: auto needs a range test over fixed batches; {self.name} samples its batches from the "
                                f"policy: give a rate (--lr, default {self.train_defaults['lr']:g})")
        if data is not None and data.packing:
            raise AdaptlabError(f"data.packing: {self.name} trains on answers it samples per prompt, not on packed rows; "
                                "set it to false")
        open_models(self.objective.rewards, task.open_run, task.root)

    def rollout(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch's prompts -> answers sampled from the policy, rewarded, as the step's training batch."""
        from ..objectives._group import RolloutContext

        task_type = self.run_task.type
        if not isinstance(task_type, Generative):  # the objective's ``tasks`` admit generative types only
            raise AdaptlabError(f"{self.name} samples answers: task {task_type.name} does not generate")
        renderer = task_type.renderer
        ctx = RolloutContext(renderer.tokenizer, renderer.stop_ids, self._reference)
        return self.objective.rollout(model, batch, ctx)

    @contextlib.contextmanager
    def _reference(self, model: nn.Module) -> Iterator[nn.Module]:
        """The starting policy for the KL term: a peft model with its adapters disabled (no copy), else a frozen copy
        taken at the first rollout, before any step (with ``method: full`` the memory of a second model)."""
        target = getattr(model, "module", model)
        if isinstance(target, PeftModel):
            with target.disable_adapter():
                yield target
            return
        if self.frozen is None:
            log.info("%s: keeping a frozen copy of the starting model as the KL reference (beta > 0 with a method "
                     "that is not an adapter)", self.name)
            self.frozen = copy.deepcopy(target).eval().requires_grad_(False)
        yield self.frozen

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        """The task's scores of the held-out prompts and the mean reward of the answers generated for them."""
        scores = self.run_task.type.evaluate(model, batches, accelerator)
        return {**scores, **self.objective.held_out(scores)}

    def headline(self, scores: dict[str, Any]) -> dict[str, Any]:
        """metrics.json's ``eval``: the held-out reward beside the task's scores."""
        return {k: v for k, v in scores.items() if k.startswith("reward")}


def composed(objective: type[Any]) -> type[Any]:
    """The strategy class that runs ``objective`` through its configured method."""
    base = OnlinePolicy if objective.online else Policy
    return declared(type(objective.__name__, (base,), {
        "__doc__": objective.__doc__, "__module__": objective.__module__, "objective_cls": objective,
        "name": objective.name, "Config": objective.Config, "tasks": objective.tasks,
        "train_defaults": dict(objective.train_defaults)}))


def _key(row: dict) -> tuple:
    """The row's token sequences (a pair's chosen and rejected ids, a feedback row's ids): what its cache entry is of."""
    return tuple(tuple(row[k]) for k in sorted(row) if k.endswith("input_ids") or k in ("chosen_ids", "rejected_ids"))
