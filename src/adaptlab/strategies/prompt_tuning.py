"""Prompt tuning through peft: trainable soft-prompt embeddings in front of the input.

Lester et al. 2021: the whole model stays frozen; ``num_virtual_tokens`` input
embeddings are prepended to every example and trained. They start as the
embeddings of real words (§2.2, §3.2: initialising from class-label words beats
random), by default "Classify as <the label names>".

- Encoders: the classifier is the backbone's sequence-classification model; the
  new head trains with the prompt, at its own ``head_lr`` (the prompt wants a
  learning rate ~100x higher than a linear layer tolerates).
- Causal LMs: no new head at all, as in the paper: the frozen LM scores each
  label's verbalisation after a prompt template (:class:`~adaptlab.models.verbalizer.LMScorer`)
  and only the soft prompt trains. (A last-token classification head cannot be
  used here: peft hands the model embeddings rather than token ids, so the
  classifier cannot find the last non-padding token.)

The artefact is a peft adapter folder (the prompt, and the head for encoders)
plus ``verbalizer.json`` for causal LMs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..models.modeling import load_dtype
from ..models.placement import layout
from ..models.verbalizer import LMScorer, VerbalizerOptions, is_causal_lm, label_texts
from .base import Task, register
from .lora import peft_classifier


class PromptTuningConfig(VerbalizerOptions):
    name: Literal["prompt_tuning"] = "prompt_tuning"
    num_virtual_tokens: int = Field(20, ge=1)
    """Length of the soft prompt (Lester et al. use 5-150; 20 is their usual choice)."""
    init: Literal["text", "random"] = "text"
    """Start the prompt from the embeddings of ``init_text`` (repeated to length), or at random."""
    init_text: str | None = None
    """Words to start from; ``null``: "Classify as" followed by the label names (their §3.2 class-label init)."""
    head_lr: float = Field(1e-2, gt=0)
    """Encoders: learning rate of the new classification head (the prompt trains at ``train.lr``)."""
    mode: Literal["auto", "classifier", "lm"] = "auto"
    """``classifier``: a new head on the backbone; ``lm``: label likelihood under a causal LM, no head; ``auto`` by backbone."""


def refuse_packing(task: Task, name: str) -> None:
    """Packed rows keep examples apart by their positions, which peft's prompt learning ignores."""
    data = getattr(task.run_config, "data", None)
    if getattr(data, "packing", False):
        from ..errors import AdaptlabError

        raise AdaptlabError(f"{name} cannot train on packed rows (peft ignores the positions that keep packed examples apart): "
                            f"drop --packing")


def init_from_text(embedding: nn.Embedding, word_embeddings: nn.Module, tokenizer: Any, text: str) -> None:
    """Copy the embeddings of ``text``'s tokens (repeated to the prompt's length) into the prompt."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id or 0]
    n = embedding.weight.shape[0]
    ids = (ids * (n // len(ids) + 1))[:n]
    with torch.no_grad():
        embedding.weight.copy_(word_embeddings(torch.tensor(ids, device=embedding.weight.device)))


def prompt_dims(model: nn.Module) -> dict[str, int]:
    """What peft's prompt learning needs to know of a model, read from it rather than from config names peft guesses
    (DistilBERT's ``dim``): the width of its input embeddings (ALBERT and ELECTRA embed narrower than their hidden
    size, and a soft prompt lives among the embeddings), its layers and heads."""
    found = layout(model)
    return {"token_dim": model.get_input_embeddings().embedding_dim, "num_layers": found.layers,
            "num_attention_heads": found.geometry.heads}


def prompt_and_head_groups(module: nn.Module, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """The prompt at ``lr`` without decay (it lives in embedding space); everything else trainable at ``head_lr``."""
    prompt = [p for n, p in module.named_parameters() if p.requires_grad and "prompt_encoder" in n]
    rest = [p for n, p in module.named_parameters() if p.requires_grad and "prompt_encoder" not in n]
    groups = [{"params": prompt, "lr": lr, "weight_decay": 0.0}, {"params": rest, "lr": head_lr, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]


@register
class PromptTuning:
    """Soft-prompt tuning: trainable input embeddings, frozen model, through peft (Lester et al. 2021)."""

    Config = PromptTuningConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 3e-2, "epochs": 5, "schedule": "linear"}
    step_cost = 3.0
    tasks = ("classification", "sft")
    caveat = ("a soft prompt on a frozen model is known to trail the other methods on models far below a "
              "billion parameters and with few training steps (Lester et al. 2021, Fig. 1).")

    def __init__(self, config: PromptTuningConfig):
        self.config = config

    def lm_mode(self, task: Task) -> bool:
        """Classification by label likelihood under a causal LM (no head)."""
        if task.type.generative:
            return False
        return self.config.mode == "lm" or (self.config.mode == "auto" and is_causal_lm(task.backbone.config))

    def check(self, task: Task) -> None:
        if not task.type.generative:
            label_texts(self.config, task.labels)
        refuse_packing(task, self.name)

    def peft_config(self, task: Task, model: nn.Module):
        from peft import PromptTuningConfig as PeftPromptTuningConfig
        from peft import TaskType

        kind = "CAUSAL_LM" if self.lm_mode(task) else task.type.peft_task_type
        return PeftPromptTuningConfig(task_type=getattr(TaskType, kind), num_virtual_tokens=self.config.num_virtual_tokens,
                                      **prompt_dims(model))

    def build(self, task: Task) -> nn.Module:
        from transformers import AutoModelForCausalLM

        if self.lm_mode(task):
            return AutoModelForCausalLM.from_pretrained(task.backbone.source, dtype=load_dtype(task.train_config))
        return task.type.build(task)

    def init_text(self, task: Task) -> str:
        if self.config.init_text:
            return self.config.init_text
        if task.type.generative:  # words of the task's own kind (§3.2): an instruction
            return "Answer the request below exactly as asked, in the language asked for."
        return "Classify as " + " or ".join(label_texts(self.config, task.labels))

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        peft_model = peft_classifier(model, self.peft_config(task, model))
        if self.config.init == "text":
            embedding = peft_model.prompt_encoder["default"].embedding
            init_from_text(embedding, peft_model.word_embeddings, task.backbone.tokenizer, self.init_text(task))
        return self.wrap(peft_model, task)

    def wrap(self, peft_model: nn.Module, task: Task) -> nn.Module:
        if not self.lm_mode(task):
            return peft_model
        c = self.config
        return LMScorer(peft_model, task.backbone.tokenizer, label_texts(c, task.labels), c.template, c.score)

    def param_groups(self, module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return prompt_and_head_groups(module, lr, self.config.head_lr, weight_decay)

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        peft_model = module.lm if isinstance(module, LMScorer) else module
        peft_model.save_pretrained(folder)
        if isinstance(module, LMScorer):
            meta = {"labels": task.labels, "label_texts": label_texts(self.config, task.labels), "template": self.config.template}
            (folder / "verbalizer.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, folder: Path, task: Task) -> nn.Module:
        from peft import PeftModel

        return self.wrap(PeftModel.from_pretrained(self.build(task), folder), task)
