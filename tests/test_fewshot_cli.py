"""The few-shot and cross-lingual commands end to end on the tiny model: episodic, curve, --shots, errors."""

from __future__ import annotations

import json
import random

import pytest

from adaptlab.errors import AdaptlabError
from adaptlab.models.backbones import load_backbone

from tests.conftest import FILLER, WORDS_NEG, WORDS_POS, toy_rows, write_csv

TOPICS = {"a": WORDS_POS[:3], "b": WORDS_POS[3:], "c": WORDS_NEG[:3], "d": WORDS_NEG[3:]}


@pytest.fixture(scope="module")
def topics_csv(tmp_path_factory):
    rng = random.Random(0)
    rows = []
    for i in range(240):
        label = "abcd"[i % 4]
        words = rng.sample(FILLER, 3) + [rng.choice(TOPICS[label])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return write_csv(tmp_path_factory.mktemp("topics") / "topics.csv", rows)


def test_episodic_holds_classes_out(cli, tiny_backbone, topics_csv, tmp_path):
    code, out, err = cli("episodic", "-s", "protonet,maml", "-b", tiny_backbone, "-d", topics_csv, "--test-classes", "a,c",
                         "--k-shot", "3", "--queries", "4", "--episodes", "12", "--epochs", "2", "-q", "-o", "epi")
    assert code == 0, err
    folder = tmp_path / "epi"
    result = json.loads((folder / "episodic.json").read_text())
    assert result["classes"] == {"meta_train": ["b", "d"], "meta_test": ["a", "c"]}
    assert [r["run"] for r in result["results"]] == ["protonet", "maml"]
    for r in result["results"]:
        assert 0 <= r["accuracy"] <= 1 and r["ci95"] >= 0
        labels = json.loads((folder / r["run"] / "labels.json").read_text())["id2label"]
        assert sorted(labels.values()) == ["b", "d"], "a held-out class reached (meta-)training"
    assert "protonet" in out and "±" in out


def test_episodic_runs_a_recipes_stages_first(monkeypatch, tiny_backbone, topics_csv, toy_csv, tmp_path):
    """``backbone: "@domain"``: domain-adaptive pretraining on another corpus, then protonet starts from it."""
    import adaptlab.eval.episodic as module
    from adaptlab.eval.episodic import episodic

    loaded: list[str] = []
    monkeypatch.setattr(module, "load_backbone", lambda ref: loaded.append(ref) or load_backbone(ref))
    recipe = {"backbone": str(tiny_backbone), "data": {"train": str(topics_csv)},
              "train": {"epochs": 1, "progress": False, "checkpoint_every": None},
              "stages": [{"name": "domain", "strategy": {"name": "dapt", "corpus": str(toy_csv), "block_size": 32}}],
              "strategies": [{"name": "protonet", "backbone": "@domain"}]}
    result = episodic(None, recipe, test_classes=["a", "c"], k_shot=3, queries=4, episodes=4, output=tmp_path / "epi")
    saved = json.loads((result.folder / "episodic.json").read_text())
    assert saved["stages"] == ["domain"] and saved["backbone"] == "@domain" and (result.folder / "domain" / "metrics.json").is_file()
    run = json.loads((result.folder / "protonet" / "metrics.json").read_text())
    assert run["backbone"] == "@domain" and "stages `domain`" in (result.folder / "episodic.md").read_text()
    assert loaded == [str(tmp_path / "epi.partial" / "domain")]  # protonet started from the stage's weights
    for strategies, message in (([{"name": "protonet", "backbone": "@elsewhere"}], "names no stage of this recipe"),
                                ([{"name": "protonet", "label": "domain"}], "share the name 'domain'")):
        with pytest.raises(AdaptlabError, match=message):
            episodic(None, {**recipe, "strategies": strategies}, output=tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.partial").exists()


def test_episodic_refuses_strategies_without_an_episodic_mode(cli, tiny_backbone, topics_csv, tmp_path):
    code, _, err = cli("episodic", "-s", "lora", "-b", tiny_backbone, "-d", topics_csv, "-o", "x")
    assert code == 2 and "no episodic mode" in err and not (tmp_path / "x").exists()


def test_curve_over_shots(cli, tiny_backbone, toy_csv, tmp_path):
    code, out, err = cli("curve", "--shots", "2,4", "--strategies", "linear_probe,contrastive", "-b", tiny_backbone,
                         "-d", toy_csv, "--epochs", "2", "-q", "-o", "curve")
    assert code == 0, err
    rows = json.loads((tmp_path / "curve" / "curve.json").read_text())["rows"]
    assert [(r["run"], r["k"], r["train_examples"]) for r in rows] == [
        ("linear_probe", 2, 4), ("contrastive", 2, 4), ("linear_probe", 4, 8), ("contrastive", 4, 8)]
    assert "| contrastive | 4 | 8 |" in out


def test_train_with_shots_and_named_eval_sets(cli, tiny_backbone, toy_csv, tmp_path):
    other = write_csv(tmp_path / "other.csv", toy_rows(60, seed=5))
    code, out, err = cli("train", "-s", "linear_probe", "-b", tiny_backbone, "-d", toy_csv, "--shots", "6",
                         "--eval-data", f"en={toy_csv},xx={other}", "--target-shots", "2", "-q", "-o", "run")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"]["shots"] == 6 and metrics["task"]["target_shots"] == 2 and metrics["train_examples"] == 16
    assert list(metrics["eval_sets"]) == ["en", "xx"] and "xx " in out


@pytest.mark.parametrize("args, message", [
    (["--shots", "500"], "examples per class asked for"),
    (["--target-shots", "4"], "needs an eval set in another language"),
    (["--eval-data", "zh=missing.csv"], "data file not found"),
])
def test_few_shot_input_errors(cli, tiny_backbone, toy_csv, tmp_path, args, message):
    code, _, err = cli("train", "-s", "linear_probe", "-b", tiny_backbone, "-d", toy_csv, "-o", "run", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_meta_test_examples_never_reach_training(tiny_backbone, topics_csv):
    from adaptlab.config import load_config
    from adaptlab.eval.episodic import class_split_setup

    cfg = load_config({"strategy": "protonet", "backbone": str(tiny_backbone), "data": {"train": str(topics_csv)}})
    setup, unseen, train_classes, test_classes = class_split_setup(cfg, None, 2)
    assert setup.data.labels == train_classes and not set(train_classes) & set(test_classes)
    seen = set(setup.data.train.texts) | set(setup.data.eval.texts)
    assert len(unseen) == 120 and not seen & set(unseen.texts)
    assert {y for y in setup.data.train.labels} == {0, 1} and {y for y in unseen.labels} == {0, 1}
