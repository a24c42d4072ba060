"""Defaults that learn on data they were not tuned for: the range test, epochs from the data size,
the validation split, and the did-not-learn flag."""

from __future__ import annotations

import random

import pytest
import torch

from .conftest import FILLER, WORDS_NEG, WORDS_POS, write_csv


def imbalanced_rows(n: int, seed: int = 0) -> list[dict]:
    """Three classes at 60 / 25 / 15 %, texts of 30-50 words of which two give the class away."""
    rng = random.Random(seed)
    signal = {"often": WORDS_POS, "sometimes": WORDS_NEG, "rare": [f"w{i}" for i in range(6)]}
    rows = []
    for _ in range(n):
        label = rng.choices(list(signal), weights=[0.6, 0.25, 0.15])[0]
        words = [rng.choice(FILLER + [f"w{j}" for j in range(10, 20)]) for _ in range(rng.randint(30, 50))]
        for _ in range(2):
            words.insert(rng.randrange(len(words)), rng.choice(signal[label]))
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def imbalanced_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("imbalanced") / "reviews.csv", imbalanced_rows(700))


def run(tiny_backbone, data, out, **fields):
    import adaptlab

    return adaptlab.train(strategy="full", backbone=str(tiny_backbone), data=str(data), output=str(out),
                          train__progress=False, data__max_length=60, **fields).metrics


def test_old_defaults_stay_at_the_majority_class_new_ones_do_not(tiny_backbone, imbalanced_csv, tmp_path):
    old = run(tiny_backbone, imbalanced_csv, tmp_path / "old", train__lr=5e-5, train__epochs=3)  # the defaults before
    assert old["eval"]["accuracy"] == pytest.approx(old["majority_baseline"])
    assert old["did_not_learn"]["flag"] and any("one class" in e for e in old["did_not_learn"]["evidence"])
    assert old["train_settings"]["lr_source"] == "given" and old["train_settings"]["lr_find"] is None

    new = run(tiny_backbone, imbalanced_csv, tmp_path / "new")
    settings = new["train_settings"]
    assert new["eval"]["accuracy"] > new["majority_baseline"] + 0.1 and new["did_not_learn"] is None
    assert settings["lr_source"] == "range test" and settings["lr"] > 10 * 5e-5
    assert len(settings["lr_find"]["curve"]) == settings["lr_find"]["steps"] <= 40
    assert settings["epochs_planned"] > 3 and settings["optimizer_steps"] >= 150  # train.min_steps
    assert new["task"]["validation_examples"] > 0 and new["validation"]["accuracy"] is not None


def test_a_run_that_cannot_learn_is_flagged_and_never_recommended(tiny_backbone, toy_csv, tmp_path):
    from adaptlab.reporting.comparison import compare

    recipe = {"backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": {"progress": False},
              "strategies": [{"name": "full", "train": {"lr": 1e-9, "epochs": 2}},
                             {"name": "full", "label": "full-auto"}]}
    result = compare(recipe=recipe, output=tmp_path / "cmp")
    failed = next(r for r in result.rows if r["run"] == "full")
    assert failed["did_not_learn"]["flag"] and "stayed flat" in " ".join(failed["did_not_learn"]["evidence"])
    assert "--lr auto" in failed["did_not_learn"]["next"]
    report = (tmp_path / "cmp" / "report.md").read_text()
    recommendation = report.split("## Recommendation")[1].split("##")[0]
    assert "**full-auto**" in recommendation and "did not learn: full." in recommendation
    assert "## Runs that did not learn" in report and "- **full**:" in report


