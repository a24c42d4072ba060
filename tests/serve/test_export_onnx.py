"""``adaptlab export --format onnx``: a classifier run (adapters and all) as an ONNX graph that onnxruntime runs
with the run's probabilities at any batch size and length; what is no classifier is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import adaptlab

from ..conftest import toy_rows


@pytest.mark.parametrize("strategy", ["lora", pytest.param("linear_probe", marks=pytest.mark.slow)])
def test_onnxruntime_gives_the_runs_probabilities(cli, tmp_path, tiny_backbone, toy_csv, strategy):
    import onnx
    import onnxruntime

    run = tmp_path / strategy
    adaptlab.train(strategy=strategy, backbone=str(tiny_backbone), data=str(toy_csv), output=str(run),
                   overrides={"train.progress": False, "train.epochs": 2, "train.lr": 5e-3})
    code, out, err = cli("export", run, "--format", "onnx", "-o", tmp_path / "onnx")
    assert code == 0, err
    assert "same label on 100% of the probe texts" in out
    folder = tmp_path / "onnx"
    labels = json.loads(onnx.load(str(folder / "model.onnx")).metadata_props[0].value)
    assert list(labels.values()) == adaptlab.load(run).labels
    texts = [r["text"] for r in toy_rows(7, seed=11)]  # another batch size and other lengths than the export's
    from transformers import AutoTokenizer

    encoded = AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="np")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    logits = session.run(["logits"], {i.name: encoded[i.name] for i in session.get_inputs()})[0]
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = adaptlab.load(run).predict_proba(texts).numpy()
    assert np.abs(probs - expected).max() < 1e-4


def test_what_is_no_classifier_is_refused(cli, tmp_path, tiny_chat, translations_csv):
    run = tmp_path / "sft"
    adaptlab.train(strategy="lora", backbone=str(tiny_chat), data=str(translations_csv), output=str(run),
                   overrides={"train.progress": False, "train.epochs": 1, "train.lr": 1e-3, "data.max_eval": 4, "generation.max_new_tokens": 2})
    code, _, err = cli("export", run, "--format", "onnx", "-o", tmp_path / "x")
    assert code == 2 and "ONNX export is for classifiers" in err and not (tmp_path / "x").exists()
    code, _, err = cli("export", run, "--format", "torchscript", "-o", tmp_path / "x")
    assert code == 2 and "--format must be gguf or onnx" in err
