"""Sequence classification: texts (or text pairs) with one label each.

The backbone gets a freshly initialised sequence-classification head
(transformers' ``AutoModelForSequenceClassification``), trained with
cross-entropy and judged by accuracy and macro-F1 on held-out examples. Data
reading and splitting live in :mod:`adaptlab.data.task`, scoring in
:mod:`adaptlab.evaluation`.
"""

from __future__ import annotations

import json
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdaptlabError
from .base import register_task


def build_classifier(task: Any, dtype: torch.dtype | None = None, **load: Any) -> nn.Module:
    """The backbone with a freshly initialised classification head (``load``: more ``from_pretrained``
    arguments, such as a strategy's ``quantization_config``)."""
    from transformers import AutoModelForSequenceClassification

    from ..models.modeling import load_dtype, set_dropout

    backbone = task.backbone
    require_classifier(backbone)
    dtype = dtype or load_dtype(task.train_config)
    config = backbone.config.__class__.from_dict(backbone.config.to_dict())
    config.num_labels = task.num_labels
    config.id2label = dict(enumerate(task.labels))
    config.label2id = {name: i for i, name in enumerate(task.labels)}
    config.pad_token_id = backbone.tokenizer.pad_token_id
    dropout = getattr(task.train_config, "dropout", None)
    if dropout is not None:
        set_dropout(config, dropout)
    return AutoModelForSequenceClassification.from_pretrained(backbone.source, config=config, dtype=dtype, **load)


def require_classifier(backbone: Any) -> None:
    """One line, before any weights load, when transformers has no sequence-classification model for the family."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    if type(backbone.config) in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING or getattr(backbone.config, "auto_map", None):
        return
    raise AdaptlabError(f"{backbone.family} models have no sequence-classification head in transformers "
                        f"(AutoModelForSequenceClassification): classify with zero_shot, prompt_tuning or p_tuning (label texts "
                        f"scored by the language model), or with linear_probe, protonet or contrastive (pooled states)")


def cross_entropy(outputs: Any, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(outputs.logits.float(), batch["labels"], label_smoothing=label_smoothing)


@register_task
class Classification:
    """Texts (or text pairs) with a label each: a new classification head, judged by accuracy and macro-F1."""

    summary = "texts with a label each -> a classifier (accuracy, macro-F1)"
    metrics = ("accuracy", "macro_f1")
    default_metric = "accuracy"
    peft_task_type = "SEQ_CLS"
    generative = False
    augmentable = True
    """``train.augment`` can make more of its training examples (``adaptlab.data.augment``)."""
    columns = (("accuracy", "accuracy", "{:.4f}"), ("macro_f1", "macro-F1", "{:.4f}"))
    """The report's metric columns (key in metrics.json's ``eval``, header, format)."""
    tolerance = 0.01
    serves = True
    auto_class = "AutoModelForSequenceClassification"
    train_defaults: dict[str, Any] = {}
    """How far below the best primary metric a cheaper strategy may be and still be recommended."""

    def detect(self, columns: list[str], data: Any) -> bool:
        return data.text_column in columns and data.label_column in columns

    def configure(self, run_config: Any, backbone: Any) -> Classification:
        return self  # every backbone gets a sequence-classification head; nothing to bind

    def load(self, cfg: Any, seed: int, table: Any = None) -> Any:
        from ..data.task import build_task

        return build_task(cfg, seed, table)

    def encode(self, split: Any, backbone: Any, cfg: Any, max_length: int) -> list[dict[str, Any]]:
        from ..data.batching import encode

        return encode(split, backbone.tokenizer, max_length, backbone.input_prefix)

    def training_rows(self, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        return rows

    def build(self, task: Any, **load: Any) -> nn.Module:
        return build_classifier(task, **load)

    def load_model(self, folder: Any, task: Any) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(folder)

    def collate(self, pad_token_id: int) -> Any:
        from ..data.batching import Collate

        return Collate(pad_token_id)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy; ``label_smoothing`` (``train.regularize``) mixes the targets with the uniform distribution."""
        return cross_entropy(outputs, batch, label_smoothing)

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        from ..eval.metrics import evaluate

        return evaluate(model, batches, accelerator)

    def headline(self, scores: dict[str, Any]) -> dict[str, Any]:
        return {k: scores.get(k) for k in ("accuracy", "macro_f1", "loss")}

    def outcome(self, final: dict[str, Any], data: Any, history: list[dict], lr: float | None, trained: bool) -> dict[str, Any]:
        from ..eval.diagnosis import did_not_learn

        losses = [h["train_loss"] for h in history if h.get("train_loss") is not None]
        from ..eval.metrics import CORRECT

        return {"majority_baseline": data.majority_baseline, "eval_correct": final.get(CORRECT),
                "did_not_learn": did_not_learn(final.get("accuracy"), data.majority_baseline, final.get("examples") or 0,
                                               final.get("top_prediction_share"), losses, lr, trained)}

    def describe(self, scores: dict[str, Any]) -> str:
        return f"accuracy {scores.get('accuracy') or 0:.3f}, macro-F1 {scores.get('macro_f1') or 0:.3f}, eval loss {scores.get('loss') or 0:.4f}"

    def files(self, data: Any, scores: dict[str, Any]) -> dict[str, str]:
        return {"labels.json": json.dumps({"id2label": dict(enumerate(data.labels))}, indent=2)}