def test_range_test_leaves_no_trace(tiny_backbone, toy_csv):
    from torch.utils.data import DataLoader

    from adaptlab.config import TrainConfig, load_config
    from adaptlab.data.batching import Collate
    from adaptlab.strategies import Task, get_strategy
    from adaptlab.strategies.base import param_groups
    from adaptlab.tasks.classification import cross_entropy
    from adaptlab.training.loop import make_accelerator
    from adaptlab.training.lr_find import range_test
    from adaptlab.training.runner import make_setup, prepare_module, resolve_train

    cfg = load_config({"strategy": "full", "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}})
    setup = make_setup(cfg)
    strategy = get_strategy("full")(cfg.strategy)
    module = prepare_module(strategy, Task(setup.data.labels, setup.backbone, resolve_train(cfg)))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    torch.manual_seed(3)
    rng = torch.get_rng_state()
    loader = DataLoader(setup.train_rows, batch_size=32, collate_fn=Collate(0))
    train = TrainConfig(lr_find_steps=30)
    result = range_test(module, loader, train, make_accelerator(train), param_groups(module, 1.0, 0.01), cross_entropy, 1e-3, 30)
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in module.named_parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    lrs = [lr for lr, _ in result["curve"]]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-6) and 1e-5 < result["lr"] < 1.0
    assert result["steps"] <= 30 and result["seconds"] >= 0


def test_valley_and_smoothing():
    from adaptlab.training.lr_find import lr_at, smooth, valley

    lrs = [lr_at(i, 10) for i in range(10)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    losses = [1.0, 1.0, 0.9, 0.7, 0.5, 0.3, 0.2, 0.4, 2.0, 5.0]
    assert lrs[2] <= valley(lrs, losses) <= lrs[6]
    assert valley(lrs[:2], losses[:2]) is None
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected


@pytest.mark.parametrize(("rows", "expected"), [(64, 10), (1000, 5), (10000, 1)])
def test_epochs_follow_the_data_size(rows, expected):
    """At least ``min_steps`` (150) optimiser steps, at most ``max_epochs`` (10): small data gets more epochs."""
    from adaptlab.config import TrainConfig
    from adaptlab.training.checkpoint import LoopState
    from adaptlab.training.loop import plan

    class Accelerator:
        num_processes = 1

    loader = range(-(-rows // 32))  # batches of 32
    state = LoopState()
    cfg = plan(None, None, loader, TrainConfig(lr=1e-3, epochs="auto"), Accelerator(), state, None, has_validation=True)
    assert cfg.epochs == state.epochs == expected and cfg.patience == 2 and cfg.lr == 1e-3


def test_validation_is_carved_from_training_never_from_evaluation(tmp_path):
    from adaptlab.config import DataConfig
    from adaptlab.data.task import build_task

    from .conftest import toy_rows

    rows = [{"text": f"{r['text']} #{i}", "label": r["label"]} for i, r in enumerate(toy_rows(400))]
    toy_csv = write_csv(tmp_path / "unique.csv", rows)
    data = build_task(DataConfig(train=str(toy_csv)))
    assert len(data.validation) == 32 and len(data.train) == 288 and len(data.eval) == 80
    assert not set(data.validation.texts) & (set(data.eval.texts) | set(data.train.texts))
    assert build_task(DataConfig(train=str(toy_csv), shots=8)).validation is None  # few-shot: every example trains


def test_a_head_at_its_own_rate_is_not_swept(monkeypatch):
    """prompt_tuning / prefix_tuning train their head at an absolute ``head_lr``: the range test keeps it there."""
    from torch import nn

    import adaptlab.training.lr_find
    from adaptlab.config import TrainConfig
    from adaptlab.training.loop import WithTask, _range_test, default_task

    class Strategy:
        name, train_defaults = "fake", {"lr": 1e-3}

        def param_groups(self, module, lr, weight_decay):
            return [{"params": [module.weight], "lr": lr}, {"params": [module.bias], "lr": 1e-2}]

    seen = {}
    monkeypatch.setattr(adaptlab.training.lr_find, "range_test",
                        lambda m, loader, cfg, acc, groups, loss, fallback, steps: seen.setdefault("groups", groups) and
                        {"lr": 1e-3, "steps": 0, "rule": "-", "seconds": 0})
    _range_test(WithTask(Strategy(), default_task()), nn.Linear(2, 2), [], TrainConfig(), None, 1000, {})
    assert [g["fixed"] for g in seen["groups"]] == [False, True]


def test_the_train_summary_line_says_when_a_run_did_not_learn(cli, tiny_backbone, toy_csv):
    code, out, _ = cli("train", "-s", "full", "-b", tiny_backbone, "-d", toy_csv, "--lr", "1e-9", "--epochs", "1", "-o", "r", "-q")
    assert code == 0 and "DID NOT LEARN (majority-class baseline 0.5000" in out
    code, out, _ = cli("train", "-s", "full", "-b", tiny_backbone, "-d", toy_csv, "-o", "ok", "-q")
    assert code == 0 and "accuracy" in out and "DID NOT LEARN" not in out


@pytest.mark.parametrize("planned, share, expected", [(10, 0.25, 0), (79, 0.25, 0), (80, 0.25, 20), (120, 0.25, 30),
                                                      (1000, 0.25, 40), (40, 1.0, 40)])
def test_the_range_test_costs_at_most_its_share_of_the_run(planned, share, expected):
    from adaptlab.settings import TrainConfig
    from adaptlab.training.lr_find import budget

    assert budget(TrainConfig(lr_find_share=share), planned) == expected


def test_a_run_too_short_for_a_range_test_trains_at_the_default_rate_and_says_so(tiny_backbone, toy_csv, tmp_path):
    """Issue 27: 40 probe steps before a 10-step run cost four times the training."""
    m = run(tiny_backbone, toy_csv, tmp_path / "short", train__epochs=1, train__batch_size=32)
    settings = m["train_settings"]
    assert settings["optimizer_steps"] < 80 and settings["lr_source"] == "default (run too short to test)"
    assert settings["lr"] == 5e-5 and settings["lr_find"]["steps"] == 0 and "range_test" not in m["timing"]
    long = run(tiny_backbone, toy_csv, tmp_path / "long", train__epochs=1, train__batch_size=2, train__lr_find_share=1.0)
    assert long["train_settings"]["lr_source"] == "range test" and long["timing"]["range_test"] > 0


def test_metrics_say_where_the_time_went(tiny_backbone, toy_csv, tmp_path):
    m = run(tiny_backbone, toy_csv, tmp_path / "r", train__epochs=2, train__lr=1e-4)
    t = m["timing"]
    for name in ("load", "prepare", "fit", "steps", "epoch_eval", "forgetting_probe", "final_eval", "save", "total"):
        assert t[name] > 0, name
    assert t["steps"] + t["epoch_eval"] <= t["fit"] <= t["total"] and t["steps"] == pytest.approx(m["train_seconds"], rel=0.2)
