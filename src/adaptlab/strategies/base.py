"""The strategy protocol and registry.

A strategy is one module holding one config class and one strategy class
registered with ``@register``; its registry name is its module name, which is also
its CLI value, so ``strategies/lora.py`` *is* ``--strategy lora``.

A strategy only has to say what trains (:meth:`Strategy.prepare`). Everything
else is an optional hook that the shared loop calls when present, with the
default behaviour in plain functions below -- no base class to inherit from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import AdaptlabError, unknown
from ..models.backbones import Backbone
from ..settings import StrategyConfig, TrainConfig
from ..tasks.base import TaskType


@dataclass
class Task:
    """What a strategy may need to know about the task and the backbone."""

    labels: list[str]
    backbone: Backbone
    train_config: TrainConfig | None = None
    """The resolved training settings."""
    root: Path | None = None
    """The folder holding this run and its sibling stages: where ``@stage`` references resolve."""
    type: TaskType = None  # type: ignore[assignment]  # classification when left out (__post_init__)
    """The task type (``adaptlab.tasks``): what model is built, how it is judged."""
    run_config: Any = None
    """The whole resolved RunConfig (data and generation settings; the config layer sits above this one)."""
    open_run: Callable[[str], Any] | None = None
    """How a finished run folder is opened (``serve.predict.load``), for strategies that use another run (a reward
    model as the reward): handed in by the runner, so strategies import nothing from the serving layer."""

    def __post_init__(self) -> None:
        if self.type is None:
            from ..tasks import get_task_type

            self.type = get_task_type("classification")

    @property
    def num_labels(self) -> int:
        return len(self.labels)


@runtime_checkable
class Strategy(Protocol):
    """What every strategy provides.

    Optional hooks, called by the loop when the strategy defines them:

    - ``check(task) -> None``: raise ``AdaptlabError`` for options that do not
      fit the task or backbone (e.g. unknown label names), before the run
      folder is created (default: nothing to check).
    - ``build(task) -> nn.Module``: load the starting model (default: the
      task type's model, e.g. the backbone with a fresh classification head).
    - ``param_groups(module, lr, weight_decay) -> list[dict]``: optimiser groups
      (default: one group, no decay on biases and norms).
    - ``precompute(module, rows, batch_size) -> rows``: map the dataset once
      through frozen computation (e.g. cached features for a linear probe).
    - ``collate(pad_token_id) -> callable``: rows -> batch (default: dynamic
      padding of token fields, stacking of the rest).
    - ``batch_sampler(rows, train_config) -> sampler``: which rows make each
      training batch; an iterable of index lists with ``__len__`` and
      ``set_epoch(epoch)`` (default: shuffled, length-bucketed batches;
      episodic strategies return N-way K-shot episodes).
    - ``on_epoch_start(epoch, module) -> None``: e.g. unfreeze another layer
      group. Must be idempotent: a resumed run replays it.
    - ``loss(outputs, batch) -> Tensor``: default the task type's loss.
    - ``step_stats() -> dict[str, Tensor]``: statistics of the batch the last
      ``loss`` call saw, as detached scalar tensors (DPO's reward accuracy on
      its training pairs); logged in steps.jsonl and averaged per epoch into
      the history as ``train_<name>`` without a host sync per step.
    - ``evaluate(model, batches, accelerator) -> dict``: default the task
      type's scores; the loop keeps the epoch with the best ``train.metric``
      (or the lowest ``loss`` when that metric is absent).
    - ``save(module, folder, task)`` / ``load(folder, task) -> nn.Module``: the
      artefact format (default: a ``save_pretrained`` folder).
    - ``caveat: str`` (attribute): when the strategy is known to underperform,
      quoted by the report when it fails to beat the zero-shot baseline.
    - ``merge(module) -> nn.Module``: fold what trained into the backbone's
      weights, giving a plain ``transformers`` model (``adaptlab merge``);
      strategies without it cannot be merged.
    - ``dataset(data, task) -> (train_rows, eval_rows)``: rows of the strategy's
      own making (default: the task's tokenised training rows and its validation
      split), e.g. unlabelled text packed into blocks for domain-adaptive
      pretraining; the held-out rows then both choose the epoch and are scored.
    - ``auto`` (class attribute, default ``("lr", "epochs")``): the training
      settings the data decides when the user leaves them unset -- the learning
      rate by a range test, the epochs from the data size. Episodic and pair
      samplers, whose steps are not batches of the task, set fewer or none.
      ``train_defaults["lr"]`` is the range test's fallback.
    - ``earlier_training() -> dict[str, float]``: seconds of training done in
      ``prepare``, by part (MAD-X's language adapters); added to the run's
      ``train_seconds`` and listed in ``train_seconds_before_fit``.
    - ``extra_metrics(module, history, eval_rows, device) -> dict``: more
      entries for metrics.json, measured after training (default: none).
    - ``tasks`` (class attribute, default ``("classification",)``): the task
      types (``adaptlab.tasks``) the strategy runs on; another is refused with
      one clear error before any folder is written.
    - ``task`` (class attribute): the task type of the strategy's runs when it
      is not the data's (``dapt``: language modelling on a classification
      task's texts); the run is built, scored and reported as that type.

    Every run also records a ``forgetting`` block (``forgetting.py``), measured
    on the transformer trunk found inside the prepared module.
    - ``checkpointing`` (class attribute, default True): False when the strategy cannot train with gradient
      checkpointing (prefix tuning: its prefixes live in the cache a recomputed block drops), with
      ``checkpointing_why``; ``train.gradient_checkpointing: auto`` then stays off.
    - ``adapt_episode(module, support, support_labels, query, n_way) -> logits``:
      few-shot prediction on one episode of new classes (prototypes, MAML's
      inner loop, a head fitted on the support set); used by
      ``adaptlab.episodic``. Strategies without it have no episodic mode.
    """

    name: ClassVar[str]
    Config: ClassVar[type[StrategyConfig]]
    train_defaults: ClassVar[dict[str, Any]]
    config: StrategyConfig
    # What a strategy declares about itself (class attributes; ``register`` gives every registered class the
    # defaults in ``TRAITS``, so callers read them directly instead of probing):
    tasks: ClassVar[tuple[str, ...]]
    """The task types it runs on (default: classification); another is refused before any folder is written."""
    task: ClassVar[str | None]
    """The task type of its runs when that is not the data's (``dapt``: language modelling on a task's texts)."""
    method: ClassVar[bool]
    """True for a *method*: it decides what trains and can carry an objective (``strategy.method``)."""
    prompts_only: ClassVar[bool]
    """True when it trains on prompts alone (its answers are its own samples: GRPO, RLOO)."""
    score_before: ClassVar[bool]
    """True when the held-out set is scored once before training too (the history's epoch 0)."""
    auto: ClassVar[tuple[str, ...]]
    """The training settings the data decides when left unset (default: the learning rate and the epochs)."""
    checkpointing: ClassVar[bool]
    """False when it cannot train with gradient checkpointing (prefix tuning), with ``checkpointing_why``."""
    checkpointing_why: ClassVar[str]
    """Why not, when ``checkpointing`` is False."""
    serves: ClassVar[str]
    """What its runs serve: ``generate`` or ``predict`` as their task type does, or ``score`` (a reward model)."""
    train_defaults_for: ClassVar[dict[str, dict[str, Any]]]
    """Per task type, training defaults that replace ``train_defaults``'s."""
    step_cost: ClassVar[float | None]
    """A training step's cost in inference forward passes over the same batch, for the time-left estimate
    (``reporting/eta.py``): 3.5 when every weight gets a gradient (the default; measured on MiniLM with 128-token
    batches on 2 CPU cores, ``bench/results/default_costs.md``), less when the backward pass stops early (top_k)
    or skips the frozen weights' gradients (LoRA: 3), 0 when it trains on cached features (one forward pass over
    the rows in all), None when nothing trains."""

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        """Decide what trains (``requires_grad``) and return the module to train."""
        ...


REGISTRY: dict[str, type[Any]] = {}
TRAITS: dict[str, Any] = {"tasks": ("classification",), "task": None, "method": False, "prompts_only": False, "score_before": False,
                          "auto": ("lr", "epochs"), "checkpointing": True, "checkpointing_why": "", "serves": "task",
                          "train_defaults_for": {}, "step_cost": 3.5}
"""The declared class attributes of :class:`Strategy` and what a strategy that does not set one gets."""


def register(cls: type[Any]) -> type[Any]:
    """Register a strategy class under its module's name."""
    name = cls.__module__.rsplit(".", 1)[-1]
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"strategy '{name}' registered twice")
    cls.name = name
    REGISTRY[name] = declared(cls)
    return cls


def declared(cls: type[Any]) -> type[Any]:
    """``cls`` with every trait it does not set at its default (``TRAITS``): callers read ``cls.<trait>``."""
    cls.train_defaults = dict(getattr(cls, "train_defaults", {}))
    for trait, default in TRAITS.items():
        if not hasattr(cls, trait):
            setattr(cls, trait, default)
    return cls


def get_strategy(name: str) -> type[Any]:
    from . import discover

    discover()
    if name not in REGISTRY:
        raise unknown("strategy", str(name), REGISTRY)
    return REGISTRY[name]


def summary(cls: type) -> str:
    """First line of the strategy's docstring."""
    return (cls.__doc__ or "").strip().splitlines()[0]


def supported(strategy: Any, task_type: Any) -> None:
    """One clear error when a strategy cannot run on a task type."""
    tasks = strategy.tasks
    if task_type.name not in tasks:
        from . import discover

        discover()
        fit = sorted(n for n, cls in REGISTRY.items() if task_type.name in cls.tasks)
        raise AdaptlabError(f"strategy '{strategy.name}' does not support task '{task_type.name}' (it supports: "
                            f"{', '.join(tasks)}); strategies for {task_type.name}: {', '.join(fit)}")


def answers_needed(strategy: Any, data: Any) -> None:
    """One clear error when the data has prompts alone and the strategy learns from given answers."""
    if getattr(data, "form", None) != "prompt" or strategy.prompts_only:
        return
    from . import discover

    able = sorted(n for n, cls in discover().items() if cls.prompts_only)
    raise AdaptlabError(f"{data.source} has prompts but no answers (no response column): strategy '{strategy.name}' learns from "
                        f"given answers; add a response column (--response-column) or use one that samples its own: {', '.join(able)}")


# -- default behaviour of the optional hooks ------------------------------------


def build_classifier(task: Task, dtype: torch.dtype | None = None) -> nn.Module:
    """The backbone with a freshly initialised classification head (``adaptlab.tasks.classification``)."""
    from ..tasks.classification import build_classifier as build

    return build(task, dtype)


def decay_groups(named: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser groups at ``lr``: weight decay for matrices, none for biases and norms."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in named:
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "lr": lr, "weight_decay": weight_decay}, {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def param_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """The default: every trainable parameter at ``lr``."""
    return decay_groups(((n, p) for n, p in module.named_parameters() if p.requires_grad), lr, weight_decay)


def save_pretrained(module: nn.Module, folder: Path, task: Task) -> None:
    """A plain ``transformers`` folder: ``from_pretrained`` loads model and tokenizer."""
    module.save_pretrained(folder)  # type: ignore[operator]  # a transformers or peft model
    task.backbone.tokenizer.save_pretrained(folder)


def load_pretrained(folder: Path, task: Task) -> nn.Module:
    return task.type.load_model(folder, task)


def batch_sampler(rows: list[dict], cfg: Any) -> Any:
    """The default training batches: shuffled every epoch, grouped by length."""
    from ..data.batching import BucketBatchSampler, lengths_of

    return BucketBatchSampler(lengths_of(rows), cfg.batch_size, True, cfg.seed, cfg.bucket)


def hook(strategy: Any, name: str, default: Any) -> Any:
    """The strategy's hook ``name`` if it defines one, else ``default``."""
    return getattr(strategy, name, None) or default
