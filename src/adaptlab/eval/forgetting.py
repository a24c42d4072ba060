"""Forgetting: how much adapting to the task changed what the backbone knew.

Fine-tuning can overwrite general knowledge (catastrophic forgetting; Howard &
Ruder 2018 §3.2 motivate gradual unfreezing with it). Every run measures its
backbone on a small fixed reference set shipped with adaptlab (see
``resources/REFERENCE.md``: Hamlet passages and question/answer pairs, unrelated
to the bundled tasks) once before training and once after, and records both in
``metrics.json``'s ``forgetting`` block.

What is measured, and why:

- ``text_loss``: the backbone's own language-modelling loss on the reference
  text, through the LM head *its checkpoint ships*: next-token loss for causal
  LMs, masked-LM loss (fixed, seeded masks) for encoders that have a pretrained
  MLM head. The bundled MiniLM checkpoints are sentence-transformers models
  without an MLM head; a freshly initialised head would measure that random
  head rather than the backbone, so ``text_loss`` is ``null`` for them, with the
  reason.
- ``pairs`` (encoders): cosine similarity of the mean-pooled embeddings
  (the sentence-transformers embedding) of 64 question/answer pairs: mean
  absolute change per pair, Spearman correlation of the similarities before
  vs after, how far each (unit-length) embedding moved, and the in-batch contrastive loss
  (MultipleNegativesRanking, scale 20: the objective all-MiniLM was trained with).

Before is measured on the module as the strategy prepared it (no update yet) and
after on the trained module, through the same code, batches and device, so a
strategy that leaves the backbone untouched shows exactly zero change. With a
peft adapter the adapter is part of the backbone's function and is measured.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

REFERENCE_VERSION = "hamlet32+chatterbot64/v1"
TEXT_MAX_LENGTH = 128
PAIR_MAX_LENGTH = 64
MASK_SEED = 1234


def reference_text() -> list[str]:
    text = (files("adaptlab") / "resources" / "reference_text.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def reference_pairs() -> list[tuple[str, str]]:
    text = (files("adaptlab") / "resources" / "reference_pairs.tsv").read_text(encoding="utf-8")
    return [tuple(line.split("\t", 1)) for line in text.splitlines() if "\t" in line]  # type: ignore[misc]


def find_backbone(module: nn.Module) -> nn.Module:
    """The transformer trunk inside any prepared module (classifier, peft model, probe, wrapper)."""
    from transformers import PreTrainedModel

    for m in module.modules():
        if isinstance(m, PreTrainedModel) and m.base_model is m:
            return m
    raise ValueError(f"no transformers base model inside {type(module).__name__}")


def lm_kind(config: Any) -> str | None:
    """``"masked"`` for encoders, ``"causal"`` for decoder LMs, ``None`` for anything else."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = getattr(config, "model_type", None)
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked"
    return "causal" if kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES else None


@dataclass
class LMHead:
    """A pretrained LM head; ``tied``: its output matrix is the trunk's input embedding."""

    module: nn.Module
    weight_path: str
    tied: bool

    def __call__(self, hidden: torch.Tensor, trunk: nn.Module) -> torch.Tensor:
        if self.tied:  # the adapted trunk's embeddings are the head's output matrix
            weight = trunk.get_input_embeddings().weight
            return torch.func.functional_call(self.module, {self.weight_path: weight}, (hidden,))
        return self.module(hidden)


@functools.lru_cache(maxsize=4)
def pretrained_head(source: str, kind: str) -> LMHead | None:
    """The LM head stored in the checkpoint at ``source``, or None when it has none."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    cls = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    lm, info = cls.from_pretrained(source, output_loading_info=True, dtype=torch.float32)
    prefix = lm.base_model_prefix + "."
    missing = {k for k in info.get("missing_keys", []) if not k.startswith(prefix)}
    if missing:
        return None
    head_name, head = next((n, m) for n, m in lm.named_children() if n != lm.base_model_prefix)
    out = lm.get_output_embeddings()
    path = next(n for n, m in head.named_modules() if m is out)
    tied = out.weight is lm.get_input_embeddings().weight
    head.requires_grad_(False).eval()
    return LMHead(head, f"{path}.weight" if path else "weight", tied)


def text_batches(tokenizer, texts: list[str], max_length: int, size: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(0, len(texts), size):
        enc = tokenizer(texts[i : i + size], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        out.append({k: enc[k] for k in ("input_ids", "attention_mask")})
    return out


def embed(trunk: nn.Module, batches: list[dict], device: torch.device, desc: str = "forgetting probe") -> torch.Tensor:
    """Unit-length mean-pooled sentence embeddings (the sentence-transformers embedding) of ``text_batches``."""
    out = []
    for batch in tqdm(batches, desc=desc, unit="batch", leave=False, disable=None):
        mask = batch["attention_mask"].to(device)
        states = trunk(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(states.dtype)
        out.append(F.normalize((states * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1).cpu())
    return torch.cat(out)


def _mask(batch: dict[str, torch.Tensor], tokenizer, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Fixed masked-LM inputs: 15 % of the real tokens become [MASK] (Devlin et al. 2019 §3.1)."""
    ids = batch["input_ids"].clone()
    special = torch.tensor([tokenizer.get_special_tokens_mask(row, already_has_special_tokens=True) for row in ids.tolist()]).bool()
    chosen = (torch.rand(ids.shape, generator=generator) < 0.15) & ~special & batch["attention_mask"].bool()
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    ids[chosen] = tokenizer.mask_token_id
    return {"input_ids": ids, "attention_mask": batch["attention_mask"], "labels": labels}


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp(min=1e-12))


