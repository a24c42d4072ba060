"""Knowledge distillation: a smaller student learns from a fine-tuned teacher.

Soft labels (Hinton et al. 2015, §2): the student matches the teacher's
temperature-softened class distribution, ``T^2 * KL(p_T || q_T)`` (the ``T^2``
keeps gradient sizes comparable across temperatures), mixed with the usual
cross-entropy on the true labels: ``alpha * soft + (1 - alpha) * hard``.
Feature distillation (TinyBERT, Jiao et al. 2020 §3.1): student hidden states
are matched to chosen teacher layers with MSE, through a learned linear map when
the widths differ (their ``W_h``); optionally the attention probability maps as
well (MSE, per head when head counts agree, else head-averaged). The default
layer map is TinyBERT's uniform ``g(m) = m * N / M``.

The teacher is any finished adaptlab run folder (``@name`` for an earlier stage
of the same recipe). Its outputs are computed once, before training
(``precompute``), and cached in the rows -- never recomputed per epoch; hidden
states are cached in float16 at each example's own length. The artefact is the
student alone, a ``save_pretrained`` classifier (plus the projections, if any).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import AdaptlabError
from ..models.modeling import count_parameters, unfreeze
from ..settings import StrategyConfig
from ._teacher import DistillCollate, Teacher, pad_to
from .base import Task, build_classifier, load_pretrained, register, save_pretrained


class DistillConfig(StrategyConfig):
    name: Literal["distill"] = "distill"
    teacher: str | None = None
    """The teacher: a finished adaptlab run folder, or ``@stage`` for an earlier stage of the same recipe."""
    temperature: float = Field(2.0, gt=0)
    """Softmax temperature of the soft labels (Hinton et al. 2015)."""
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the soft-label loss; ``1 - alpha`` goes to the hard-label cross-entropy."""
    hidden_weight: float = Field(0.0, ge=0)
    """Weight of the hidden-state MSE (feature distillation); 0 turns it off."""
    attention_weight: float = Field(0.0, ge=0)
    """Weight of the attention-map MSE; 0 turns it off (needs eager attention: slower)."""
    layer_map: list[int] | None = None
    """Teacher layer (1-based) matched by each student layer; ``null``: evenly spaced (TinyBERT)."""
    feature_level: Literal["token", "pooled"] = "token"
    """Match hidden states per token (same tokenizer needed) or mean-pooled per example."""


class DistillModel(nn.Module):
    """The student classifier plus the projections that map its states onto the teacher's."""

    def __init__(self, student: nn.Module, projections: nn.ModuleList, layer_map: list[int], features: bool, attention: bool):
        super().__init__()
        self.student, self.projections = student, projections
        self.layer_map, self.features, self.attention = layer_map, features, attention

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> SequenceClassifierOutput:
        inputs = {k: v for k, v in inputs.items() if not k.startswith("teacher_")}
        want = self.training and (self.features or self.attention)
        out = self.student(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=want and self.features,
                           output_attentions=want and self.attention, **inputs)
        hidden = [p(out.hidden_states[i + 1]) for i, p in enumerate(self.projections)] if want and self.features else None
        return SequenceClassifierOutput(logits=out.logits, hidden_states=hidden, attentions=out.attentions if want else None)


def even_layers(student: int, teacher: int) -> list[int]:
    """Student layer m (1-based) learns from teacher layer round(m * N / M) (TinyBERT §3.1)."""
    return [max(1, round(m * teacher / student)) for m in range(1, student + 1)]


