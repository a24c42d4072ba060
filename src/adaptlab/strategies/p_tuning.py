"""P-tuning through peft: a soft prompt produced by a small trainable encoder.

Liu et al. 2021 ("GPT Understands, Too"), §3: like prompt tuning, virtual tokens
are prepended to the input of a frozen model, but their embeddings come from a
prompt encoder (an MLP or LSTM over trainable inputs) rather than being trained
directly, which the paper found to optimise more smoothly. Everything else --
encoders with a new head at ``head_lr``, causal LMs scoring label
verbalisations with no head, the peft adapter folder -- is as in
:mod:`prompt_tuning`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from ..models.verbalizer import VerbalizerOptions
from .base import Task, register
from .lora import peft_classifier
from .prompt_tuning import PromptTuning, prompt_dims


class PTuningConfig(VerbalizerOptions):
    name: Literal["p_tuning"] = "p_tuning"
    num_virtual_tokens: int = Field(20, ge=1)
    """Number of virtual tokens prepended to the input."""
    encoder_hidden_size: int = Field(128, ge=1)
    """Hidden width of the prompt encoder."""
    encoder: Literal["MLP", "LSTM"] = "MLP"
    """Prompt encoder architecture (the paper's is an LSTM followed by an MLP; the MLP alone is faster)."""
    head_lr: float = Field(1e-2, gt=0)
    """Encoders: learning rate of the new classification head (the prompt encoder trains at ``train.lr``)."""
    mode: Literal["auto", "classifier", "lm"] = "auto"
    """``classifier``: a new head on the backbone; ``lm``: label likelihood under a causal LM, no head; ``auto`` by backbone."""


@register
class PTuning(PromptTuning):
    """P-tuning: virtual tokens from a trainable prompt encoder, frozen model, through peft (Liu et al. 2021)."""

    Config = PTuningConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 3e-3, "epochs": 5, "schedule": "linear"}
    caveat = ("a soft prompt on a frozen model is known to trail the other methods on small models with few "
              "training steps (Lester et al. 2021, Fig. 1; Liu et al. 2022, P-tuning v2, Fig. 1).")

    def peft_config(self, task: Task, model: nn.Module):
        from peft import PromptEncoderConfig, TaskType

        c = self.config
        kind = "CAUSAL_LM" if self.lm_mode(task) else task.type.peft_task_type
        return PromptEncoderConfig(task_type=getattr(TaskType, kind), num_virtual_tokens=c.num_virtual_tokens,
                                   encoder_hidden_size=c.encoder_hidden_size, encoder_reparameterization_type=c.encoder,
                                   **prompt_dims(model))

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        return self.wrap(peft_classifier(model, self.peft_config(task, model)), task)