class Probe:
    """The reference set tokenised for one backbone; measures any module built on it."""

    def __init__(self, backbone: Any):
        tok = backbone.tokenizer
        self.kind = lm_kind(backbone.config)
        self.head = pretrained_head(backbone.source, self.kind) if self.kind else None
        self.note = None if self.head else "the checkpoint has no pretrained language-modelling head"
        limit = getattr(backbone.config, "max_position_embeddings", None) or TEXT_MAX_LENGTH
        text = text_batches(tok, reference_text(), min(TEXT_MAX_LENGTH, limit), 4 if self.kind == "causal" else 8)
        if self.kind == "masked":
            generator = torch.Generator().manual_seed(MASK_SEED)
            text = [_mask(b, tok, generator) for b in text] if tok.mask_token_id is not None else []
        self.text = text if self.head else []
        pairs = reference_pairs()
        self.pairs = None
        if self.kind == "masked":  # sentence encoders: embedding similarity of the pairs
            self.pairs = [text_batches(tok, [p[i] for p in pairs], min(PAIR_MAX_LENGTH, limit), 32) for i in (0, 1)]

    @property
    def tokens(self) -> int:
        """Positions one measurement runs through the backbone, padding included (what it computes: the price of
        a forward pass for ``reporting/eta.py``)."""
        batches = self.text + [b for part in self.pairs or [] for b in part]
        return int(sum(b["input_ids"].numel() for b in batches))

    @classmethod
    def for_backbone(cls, backbone: Any) -> Probe:
        return _probe(backbone.source, backbone)

    @torch.inference_mode()
    def measure(self, module: nn.Module) -> dict[str, Any]:
        """Reference measurements of ``module``'s backbone (its trunk, adapters included)."""
        trunk = find_backbone(module)
        was_training = trunk.training
        trunk.eval()
        device = next(trunk.parameters()).device
        out: dict[str, Any] = {}
        if self.text:
            out["text_loss"] = self._text_loss(trunk, device)
        if self.pairs:
            out["embeddings"] = [self._embed(trunk, batches, device) for batches in self.pairs]
        trunk.train(was_training)
        return out

    def _text_loss(self, trunk: nn.Module, device: torch.device) -> float:
        total, count = 0.0, 0
        head = self.head.module.to(device)
        for batch in tqdm(self.text, desc="forgetting probe", unit="batch", leave=False, disable=None):
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = trunk(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            if self.kind == "causal":  # position t predicts token t + 1
                labels = batch["input_ids"][:, 1:].masked_fill(batch["attention_mask"][:, 1:] == 0, -100)
                hidden = hidden[:, :-1]
            else:
                labels = batch["labels"]
            keep = labels != -100
            logits = self.head(hidden[keep], trunk).float()
            total += F.cross_entropy(logits, labels[keep], reduction="sum").item()
            count += int(keep.sum())
        head.to("cpu")
        return total / max(count, 1)

    def _embed(self, trunk: nn.Module, batches: list[dict], device: torch.device) -> torch.Tensor:
        return embed(trunk, batches, device)

    def compare(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """The ``forgetting`` block of metrics.json."""
        block: dict[str, Any] = {"reference": REFERENCE_VERSION, "text_loss": None, "pairs": None, "tokens": self.tokens}
        if "text_loss" in before:
            b, a = before["text_loss"], after["text_loss"]
            objective = "next-token" if self.kind == "causal" else "masked-lm"
            block["text_loss"] = {"objective": objective, "before": round(b, 6), "after": round(a, 6), "change": round(a - b, 6)}
        else:
            block["text_loss_note"] = self.note or "not a language model"
        if "embeddings" in before:
            block["pairs"] = pair_change(before["embeddings"], after["embeddings"])
        return block


def pair_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> dict[str, float]:
    """How the similarity structure of the reference pairs moved."""
    sim_b, sim_a = (before[0] * before[1]).sum(-1), (after[0] * after[1]).sum(-1)
    moved = torch.cat([(after[i] - before[i]).norm(dim=-1) for i in (0, 1)])  # exactly 0 when unchanged

    def contrastive(e: list[torch.Tensor]) -> float:  # MultipleNegativesRankingLoss, scale 20
        return float(F.cross_entropy(20.0 * e[0] @ e[1].T, torch.arange(len(e[0]))))

    loss_b, loss_a = contrastive(before), contrastive(after)
    return {
        "count": len(sim_b),
        "similarity_before": round(float(sim_b.mean()), 6),
        "similarity_after": round(float(sim_a.mean()), 6),
        "similarity_change": round(float((sim_a - sim_b).abs().mean()), 6),
        "similarity_spearman": round(_spearman(sim_b, sim_a), 6),
        "embedding_distance": round(float(moved.mean()), 6),
        "contrastive_loss_before": round(loss_b, 6),
        "contrastive_loss_after": round(loss_a, 6),
        "contrastive_loss_change": round(loss_a - loss_b, 6),
    }


_PROBES: dict[str, Probe] = {}


def _probe(source: str, backbone: Any) -> Probe:
    if source not in _PROBES:
        _PROBES.clear()  # one backbone's probe at a time (a comparison shares it)
        _PROBES[source] = Probe(backbone)
    return _PROBES[source]


def summary(block: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(text-loss change, pair-similarity change) for the report's columns."""
    if not block:
        return None, None
    text = (block.get("text_loss") or {}).get("change")
    pairs = (block.get("pairs") or {}).get("similarity_change")
    return text, pairs