def distill_section(runs: list[dict[str, Any]]) -> list[str]:
    """Student vs teacher: accuracy kept, parameters saved, inference speed (same eval rows, same process)."""
    rows = [r for r in runs if r.get("distill")]
    if not rows:
        return []
    lines = [
        "## Distillation: student vs teacher",
        "",
        "| model | backbone | accuracy | share of teacher accuracy | parameters | fewer parameters | inference examples/s | latency (ms, batch 1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["distill"]
        name = r.get("run", r["strategy"])
        t_acc, s_acc = d["teacher_accuracy"], r["eval"]["accuracy"]
        ti, si = d["teacher_inference"], d["student_inference"]
        lines.append(f"| teacher of {name} ({d['teacher_strategy']}) | {d['teacher_backbone']} | {t_acc:.4f} | 100% | "
                     f"{d['teacher_params']:,} | – | {ti['examples_per_second']:.1f} | {ti['latency_ms']:.1f} |")
        lines.append(f"| {name} | {r['backbone']} | {s_acc:.4f} | {s_acc / max(t_acc, 1e-9):.1%} | {d['student_params']:,} | "
                     f"{1 - d['student_params'] / d['teacher_params']:.0%} | {si['examples_per_second']:.1f} | {si['latency_ms']:.1f} |")
    return ["", *lines, "", "Soft labels at temperature T mixed with the hard labels (Hinton et al. 2015); feature "
            "matching where `hidden_weight` > 0 (TinyBERT). For scale: DistilBERT kept 97 % of BERT's GLUE score "
            "with 40 % fewer parameters. Speeds are measured one after the other in the same process."]


@register
class Distill:
    """Knowledge distillation into a smaller student: soft labels, optional hidden-state and attention matching."""

    report_section = staticmethod(distill_section)  # the report's section for the "distill" block of metrics.json

    Config = DistillConfig
    train_defaults = {"lr": 1e-4, "epochs": 3, "schedule": "linear"}

    def __init__(self, config: DistillConfig):
        self.config = config
        self.teacher: Teacher | None = None

    def build(self, task: Task) -> nn.Module:
        model = build_classifier(task)
        if self.config.attention_weight:
            model.set_attn_implementation("eager")  # sdpa returns no attention maps
        return model

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        c = self.config
        if not c.teacher:
            raise AdaptlabError("distill needs strategy.teacher: a finished run folder (or @stage in a recipe); "
                                "`adaptlab train distill` trains a teacher first")
        self.teacher = Teacher.load(c.teacher, getattr(task, "root", None), task)
        layers, width = model.config.num_hidden_layers, model.config.hidden_size
        layer_map = c.layer_map or even_layers(layers, self.teacher.layers)
        if len(layer_map) != layers or not all(1 <= t <= self.teacher.layers for t in layer_map):
            raise AdaptlabError(f"strategy.layer_map needs {layers} teacher layers between 1 and {self.teacher.layers}, got {layer_map}")
        if c.feature_level == "token" and (c.hidden_weight or c.attention_weight) and not self.teacher.same_tokenizer:
            raise AdaptlabError("token-level feature distillation needs the teacher's tokenizer; set strategy.feature_level=pooled")
        unfreeze(model.parameters())
        wide = self.teacher.width
        projections = nn.ModuleList(
            [nn.Linear(width, wide) if width != wide else nn.Identity() for _ in layer_map] if c.hidden_weight else []
        )
        self.teacher.configure(layer_map, bool(c.hidden_weight), bool(c.attention_weight), c.feature_level,
                               model.config.num_attention_heads)
        return DistillModel(model, projections, layer_map, bool(c.hidden_weight), bool(c.attention_weight))

    def precompute(self, module: DistillModel, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        """Teacher logits (and features) for every row, once; the teacher leaves the device afterwards."""
        return self.teacher.annotate(rows, batch_size, device)

    def collate(self, pad_token_id: int) -> DistillCollate:
        return DistillCollate(pad_token_id)

    def loss(self, outputs: SequenceClassifierOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        c, logits = self.config, outputs.logits.float()
        hard = F.cross_entropy(logits, batch["labels"])
        t = c.temperature
        soft = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(batch["teacher_logits"].float() / t, -1),
                        log_target=True, reduction="batchmean") * t * t
        total = c.alpha * soft + (1 - c.alpha) * hard
        mask = batch["attention_mask"].float()
        if outputs.hidden_states is not None:
            total = total + c.hidden_weight * hidden_mse(outputs.hidden_states, batch["teacher_hidden"].float(), mask, c.feature_level)
        if outputs.attentions is not None:
            total = total + c.attention_weight * attention_mse(outputs.attentions, batch["teacher_attention"].float(), mask)
        return total

    def extra_metrics(self, module: DistillModel, history: list[dict], rows: list[dict], device: torch.device) -> dict[str, Any]:
        """Teacher vs student on the same evaluation rows: accuracy, size, inference speed."""
        report = self.teacher.report(module.student, rows, device)
        report.update(student_params=count_parameters(module.student)[1], temperature=self.config.temperature,
                      alpha=self.config.alpha, layer_map=module.layer_map, hidden_weight=self.config.hidden_weight,
                      attention_weight=self.config.attention_weight)
        self.teacher = None  # free it
        return {"distill": report}

    def save(self, module: DistillModel, folder: Path, task: Task) -> None:
        save_pretrained(module.student, folder, task)
        if len(list(module.projections.parameters())):
            state = {k: v.detach().contiguous().cpu() for k, v in module.projections.state_dict().items()}
            save_file(state, folder / "distill_projections.safetensors")

    def load(self, folder: Path, task: Task) -> nn.Module:
        return load_pretrained(folder, task)


def hidden_mse(student: list[torch.Tensor], teacher: torch.Tensor, mask: torch.Tensor, level: str) -> torch.Tensor:
    """MSE between projected student states and cached teacher states, padding excluded."""
    losses = []
    for i, s in enumerate(student):
        t = teacher[:, i]
        if level == "pooled":
            m = mask.unsqueeze(-1)
            s = (s * m).sum(1) / m.sum(1).clamp(min=1)
            losses.append(F.mse_loss(s, t))
        else:
            t = pad_to(t, s.shape[1], dim=1)
            err = ((s - t) ** 2).mean(-1)
            losses.append((err * mask).sum() / mask.sum().clamp(min=1))
    return torch.stack(losses).mean()


def attention_mse(student: tuple[torch.Tensor, ...], teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between attention probability maps over real (query, key) positions."""
    pair = (mask.unsqueeze(-1) * mask.unsqueeze(-2)).unsqueeze(1)
    losses = []
    for i, s in enumerate(student):
        s, t = s.float(), teacher[:, i]
        if s.shape[1] != t.shape[1]:
            s = s.mean(1, keepdim=True)  # head counts differ: the teacher's maps are head-averaged
        t = pad_to(pad_to(t, s.shape[-1], dim=2), s.shape[-1], dim=3)
        losses.append((((s - t) ** 2) * pair).sum() / (pair.sum() * s.shape[1]).clamp(min=1))
    return torch.stack(losses).mean()
