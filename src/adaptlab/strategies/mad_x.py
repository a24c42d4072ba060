"""MAD-X: a language adapter under a task adapter, swapped at inference.

Pfeiffer et al. 2020 (MAD-X), §2: bottleneck adapters (a down-projection, a
non-linearity and an up-projection with a residual connection, Houlsby et al.
2019) sit after the feed-forward sub-layer of every transformer block. A
*language* adapter is trained by masked language modelling on unlabelled text
of a language, with the backbone frozen; a *task* adapter is trained on
labelled source-language data stacked on top of the source-language adapter
(or directly on the backbone when no source text is given); at inference the
target-language adapter replaces the source one under the same task adapter
(§2.3, "zero-shot cross-lingual transfer"). Language adapters are trained once
and cached (``cache_dir()/language-adapters``), as MAD-X intends them to be
reused across tasks; the invertible embedding adapters of §2.4 are left out.

The adapter modules are the minimum written here: peft has no bottleneck
adapters, and the AdapterHub ``adapters`` library pins transformers 4.x. The
masked-language-modelling stage runs through the same training loop
(``loop.fit``) with its own collate (transformers' MLM collator) and loss.
Every evaluation, the training loop's included, uses the target-language
stack: the model is a model for the target language.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import AdaptlabError
from ..eval.metrics import evaluate
from ..models.modeling import freeze
from ..settings import StrategyConfig
from ._adapters import attach_adapters, set_active, train_language_adapter
from ._fewshot import build_encoder, encode
from .base import Task, register


class MadXConfig(StrategyConfig):
    name: Literal["mad_x"] = "mad_x"
    target_text: str
    """Unlabelled target-language text for the language adapter: a bundled dataset or a data file."""
    source_text: str | None = None
    """Unlabelled source-language text for a source language adapter; ``null``: the task adapter sits on the bare backbone."""
    text_column: str = "text"
    """Column of the text files holding the text."""
    language_reduction: int = Field(2, ge=1)
    """Hidden size / bottleneck size of the language adapters (MAD-X: 2)."""
    task_reduction: int = Field(16, ge=1)
    """Hidden size / bottleneck size of the task adapter (MAD-X: 16)."""
    mlm_texts: int = Field(2000, ge=1)
    """Texts used to train each language adapter (the first ones, in file order)."""
    mlm_epochs: int = Field(1, ge=1)
    """Masked-language-modelling epochs for each language adapter."""
    mlm_head_epochs: int = Field(1, ge=0)
    """Epochs in which the new MLM head trains alone before the language adapter does (0: none)."""
    mlm_lr: float = Field(1e-3, gt=0)
    """Learning rate of the masked-language-modelling stage."""
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    """Share of tokens masked (Devlin et al. 2019: 15 %)."""
    cache: bool = True
    """Reuse a language adapter trained before on the same backbone, text and settings."""

    @field_validator("target_text", "source_text")
    @classmethod
    def _text_exists(cls, value: str | None) -> str | None:
        """Checked with the config, before any run folder exists."""
        from ..data.bundled import is_bundled

        if value is not None and not is_bundled(value) and not Path(value).is_file():
            raise ValueError(f"no bundled dataset or file named {value!r} (e.g. reviews-zh-unlabelled)")
        return value


class AdapterClassifier(nn.Module):
    """Encoder with adapters, mean pooling and a linear head.

    Mean pooling rather than BERT's ``[CLS]`` pooler: adapters change every
    token's state, and e5's sentence embedding is the mean (the converted e5 has
    no trained pooler).
    """

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.head(encode(self.encoder, inputs)))


@register
class MadX:
    """MAD-X: a task adapter trained over a source language adapter, a target language adapter swapped in (Pfeiffer et al. 2020)."""

    Config = MadXConfig
    train_defaults = {"lr": 1e-3, "epochs": 3, "schedule": "linear"}

    def __init__(self, config: MadXConfig):
        self.config = config
        self.report: dict[str, Any] = {}

    def languages(self) -> list[str]:
        return ["source", "target"] if self.config.source_text else ["target"]

    def reductions(self) -> dict[str, int]:
        c = self.config
        return {"source": c.language_reduction, "target": c.language_reduction, "task": c.task_reduction}

    def check(self, task: Task) -> None:
        """Language adapters learn by masked language modelling: a bidirectional encoder, not a causal LM."""
        from ..models.verbalizer import is_causal_lm

        if is_causal_lm(task.backbone.config):
            raise AdaptlabError(f"mad_x trains its language adapters by masked language modelling, which needs a bidirectional "
                                f"encoder; {task.backbone.family} is a causal LM (use adapter or lora on it, or an encoder backbone)")
        task.backbone.layout()  # where the adapters go: one line naming what was found when it cannot be read

    def build(self, task: Task) -> nn.Module:
        return build_encoder(task)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        freeze(model)
        attach_adapters(model, self.reductions(), self.languages() + ["task"])
        for language, text in (("source", self.config.source_text), ("target", self.config.target_text)):
            if text:
                self.report[language] = train_language_adapter(model, language, text, self.config, task)
        freeze(model)
        for name, p in model.named_parameters():
            p.requires_grad_(".adapters.task." in name)
        set_active(model, self.training_stack())
        return AdapterClassifier(model, task.num_labels)

    def earlier_training(self) -> dict[str, float]:
        """The language adapters' masked-LM training (§2.2) is part of what MAD-X costs: counted in the run's
        ``train_seconds`` -- a cached adapter with the seconds it took when it was trained."""
        return {f"language adapter ({language})": float(r.get("seconds", 0.0)) for language, r in self.report.items()}

    def training_stack(self) -> list[str]:
        return (["source"] if self.config.source_text else []) + ["task"]

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, float]:
        """Score with the target-language stack; train on with the source one."""
        set_active(model, ["target", "task"])
        try:
            return evaluate(model, batches, accelerator)
        finally:
            set_active(model, self.training_stack())

    def save(self, module: AdapterClassifier, folder: Path, task: Task) -> None:
        """Adapters and head; from here on the in-process module is the target-language model too."""
        set_active(module, ["target", "task"])
        keep = {n: p.detach().contiguous().cpu() for n, p in module.named_parameters() if ".adapters." in n or n.startswith("head.")}
        save_file(keep, folder / "adapters.safetensors")
        meta = {**self.config.model_dump(), "languages": self.languages(), "inference_stack": ["target", "task"],
                "language_adapters": self.report}
        (folder / "mad_x.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, folder: Path, task: Task) -> nn.Module:
        meta = json.loads((folder / "mad_x.json").read_text(encoding="utf-8"))
        self.config = MadXConfig.model_validate({k: v for k, v in meta.items() if k in MadXConfig.model_fields})
        encoder = build_encoder(task)
        attach_adapters(encoder, self.reductions(), meta["languages"] + ["task"])
        module = AdapterClassifier(encoder, task.num_labels)
        # adaptlab before 2026-12 kept the stack on a BERT block's ``output`` module: the same place, another name
        stored = {k.replace(".output.adapters.", ".adapters."): v for k, v in load_file(folder / "adapters.safetensors").items()}
        missing = set(stored) - set(dict(module.named_parameters()))
        if missing:
            raise AdaptlabError(f"{folder} holds adapter weights this backbone has no place for: {sorted(missing)[:3]}")
        module.load_state_dict(stored, strict=False)
        set_active(module, meta["inference_stack"])
        return freeze(module)
