"""Experiment trackers (``train.report_to``): TensorBoard, MLflow, Weights & Biases.

Accelerate's tracker classes do the writing (``accelerate.tracking``); this module says what a run
sends them: its resolved settings as hyperparameters, the loss and learning rate of every
``steps.jsonl`` line, each epoch's validation scores, the final metrics and -- for MLflow -- the
run folder's files as artefacts. The trackers are built by the runner around one run (not by the
Accelerator, which exists only while the loop trains), so the final metrics and the finished
folder reach them too. A comparison sends each strategy as its own run, under one experiment
named after the comparison folder.

Where they write: TensorBoard into ``<run folder>/tensorboard`` (``tensorboard --logdir`` on a
comparison folder shows every run); MLflow to ``$MLFLOW_TRACKING_URI`` or, without it, a file store
``mlruns/`` beside the run folders; W&B wherever its own settings say.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import AdaptlabError

log = logging.getLogger("adaptlab")

PACKAGES = {"tensorboard": ("tensorboard", "track"), "mlflow": ("mlflow", "track"), "wandb": ("wandb", "track")}
"""Tracker -> (module it needs, the adaptlab extra that installs it)."""
SMALL_FILES = ("config.yaml", "metrics.json", "steps.jsonl", "README.md", "labels.json", "generations.jsonl")


def check_trackers(names: list[str]) -> None:
    """One line naming the package to install, before any folder exists."""
    import importlib.util

    for name in names:
        module, extra = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            how = f"pip install 'adaptlab[{extra}]'" if extra else f"pip install {module}"
            raise AdaptlabError(f"train.report_to {name} needs the {module} package: {how}")


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif value is not None:
            out[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


def _numbers(values: dict[str, Any], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class Trackers:
    """The run's trackers (none when ``names`` is empty: every call is then a no-op)."""

    def __init__(self) -> None:
        self.trackers: list[Any] = []
        self.mlflow = False

    def start(self, names: list[str], folder: Path, run_name: str, experiment: str, settings: dict[str, Any]) -> None:
        """Open each tracker of ``names`` for the run being written into ``folder`` and send it the settings."""
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        self.mlflow = "mlflow" in names
        for name in names:
            if name == "tensorboard":
                tracker = TensorBoardTracker(run_name, folder / "tensorboard")
            elif name == "mlflow":
                store = mlflow_store(folder)
                tracker = MLflowTracker(experiment, logging_dir=(store / "artifacts").as_uri(), run_name=run_name)
            else:
                tracker = WandBTracker(experiment, name=run_name)
            if hasattr(tracker, "start"):
                tracker.start()
            tracker.store_init_configuration(_flat(settings))
            self.trackers.append(tracker)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def log(self, values: dict[str, Any], step: int, prefix: str = "") -> None:
        numbers = _numbers(values, prefix)
        for tracker in self.trackers:
            tracker.log(numbers, step=step)

    def final(self, metrics: dict[str, Any], step: int) -> None:
        """The final metrics (``final/...``); trackers writing into the run folder (TensorBoard) close here, before
        the folder is renamed."""
        final = {**_numbers(metrics.get("eval") or {}, "final/eval/"),
                 **_numbers({k: metrics.get(k) for k in ("train_seconds", "peak_memory_mb", "trainable_params")}, "final/")}
        self.log(final, step)
        for tracker in [t for t in self.trackers if t.name == "tensorboard"]:
            tracker.finish()
            self.trackers.remove(tracker)

    def finish(self, folder: Path | None = None) -> None:
        """The finished run folder's small files as MLflow artefacts, then close."""
        if self.mlflow and folder is not None and self.trackers:
            import mlflow

            for name in SMALL_FILES:
                if (folder / name).is_file():
                    mlflow.log_artifact(str(folder / name))
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


def mlflow_store(folder: Path) -> Path:
    """Point MLflow at ``$MLFLOW_TRACKING_URI`` or, without it, a SQLite store in ``mlruns/`` beside the run (or its
    comparison) folder -- MLflow 3 refuses its old file store -- and return that folder (artefacts go under it)."""
    import mlflow

    beside = folder.parent.parent if folder.parent.name.endswith(".partial") else folder.parent
    store = (beside / "mlruns").resolve()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        store.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    return store


def experiment_of(out: Path) -> str:
    """The experiment a run belongs to: its comparison's folder name (runs are written inside ``<comparison>.partial``),
    or ``adaptlab`` for a run of its own."""
    parent = out.parent.name
    return parent.removesuffix(".partial") if parent.endswith(".partial") else "adaptlab"
