"""The teacher side of distillation: loading a run folder, caching its outputs once.

Kept apart from ``distill.py`` (a leading underscore: not a strategy module) so
that the strategy module reads as the method and this one as the plumbing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.batching import SEQUENCE_KEYS, BucketBatchSampler, Collate, lengths_of
from ..errors import AdaptlabError
from ..eval.forgetting import find_backbone
from ..eval.measure import inference_speed
from ..eval.metrics import model_inputs
from ..models.modeling import count_parameters

TEACHER_KEYS = ("teacher_hidden", "teacher_attention")


def pad_to(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """Zero-pad (or cut) ``t`` along ``dim`` to ``width``."""
    size = t.shape[dim]
    if size >= width:
        return t.narrow(dim, 0, width)
    shape = list(t.shape)
    shape[dim] = width - size
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


class DistillCollate(Collate):
    """Dynamic padding, with cached teacher features padded to the batch's length."""

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        plain = [{k: v for k, v in r.items() if k not in TEACHER_KEYS} for r in rows]
        batch = super().__call__(plain)
        width = batch["input_ids"].shape[1]
        for key in TEACHER_KEYS:
            if key in rows[0]:
                t = [r[key] for r in rows]
                if key == "teacher_hidden" and t[0].dim() == 3:  # (layers, length, width) per token
                    t = [pad_to(x, width, 1) for x in t]
                elif key == "teacher_attention":  # (layers, heads, length, length)
                    t = [pad_to(pad_to(x, width, 2), width, 3) for x in t]
                batch[key] = torch.stack(t)
        return batch


class Teacher:
    """A finished run loaded for distillation: its trunk's shape, its tokenizer, its outputs."""

    def __init__(self, predictor: Any, task: Any):
        self.predictor, self.module = predictor, predictor.module
        self.trunk = find_backbone(self.module)
        cfg = self.trunk.config
        self.layers, self.width, self.heads = cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads
        tok, student = predictor.backbone.tokenizer, task.backbone.tokenizer
        self.same_tokenizer = tok.get_vocab() == student.get_vocab() and predictor.backbone.input_prefix == task.backbone.input_prefix
        self.student_tokenizer = student
        self.layer_map: list[int] = []
        self.hidden = self.attention = False
        self.level, self.average_heads = "token", False

    @classmethod
    def load(cls, ref: str, root: Any, task: Any) -> Teacher:
        from ..models.backbones import resolve_ref
        from ..serve.predict import Predictor

        teacher = cls(Predictor(resolve_ref(ref, root), device="cpu"), task)
        teacher.ref = ref  # as configured ("@teacher" stays relocatable)
        if teacher.predictor.labels != list(task.labels):
            raise AdaptlabError(f"the teacher's labels {teacher.predictor.labels} differ from the task's {list(task.labels)}")
        return teacher

    def configure(self, layer_map: list[int], hidden: bool, attention: bool, level: str, student_heads: int) -> None:
        self.layer_map, self.hidden, self.attention, self.level = layer_map, hidden, attention, level
        self.average_heads = student_heads != self.heads
        if attention:
            self.trunk.set_attn_implementation("eager")

    def rows(self, rows: list[dict]) -> list[dict]:
        """The rows as the teacher reads them (re-tokenised when its tokenizer differs)."""
        if self.same_tokenizer:
            return [{k: r[k] for k in SEQUENCE_KEYS if k in r} | {"labels": r["labels"]} for r in rows]
        texts = self.student_tokenizer.batch_decode([r["input_ids"] for r in rows], skip_special_tokens=True)
        b = self.predictor.backbone
        enc = b.tokenizer([b.input_prefix + t for t in texts], truncation=True, max_length=self.predictor.config.data.max_length)
        keys = [k for k in SEQUENCE_KEYS if k in enc]
        return [{k: enc[k][i] for k in keys} | {"labels": r["labels"]} for i, r in enumerate(rows)]

    @torch.inference_mode()
    def annotate(self, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        """Each row plus ``teacher_logits`` (and ``teacher_hidden`` / ``teacher_attention``)."""
        self.module.to(device).eval()
        captured: dict[str, Any] = {}
        handles = [
            self.trunk.register_forward_pre_hook(self._ask_for_features, with_kwargs=True),
            self.trunk.register_forward_hook(lambda m, args, out: captured.update(out=out)),
        ]
        teacher_rows, out = self.rows(rows), [dict(r) for r in rows]
        collate = Collate(self.predictor.backbone.tokenizer.pad_token_id or 0)
        try:
            for ids in BucketBatchSampler(lengths_of(teacher_rows), batch_size, shuffle=False):
                batch = {k: v.to(device) for k, v in model_inputs(collate([teacher_rows[i] for i in ids])).items()}
                logits = self.module(**batch).logits.float().cpu()
                for j, i in enumerate(ids):
                    out[i]["teacher_logits"] = logits[j].clone()
                    out[i].update(self._features(captured["out"], batch["attention_mask"], j))
        finally:
            for h in handles:
                h.remove()
            self.module.to("cpu")
        return out

    def _ask_for_features(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, {**kwargs, "output_hidden_states": self.hidden, "output_attentions": self.attention}

    def _features(self, out: Any, mask: torch.Tensor, j: int) -> dict[str, torch.Tensor]:
        n = int(mask[j].sum())
        feats: dict[str, torch.Tensor] = {}
        if self.hidden:
            states = torch.stack([out.hidden_states[t][j, :n] for t in self.layer_map]).float()
            if self.level == "pooled":
                states = states.mean(1)
            feats["teacher_hidden"] = states.half().cpu()
        if self.attention:
            maps = torch.stack([out.attentions[t - 1][j, :, :n, :n] for t in self.layer_map])
            feats["teacher_attention"] = (maps.mean(1, keepdim=True) if self.average_heads else maps).half().cpu()
        return feats

    def report(self, student: nn.Module, rows: list[dict], device: torch.device, limit: int = 256) -> dict[str, Any]:
        """Teacher accuracy on the evaluation rows; teacher and student size and inference speed."""
        from ..eval.metrics import evaluate

        teacher_rows = self.rows(rows)
        collate = Collate(self.predictor.backbone.tokenizer.pad_token_id or 0)
        batches = [collate([teacher_rows[i] for i in ids]) for ids in BucketBatchSampler(lengths_of(teacher_rows), 64, shuffle=False)]
        self.module.to(device)
        scores = evaluate(self.module, [{k: v.to(device) for k, v in b.items()} for b in batches])
        pad = self.student_tokenizer.pad_token_id or 0
        speed_t = inference_speed(self.module, teacher_rows[:limit], self.predictor.backbone.tokenizer.pad_token_id or 0, device)
        speed_s = inference_speed(student, rows[:limit], pad, device)
        self.module.to("cpu")
        return {
            "teacher": self.ref,
            "teacher_backbone": self.predictor.config.backbone,
            "teacher_strategy": self.predictor.config.strategy.name,
            "teacher_accuracy": scores["accuracy"],
            "teacher_macro_f1": scores["macro_f1"],
            "teacher_params": count_parameters(self.module)[1],
            "teacher_inference": speed_t,
            "student_inference": speed_s,
        }
