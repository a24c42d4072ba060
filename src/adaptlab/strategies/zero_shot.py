"""Zero-shot: no training at all -- the baseline every comparison needs.

What a pretrained model knows about the task before it sees one labelled
example. An encoder embeds the text and a short description of each label and
picks the most similar label (cosine similarity of sentence embeddings); a
causal LM reads the text in a prompt and picks the label whose verbalisation is
most likely next (see :mod:`adaptlab.verbalizer`). Nothing trains (0 trainable
parameters; the loop scores the model once, as epoch 0), so any strategy that
does not beat this row learned nothing useful from the data.

Label descriptions matter: "fresh"/"rotten" say little to a sentence encoder,
"a positive review"/"a negative review" say a lot -- set ``label_texts``. The
artefact is ``zero_shot.json`` (labels, their texts, the prompt): a few hundred
bytes, the backbone is rebuilt from its source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..models.modeling import freeze, load_dtype
from ..models.verbalizer import EmbeddingScorer, LMScorer, VerbalizerOptions, is_causal_lm, label_texts
from .base import Task, register


class ZeroShotConfig(VerbalizerOptions):
    name: Literal["zero_shot"] = "zero_shot"
    shots: int = Field(0, ge=0)
    """sft: in-context examples from the training set put before every prompt as earlier turns
    (Brown et al. 2020's few-shot prompting; 0: the instruction alone)."""
    mode: Literal["auto", "embedding", "lm"] = "auto"
    """``embedding``: similarity to label descriptions (encoders); ``lm``: label likelihood after the prompt (causal LMs); ``auto`` picks by the backbone."""
    scale: float = Field(20.0, gt=0)
    """Embedding mode: cosine similarities are multiplied by this before the softmax (only probabilities and eval loss change)."""


@register
class ZeroShot:
    """No training: label descriptions by embedding similarity, or label likelihood under a causal LM."""

    Config = ZeroShotConfig
    train_defaults = {"epochs": 1}
    step_cost = None  # nothing trains
    tasks = ("classification", "sft", "preference", "feedback")

    def __init__(self, config: ZeroShotConfig):
        self.config = config

    def lm_mode(self, task: Task) -> bool:
        return self.config.mode == "lm" or (self.config.mode == "auto" and is_causal_lm(task.backbone.config))

    def check(self, task: Task) -> None:
        if not task.type.generative:
            label_texts(self.config, task.labels)

    def build(self, task: Task) -> nn.Module:
        import torch
        from transformers import AutoModel, AutoModelForCausalLM

        if task.type.generative:
            return task.type.build(task)
        cls = AutoModelForCausalLM if self.lm_mode(task) else AutoModel
        return cls.from_pretrained(task.backbone.source, dtype=load_dtype(task.train_config))

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        freeze(model).eval()
        if task.type.generative:  # the instruction model as it is, prompted by the task's template
            return model
        texts = label_texts(self.config, task.labels)
        tokenizer = task.backbone.tokenizer
        if self.lm_mode(task):
            return LMScorer(model, tokenizer, texts, self.config.template, self.config.score)
        return EmbeddingScorer(model, tokenizer, texts, self.config.scale, task.backbone.input_prefix)

    def dataset(self, data: Any, task: Task) -> tuple[list[dict], list[dict]]:
        """Nothing trains; the evaluation rows (sft: with ``shots`` training examples in front of each) are scored once."""
        split = data.eval
        if task.type.generative and self.config.shots:
            if len(data.train) < self.config.shots:
                raise AdaptlabError(f"strategy.shots={self.config.shots} but the training set has {len(data.train)} examples")
            split = task.type.with_shots(split, data.train, self.config.shots, task.train_config.seed)
        return [], task.type.encode(split, task.backbone, task.run_config.data, task.run_config.data.max_length)

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        labels = [] if task.type.generative else label_texts(self.config, task.labels)
        meta = {"task": task.type.name, "labels": task.labels, "label_texts": labels, **self.config.model_dump()}
        (folder / "zero_shot.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, folder: Path, task: Task) -> nn.Module:
        return self.prepare(self.build(task), task)
