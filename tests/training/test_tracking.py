"""--report-to: TensorBoard, MLflow and W&B receive settings, per-step loss and lr, per-epoch scores, final metrics (offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorboard")
mlflow = pytest.importorskip("mlflow")


def _scalars(folder: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[float]] = {}
    for events in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out


def test_a_comparison_reports_each_strategy_to_tensorboard_and_mlflow(tiny_backbone, toy_csv, tmp_path, monkeypatch):
    from adaptlab.reporting.comparison import compare

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "cmp"
    compare(["lora", "full"], data=str(toy_csv), backbone=str(tiny_backbone), output=out,
            overrides={"train.epochs": 2, "train.lr": 1e-3, "train.progress": False, "train.log_every": 2,
                       "train.report_to": ["tensorboard", "mlflow"]})
    for name in ("lora", "full"):
        scalars = _scalars(out / name / "tensorboard")
        assert len(scalars["train/loss"]) >= 4 and scalars["train/lr"][0] > 0  # every steps.jsonl line
        assert len(scalars["validation/accuracy"]) == 2  # one per epoch
        assert "final/eval/accuracy" in scalars
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cmp"], output_format="list")
    assert sorted(r.info.run_name for r in runs) == ["full", "lora"]  # one run each, under the comparison's experiment
    client = mlflow.MlflowClient()
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["strategy.name"] == run.info.run_name and float(run.data.params["train.lr"]) == 1e-3
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 4
        assert "final/eval/accuracy" in run.data.metrics
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"metrics.json", "config.yaml", "steps.jsonl"}


def test_unknown_or_missing_trackers_are_one_line(cli, tiny_backbone, toy_csv, monkeypatch):
    import importlib.util

    args = ["train", "--backbone", str(tiny_backbone), "--data", str(toy_csv), "--output", "r"]
    code, out, err = cli(*args, "--report-to", "tensorbord")
    assert code == 2 and "train.report_to" in err and "'tensorboard', 'mlflow' or 'wandb'" in err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    code, out, err = cli(*args, "--report-to", "mlflow")
    assert code == 2 and "train.report_to mlflow needs the mlflow package: pip install 'adaptlab[track]'" in err
    assert not list(Path(".").glob("r*"))


def test_a_run_reports_to_weights_and_biases_offline(tiny_backbone, toy_csv, tmp_path, monkeypatch):
    """W&B in offline mode (no account, no network): the run's settings, every logged loss, each epoch's scores and
    the final metrics reach its local run log (what ``wandb sync`` would upload)."""
    pytest.importorskip("wandb")

    from adaptlab.api import train

    for key, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                       "WANDB_DISABLE_GIT": "true"}.items():
        monkeypatch.setenv(key, value)
    train(strategy="lora", backbone=str(tiny_backbone), data=str(toy_csv), output=str(tmp_path / "run"),
          overrides={"train.epochs": 2, "train.lr": 1e-3, "train.progress": False, "train.log_every": 2,
                     "train.report_to": ["wandb"]})
    logs = list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(logs) == 1, logs
    log = logs[0].read_bytes()  # W&B's protobuf records: keys and JSON values are stored as plain strings
    steps = [line for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) >= 2 and log.count(b"train/loss") >= len(steps)  # every logged step
    assert log.count(b"validation/accuracy") >= 2 and b"final/eval/accuracy" in log  # each epoch, and the end
    assert b"strategy.name" in log and b'"lora"' in log and b"train.lr" in log  # the settings
