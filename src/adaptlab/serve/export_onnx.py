"""``adaptlab export RUN --format onnx``: a classifier run as an ONNX model for onnxruntime (and what runs ONNX).

``torch.onnx.export`` (its current exporter, through onnxscript) traces the run's own module -- whatever the
strategy, the adapters are part of the traced graph -- with batch and sequence length dynamic, from the token
ids, attention mask (and token types, where the tokenizer gives them) to the class logits. The output folder
holds ``model.onnx`` (its label names in the model's metadata, ``id2label``), the tokenizer's files and
``labels.json``, as optimum lays out an exported model. Before the folder is moved into place, onnxruntime runs
the file on probe texts of several lengths and its class probabilities must match the run's to 1e-4.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import AdaptlabError
from .predict import Predictor

TOLERANCE = 1e-4
PROBE = ["a tender, funny and moving film", "dull, predictable and far too long for what it has to say about anything", "ok"]


@dataclass
class Check:
    max_probability_gap: float
    same_labels: float
    """Share of probe texts that onnxruntime labels as the run does."""


class Logits(nn.Module):
    """The run's module as ONNX sees it: named tensors in, class logits out."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.module(input_ids=input_ids, attention_mask=attention_mask, **types).logits


def export_onnx(run_dir: str | Path, output: str | Path) -> tuple[Path, Check]:
    """Write the folder ``output`` (``model.onnx``, tokenizer, labels), checked with onnxruntime."""
    out = Path(output)
    if out.exists():
        raise AdaptlabError(f"{out} already exists; choose another --output")
    predictor = Predictor(run_dir, device="cpu")
    if predictor.kind != "classify":
        raise AdaptlabError(f"{predictor.run_dir} is a {predictor.task_type.name} run: ONNX export is for classifiers; "
                            "causal LMs export with --format gguf")
    if predictor.config.data.text_pair_column:
        raise AdaptlabError("ONNX export of pair classifiers is not supported yet: export a single-text classifier")
    tokenizer = predictor.backbone.tokenizer
    sample = tokenizer(PROBE[:2], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write(predictor.module.eval(), names, sample, partial / "model.onnx", predictor.labels)
        tokenizer.save_pretrained(partial)
        (partial / "labels.json").write_text(json.dumps({"id2label": dict(enumerate(predictor.labels))}, indent=2))
        result = check(predictor, partial / "model.onnx", names)
        if result.max_probability_gap > TOLERANCE:
            raise AdaptlabError(f"onnxruntime's probabilities differ from the run's by {result.max_probability_gap:.2e} "
                                f"(> {TOLERANCE}); not written")
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out, result


def _write(module: nn.Module, names: list[str], sample, path: Path, labels: list[str]) -> None:
    import onnx

    dims = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}  # batch and sequence length
    with torch.no_grad():
        torch.onnx.export(Logits(module), tuple(sample[n] for n in names), str(path), input_names=names, output_names=["logits"],
                          dynamic_shapes={n: dims for n in names}, dynamo=True, external_data=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"id2label": json.dumps(dict(enumerate(labels)))})
    onnx.save(model, str(path))


def check(predictor: Predictor, path: Path, names: list[str]) -> Check:
    """onnxruntime's class probabilities on :data:`PROBE` (padded to one batch) against the run's module's on the
    same token ids."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    encoded = predictor.backbone.tokenizer(PROBE, padding=True, return_tensors="np")
    logits = torch.from_numpy(session.run(["logits"], {n: encoded[n] for n in names})[0])
    theirs = logits.float().softmax(-1)
    with torch.inference_mode():
        mine = Logits(predictor.module)(*(torch.from_numpy(encoded[n]) for n in names)).float().softmax(-1)
    return Check((theirs - mine).abs().max().item(), (theirs.argmax(-1) == mine.argmax(-1)).float().mean().item())
