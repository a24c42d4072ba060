"""The task-type protocol and registry: what is learned from the data, one module per type.

A *strategy* decides what trains; a *task type* decides what the data is and how
the model is judged: how rows are read and validated, encoded and batched, which
model is built on the backbone (a classifier, a causal LM), the loss, the
evaluation and its primary metric, and what metrics.json and the report show.
The loop, runner, report and predict ask the task type and never branch on its
name (torchtune's small protocols; PEFT's one module per method).

A task type is one module in this package holding one class registered with
``@register_task``; its name is the module name (``tasks/sft.py`` *is*
``--task sft``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from ..data.conversations import Renderer
from ..errors import unknown


@runtime_checkable
class TaskType(Protocol):
    """What every task type provides (all methods; no optional hooks)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    """Metrics ``train.metric`` may choose to keep the best epoch (higher is better)."""
    default_metric: ClassVar[str]
    """The primary metric: keeps the best epoch and ranks strategies in the report (``loss``: lower is better)."""
    peft_task_type: ClassVar[str]
    """peft's ``TaskType`` name for this kind of model (``SEQ_CLS``, ``CAUSAL_LM``)."""
    generative: ClassVar[bool]
    """True when the model is judged by the text it generates."""
    columns: ClassVar[tuple[tuple[str, str, str], ...]]
    """The report's metric columns: (key of metrics.json's ``eval``, header, format)."""
    tolerance: ClassVar[float]
    """A cheaper strategy within this much of the best primary metric is recommended instead."""
    serves: ClassVar[bool]
    """True when a run's product is a model to predict (or generate) with; False when it is a backbone for
    a later stage (language modelling), which ``predict`` refuses and a comparison reports apart."""
    auto_class: ClassVar[str]
    """The transformers class that loads a whole-model artefact of this task (for the model card)."""
    train_defaults: ClassVar[dict[str, Any]]
    """Training settings this task's runs default to unless a strategy or the user sets them (generative tasks:
    TRL's batch of 8 sequences; their memory grows with length x layers, a classifier's hardly)."""

    def detect(self, columns: list[str], data: Any) -> bool:
        """True when a table with these columns holds this task's rows (``data.task: auto``)."""
        ...

    def configure(self, run_config: Any, backbone: Any) -> TaskType:
        """This task type bound to a run's settings and backbone (its tokenizer, its template); raises
        ``AdaptlabError`` when the backbone cannot do the task, naming the ones that can."""
        ...

    def load(self, cfg: Any, seed: int, table: Any = None) -> Any:
        """Read, validate and split the data (``DataConfig``): an object with ``train``, ``eval``,
        ``validation``, ``extra_evals``, ``eval_name``, ``source``, ``sampling`` and ``labels``."""
        ...

    def encode(self, split: Any, backbone: Any, cfg: Any, max_length: int) -> list[dict[str, Any]]:
        """Token rows of one split (done once, up front)."""
        ...

    def training_rows(self, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        """The rows the training loop iterates, made from the encoded training split (sft: packed on request)."""
        ...

    def build(self, task: Any, **load: Any) -> nn.Module:
        """The starting model for a strategy to prepare; ``load``: further ``from_pretrained`` arguments
        (a quantised base for qlora)."""
        ...

    def load_model(self, folder: Any, task: Any) -> nn.Module:
        """Load a ``save_pretrained`` artefact of this task's model."""
        ...

    def collate(self, pad_token_id: int) -> Any:
        """Rows -> batch tensors."""
        ...

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ...

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        """Scores of ``model`` on ``batches``: every entry of ``metrics`` and ``loss``."""
        ...

    def headline(self, scores: dict[str, Any]) -> dict[str, Any]:
        """The entries of a score dict that metrics.json's ``eval`` block keeps."""
        ...

    def outcome(self, final: dict[str, Any], data: Any, history: list[dict], lr: float | None, trained: bool) -> dict[str, Any]:
        """Task-specific metrics.json entries after training (baselines, a did-not-learn diagnosis)."""
        ...

    def describe(self, scores: dict[str, Any]) -> str:
        """The scores in a few words, for the run's last log line."""
        ...

    def files(self, data: Any, scores: dict[str, Any]) -> dict[str, str]:
        """Extra files of the run folder, name -> text, from the data (``labels.json``) or from the final
        evaluation's ``scores`` (``generations.jsonl``)."""
        ...


@runtime_checkable
class Generative(TaskType, Protocol):
    """A task type whose model answers prompts (sft, preference, feedback): what sampling answers inside a
    training step needs beyond the protocol (``strategies/_policy.py``'s online objectives)."""

    renderer: Renderer
    """The chat template and masking by token position: the tokenizer, and the tokens that end an answer."""


TASK_TYPES: dict[str, TaskType] = {}


def register_task(cls: type) -> type:
    """Register a task type under its module's name (one instance: task types hold no state)."""
    name = cls.__module__.rsplit(".", 1)[-1]
    cls.name = name
    TASK_TYPES[name] = cls()
    return cls


def get_task_type(name: str) -> TaskType:
    from . import discover

    discover()
    if name not in TASK_TYPES:
        raise unknown("task type", str(name), TASK_TYPES)
    return TASK_TYPES[name]


def task_of(metrics: dict[str, Any]) -> TaskType:
    """The task type a run's metrics.json names (classification for runs written before task types)."""
    return get_task_type(metrics.get("task", {}).get("type", "classification"))


def detect_task(columns: list[str], data: Any, source: str) -> TaskType:
    """The task type whose rows a table holds (first match in registration order); classification, whose
    column error names what is missing, when none matches."""
    from . import discover

    for task_type in discover().values():
        if task_type.detect(columns, data):
            return task_type
    return TASK_TYPES["classification"]
