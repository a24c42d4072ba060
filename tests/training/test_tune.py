"""adaptlab tune: an Optuna study over a strategy's space, judged on validation, measured on the unseen split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from adaptlab.config import load_config  # noqa: E402
from adaptlab.training.tune import tune  # noqa: E402

FAST = ["train.lr=3e-3:3e-2", "train.epochs=1:3"]


def _study(folder: Path):
    return optuna.load_study(study_name="adaptlab", storage=f"sqlite:///{(folder / 'study.db').resolve()}")


def _recipe(tiny_backbone, toy_csv) -> dict:
    return {"strategy": {"name": "lora"}, "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)},
            "train": {"progress": False, "checkpoint_every": None}}


def test_a_killed_study_resumes_to_its_trials(tiny_backbone, toy_csv, tmp_path):
    folder = tmp_path / "study"

    def killed(study, trial):  # the process dies after its first trial ...
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(_recipe(tiny_backbone, toy_csv), trials=3, output=folder, space=FAST, callbacks=[killed])
    study = _study(folder)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert study.trials[0].intermediate_values  # per-epoch validation scores fed the pruner
    study.ask()  # ... or in the middle of its second: a trial left running, its run folder partial
    (folder / "trial-001.partial").mkdir()
    summary = tune(_recipe(tiny_backbone, toy_csv), trials=3, output=folder, space=FAST, resume=True)
    states = [t.state.name for t in _study(folder).trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3 and states[1] == "FAIL"
    assert not (folder / "trial-001.partial").exists()
    assert summary["trials"] == 4 and summary["best"]["validation"] == max(t.value for t in _study(folder).trials if t.value is not None)
    assert (folder / "trials.png").is_file() and json.loads((folder / "tune.json").read_text())["gain_on_eval"] is not None
    best = load_config(folder / "best.yaml")  # a recipe adaptlab train runs
    assert best.train.lr == pytest.approx(summary["best"]["params"]["train.lr"]) and best.strategy.r == summary["best"]["params"]["strategy.r"]
    assert summary["defaults"]["eval"] is not None and (folder / "defaults" / "metrics.json").is_file()


def test_trials_are_judged_on_validation_and_the_gain_on_the_unseen_split(tiny_backbone, toy_csv, tmp_path):
    summary = tune(_recipe(tiny_backbone, toy_csv), trials=2, output=tmp_path / "s", space=FAST, pruner="none")
    best = json.loads((Path(summary["best"]["run"]) / "metrics.json").read_text())
    assert summary["best"]["validation"] == best["validation"]["accuracy"] and summary["best"]["eval"] == best["eval"]["accuracy"]
    assert best["eval_examples"] == 80 and best["task"]["validation_examples"] == 32  # distinct splits
    assert summary["gain_on_eval"] == pytest.approx(best["eval"]["accuracy"] - summary["defaults"]["eval"])


def test_settings_the_user_fixed_are_not_searched(tiny_backbone, toy_csv, tmp_path):
    summary = tune(_recipe(tiny_backbone, toy_csv), overrides={"train.epochs": 1}, trials=1, output=tmp_path / "s", space=FAST[:1])
    assert "train.epochs" not in summary["space"] and "strategy.r" in summary["space"]


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "--trials must be at least 1, got 0"),
    (["--space", "train.lr=0.1:0.01"], "search space 'train.lr' is empty: low 0.1 is not below high 0.01"),
    (["--space", "train.lrr=0.1:1"], "unknown config key 'train.lrr'"),
    (["--space", "strategy.r=0,4"], "invalid config 'strategy.r'"),
    (["--pruner", "medain"], "unknown pruner 'medain' (did you mean 'median'?)"),
    (["--set", "data.validation_fraction=0"], "adaptlab tune chooses on a validation split carved from the training data"),
])
def test_bad_searches_are_one_line(cli, tiny_backbone, toy_csv, args, message):
    code, out, err = cli("tune", "--strategy", "lora", "--backbone", str(tiny_backbone), "--data", str(toy_csv),
                         "--output", "s", "--quiet", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not Path("s").exists()


def test_a_study_of_another_strategy_is_refused(cli, tiny_backbone, toy_csv):
    args = ["--backbone", str(tiny_backbone), "--data", str(toy_csv), "--output", "s", "--quiet", "--trials", "1", *sum((["--space", s] for s in FAST), [])]
    assert cli("tune", "--strategy", "lora", *args)[0] == 0
    code, out, err = cli("tune", "--strategy", "full", "--resume", *args)
    assert code == 2 and "s is a study of strategy lora, not full" in err
    code, out, err = cli("tune", "--strategy", "lora", *args)
    assert code == 2 and "already holds a study; pass --resume" in err


def test_compare_tunes_each_strategy_first(tiny_backbone, toy_csv, tmp_path):
    from adaptlab.reporting.comparison import compare

    recipe = {**_recipe(tiny_backbone, toy_csv), "strategies": ["lora", "linear_probe"],
              "search": {"train.lr": {"low": 3e-3, "high": 3e-2}, "train.epochs": {"low": 1, "high": 2}}}
    recipe.pop("strategy")
    result = compare(recipe=recipe, output=tmp_path / "c", tune=2)
    for run in result.runs:
        summary = json.loads((tmp_path / "c" / "tune" / run.run_dir.name / "tune.json").read_text())
        assert run.config.train.lr == pytest.approx(summary["best"]["params"]["train.lr"])
    assert {r["run"] for r in result.rows} == {"lora", "linear_probe"}


def test_the_halving_pruner_runs_a_study(tiny_backbone, toy_csv, tmp_path):
    """``--pruner halving`` (Optuna's successive halving) end to end: it is the pruner the study used, every trial
    reported its epochs to it, and the study finishes with a best trial."""
    summary = tune(_recipe(tiny_backbone, toy_csv), trials=3, output=tmp_path / "s", space=FAST, pruner="halving")
    study = _study(tmp_path / "s")
    assert len(study.trials) == 3 and all(t.intermediate_values for t in study.trials)
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"} and summary["best"]["validation"] is not None
    assert summary["pruner"] == "halving" and json.loads((tmp_path / "s" / "tune.json").read_text())["pruner"] == "halving"
    assert study.user_attrs["pruner"] == "halving"  # stored with the study: a resumed one says what pruned it
