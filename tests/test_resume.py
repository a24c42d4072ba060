"""A killed run resumes from its last checkpoint and ends exactly where an uninterrupted one does."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from adaptlab.training.loop import StepLog
from adaptlab.training.runner import train


def recipe(backbone, data, strategy="full", keep_best=False):
    return {
        "strategy": strategy,
        "backbone": str(backbone),
        "data": {"train": str(data)},  # 288 training rows: 9 batches per epoch, epoch ends at steps 9, 18, 27
        "train": {"epochs": 3, "checkpoint_every": 5, "progress": False, "seed": 0, "batch_size": 32,
                  "precision": "fp32", "lr": 5e-5, "keep_best": keep_best},  # False: the last weights, every step shows
    }


def kill_at(monkeypatch, step: int) -> None:
    original = StepLog.step

    def dying(self, state, epoch, lr):
        original(self, state, epoch, lr)
        if state.step == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(StepLog, "step", dying)


def kill_in(monkeypatch, module, name: str) -> None:
    """Raise KeyboardInterrupt when ``module.name`` is called (the final save, the final rename)."""
    def dying(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, dying)


def steps(run_dir) -> list[tuple]:
    import json

    lines = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    return [(r["step"], r["epoch"], r["loss"], r["lr"]) for r in lines]


KILLS = [
    ("full", "step", 12, False),  # mid-epoch: resumes from the step-10 checkpoint, batch 1 of epoch 2
    ("full", "step", 10, False),  # just after the epoch-end checkpoint at step 9
    ("gradual_unfreeze", "step", 21, False),  # mid-epoch, after more layers opened
    ("full", "save", None, False),  # while the model is being written
    ("full", "rename", None, False),  # the run folder complete but still called .partial
    ("full", "step", 21, True),  # keep_best: the best epoch's weights so far travel in the checkpoint
]


@pytest.mark.parametrize(("strategy", "where", "step", "keep_best"), KILLS)
def test_resume_is_bit_identical_to_the_uninterrupted_run(tmp_path, tiny_backbone, toy_csv, monkeypatch, strategy, where, step,
                                                          keep_best):
    import adaptlab.training.runner

    def recipe_(*args):  # noqa: ANN202
        return recipe(*args, keep_best=keep_best)

    reference = train(recipe_(tiny_backbone, toy_csv, strategy), output=str(tmp_path / "ref"))
    if where == "step":
        kill_at(monkeypatch, step)
    else:
        kill_in(monkeypatch, adaptlab.training.runner, {"save": "_save_artifact", "rename": "_complete"}[where])
    with pytest.raises(KeyboardInterrupt):
        train(recipe_(tiny_backbone, toy_csv, strategy), output=str(tmp_path / "run"))
    partial = tmp_path / "run.partial"
    assert partial.is_dir() and not (tmp_path / "run").exists()
    monkeypatch.undo()
    with pytest.raises(Exception, match="--resume"):
        train(recipe_(tiny_backbone, toy_csv, strategy), output=str(tmp_path / "run"))
    resumed = train(recipe_(tiny_backbone, toy_csv, strategy), output=str(tmp_path / "run"), resume=True)
    assert not partial.exists() and not (resumed.run_dir / "checkpoint").exists()
    for key in ("eval", "validation", "history", "train_examples", "best_epoch"):
        assert resumed.metrics.get(key) == reference.metrics.get(key), key
    assert steps(resumed.run_dir) == steps(reference.run_dir)  # no step logged twice, none missing
    ref_weights = load_file(reference.run_dir / "model" / "model.safetensors")
    new_weights = load_file(resumed.run_dir / "model" / "model.safetensors")
    assert ref_weights.keys() == new_weights.keys()
    for name in ref_weights:
        assert torch.equal(new_weights[name], ref_weights[name]), name


def test_failure_before_a_checkpoint_leaves_nothing(tmp_path, tiny_backbone, toy_csv, monkeypatch):
    kill_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(recipe(tiny_backbone, toy_csv), output=str(tmp_path / "run"))
    assert not (tmp_path / "run.partial").exists() and not (tmp_path / "run").exists()


def test_one_run_per_folder(tmp_path, tiny_backbone, toy_csv):
    """A second process aiming at a folder another one is writing stops at once; no lock file is left."""
    from filelock import FileLock

    from adaptlab.errors import AdaptlabError
    from adaptlab.reporting.comparison import compare

    held = FileLock(str(tmp_path / "run.lock"))
    with held:  # as another process would hold it
        with pytest.raises(AdaptlabError, match="another adaptlab process is writing"):
            train(recipe(tiny_backbone, toy_csv), output=str(tmp_path / "run"))
        assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    with FileLock(str(tmp_path / "cmp.lock")):
        with pytest.raises(AdaptlabError, match="another adaptlab process is writing"):
            compare(["linear_probe"], backbone=str(tiny_backbone), data=str(toy_csv), output=tmp_path / "cmp")
    done = train(recipe(tiny_backbone, toy_csv), output=str(tmp_path / "run"))
    assert done.run_dir.is_dir() and not (tmp_path / "run.lock").exists()


def test_metrics_json_never_holds_nan():
    import json

    from adaptlab.training.runner import finite

    text = json.dumps(finite({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}, "e": "x"}), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": "x"}
