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
from typing import Literal

from pydantic import Field
from torch import nn

from ..modeling import freeze
from ..verbalizer import EmbeddingScorer, LMScorer, VerbalizerOptions, is_causal_lm, label_texts
from .base import Task, register


class ZeroShotConfig(VerbalizerOptions):
    name: Literal["zero_shot"] = "zero_shot"
    mode: Literal["auto", "embedding", "lm"] = "auto"
    """``embedding``: similarity to label descriptions (encoders); ``lm``: label likelihood after the prompt (causal LMs); ``auto`` picks by the backbone."""
    scale: float = Field(20.0, gt=0)
    """Embedding mode: cosine similarities are multiplied by this before the softmax (only probabilities and eval loss change)."""


@register
class ZeroShot:
    """No training: label descriptions by embedding similarity, or label likelihood under a causal LM."""

    Config = ZeroShotConfig
    train_defaults = {"epochs": 1}

    def __init__(self, config: ZeroShotConfig):
        self.config = config

    def lm_mode(self, task: Task) -> bool:
        return self.config.mode == "lm" or (self.config.mode == "auto" and is_causal_lm(task.backbone.config))

    def check(self, task: Task) -> None:
        label_texts(self.config, task.labels)

    def build(self, task: Task) -> nn.Module:
        import torch
        from transformers import AutoModel, AutoModelForCausalLM

        cls = AutoModelForCausalLM if self.lm_mode(task) else AutoModel
        return cls.from_pretrained(task.backbone.source, dtype=torch.float32)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        freeze(model).eval()
        texts = label_texts(self.config, task.labels)
        tokenizer = task.backbone.tokenizer
        if self.lm_mode(task):
            return LMScorer(model, tokenizer, texts, self.config.template, self.config.score)
        return EmbeddingScorer(model, tokenizer, texts, self.config.scale, task.backbone.input_prefix)

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        meta = {"labels": task.labels, "label_texts": label_texts(self.config, task.labels), **self.config.model_dump()}
        (folder / "zero_shot.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, folder: Path, task: Task) -> nn.Module:
        return self.prepare(self.build(task), task)
