"""``adaptlab merge RUN_DIR --output DIR``: fold a trained weight update into a plain model.

LoRA, DoRA and (IA)^3 change weights by something that can be added or
multiplied into them (peft's ``merge_and_unload``), and linear bottleneck
adapters (``activation: identity``) fold exactly into the projection they
follow. The merged model is an ordinary ``transformers`` folder --
``AutoModelForSequenceClassification.from_pretrained(DIR)`` -- that runs at the
backbone's speed with no adapter code. Before the folder is written, the merged
model must reproduce the run's predictions on a probe batch to 1e-4.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..errors import AdaptlabError
from ..eval.metrics import model_inputs
from ..strategies import discover
from .predict import Predictor

TOLERANCE = 1e-4
PROBE = ["a tender, funny and moving film", "dull, predictable and far too long", "the plot", "it was fine"]


def mergeable() -> list[str]:
    return sorted(name for name, cls in discover().items() if callable(getattr(cls, "merge", None)))


def merge(run_dir: str | Path, output: str | Path) -> Path:
    """Write the run's model with its update folded in to ``output``; return it."""
    out = Path(output)
    if out.exists():
        raise AdaptlabError(f"{out} already exists; choose another --output")
    predictor = Predictor(run_dir, device="cpu")
    name = predictor.strategy.name
    if not callable(getattr(predictor.strategy, "merge", None)):
        raise AdaptlabError(f"'{name}' runs cannot be merged into plain weights; strategies that can: {', '.join(mergeable())}")
    probe = predictor.backbone.tokenizer(PROBE, padding=True, return_tensors="pt")
    inputs = model_inputs({k: v for k, v in probe.items() if k in ("input_ids", "attention_mask", "token_type_ids")})
    with torch.inference_mode():
        before = predictor.module(**inputs).logits
    merged = predictor.strategy.merge(predictor.module).eval()
    with torch.inference_mode():
        gap = (merged(**inputs).logits - before).abs().max().item()
    if gap > TOLERANCE:
        raise AdaptlabError(f"merged model differs from the run by {gap:.2e} (> {TOLERANCE}); not written")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    predictor.backbone.tokenizer.save_pretrained(tmp)
    os.replace(tmp, out)
    return out
