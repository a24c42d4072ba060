"""Many runs over one backbone: identical predictions, memory of one backbone plus the adapters."""

from __future__ import annotations

import json

import pytest
import torch

import adaptlab
from adaptlab.eval.measure import folder_bytes
from adaptlab.serve.many import load_many, unique_bytes

TRAIN = {"train__epochs": 1, "train__progress": False, "train__checkpoint_every": None, "data__max_train": 64}
TEXTS = ["the film was good", "a dull and boring plot", "superb acting", "terrible"]


@pytest.fixture(scope="module")
def runs(tiny_backbone, toy_csv, tmp_path_factory):
    """Four small runs of three kinds over the tiny backbone."""
    root = tmp_path_factory.mktemp("many")
    specs = {"lora": {}, "adapter": {"strategy__activation": "identity"}, "ia3": {}, "prompt_tuning": {"strategy__num_virtual_tokens": 4}}
    out = {}
    for name, options in specs.items():
        out[name] = adaptlab.train(strategy=name, backbone=str(tiny_backbone), data=str(toy_csv), output=str(root / name),
                                   **TRAIN, **options).run_dir
    return out


def test_predictions_match_separate_loads(runs):
    many = load_many(list(runs.values()))
    for run in runs.values():
        alone = adaptlab.load(run).predict_proba(TEXTS)
        shared = many[run].predict_proba(TEXTS)
        torch.testing.assert_close(shared, alone, rtol=0, atol=1e-6)


def test_memory_is_one_backbone_plus_what_each_run_trained(runs):
    dirs = list(runs.values())
    separate = [adaptlab.load(run).module for run in dirs]
    many = load_many(dirs)
    first_run = unique_bytes(separate[:1])  # the backbone and the first run's own tensors
    others_own = sum(folder_bytes(run / "model") for run in dirs[1:])  # trained tensors (+ small json) of the rest
    assert unique_bytes(separate) > 3.5 * first_run * 0.9  # four separate loads: four backbones
    assert first_run <= many.memory_bytes() < first_run + others_own  # shared: one backbone + adapters
    assert many.memory_bytes() < unique_bytes(separate) / 3


def test_cli_predicts_with_several_runs(runs, cli, tmp_path):
    (tmp_path / "in.csv").write_text("text\n" + "\n".join(TEXTS) + "\n")
    chosen = [runs["lora"], runs["adapter"]]
    code, out, err = cli("predict", *chosen, "--input", tmp_path / "in.csv", "--output", tmp_path / "p.jsonl")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["run"] for r in rows] == [str(chosen[0])] * 4 + [str(chosen[1])] * 4
    expected = adaptlab.load(chosen[1]).predict(TEXTS)
    assert [r["label"] for r in rows[4:]] == [p.label for p in expected]


def test_merge_cli_round_trip(runs, cli, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    for name in ("lora", "adapter", "ia3"):
        code, out, err = cli("merge", runs[name], "--output", tmp_path / name)
        assert code == 0, err
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / name).eval()
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / name)
        with torch.inference_mode():
            probs = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.softmax(-1)
        torch.testing.assert_close(probs, adaptlab.load(runs[name]).predict_proba(TEXTS), rtol=0, atol=1e-4)


def test_merge_refuses_what_it_cannot_merge(runs, cli, tmp_path):
    code, _, err = cli("merge", runs["prompt_tuning"], "--output", tmp_path / "m")
    assert code == 2 and "cannot be merged" in err and "lora" in err and not (tmp_path / "m").exists()
    (tmp_path / "taken").mkdir()
    code, _, err = cli("merge", runs["lora"], "--output", tmp_path / "taken")
    assert code == 2 and "already exists" in err
