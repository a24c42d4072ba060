"""What ``adaptlab ui`` shows: the comparisons and runs under a folder, read from the files they write.

Nothing is registered anywhere: a run is a folder with ``config.yaml``; it is finished when it has
``metrics.json`` and still being written while it is named ``<name>.partial`` (the runner renames it when done).
A comparison is a folder of runs; finished, it has ``report.md``. Progress comes from ``steps.jsonl`` as it grows
(step, epoch, loss, throughput, the steps planned); a partial folder nothing has written to for
``STALE_S`` seconds is called interrupted (``--resume`` continues it), unless the UI started it and its process
still runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

STALE_S = 600
PARTIAL = ".partial"


def is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() or (folder / "metrics.json").is_file()


def steps(folder: Path, after: int = 0) -> list[dict[str, Any]]:
    """The lines of ``steps.jsonl`` after the first ``after`` (a line being written is left for the next read)."""
    path = folder / "steps.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines()[after:]:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def _last_write(folder: Path) -> float:
    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
    return max(times, default=folder.stat().st_mtime)


def state(folder: Path, live: set[Path]) -> str:
    if not folder.name.endswith(PARTIAL):
        return "finished"
    if folder in live or time.time() - _last_write(folder) < STALE_S:
        return "running"
    return "interrupted"


def progress(folder: Path) -> dict[str, Any]:
    """The latest step, epoch, loss and throughput, and the time left from the steps planned (at the pace so far)."""
    lines = steps(folder)
    if not lines:
        return {}
    last = lines[-1]
    out = {k: last.get(k) for k in ("step", "epoch", "loss", "examples_per_second", "tokens_per_second")}
    total = last.get("steps_planned")
    if total and len(lines) > 1:
        rate = (last["time"] - lines[0]["time"]) / max(last["step"] - lines[0]["step"], 1)
        out |= {"total_steps": total, "seconds_left": round(max(total - last["step"], 0) * rate)}
    return out


def _yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def run_entry(folder: Path, root: Path, live: set[Path]) -> dict[str, Any]:
    config = _yaml(folder / "config.yaml")
    strategy = config.get("strategy")
    entry: dict[str, Any] = {
        "name": folder.name.removesuffix(PARTIAL), "path": folder.relative_to(root).as_posix(), "kind": "run",
        "state": state(folder, live), "strategy": strategy.get("name") if isinstance(strategy, dict) else strategy,
        "backbone": config.get("backbone"), "progress": progress(folder)}
    if (folder / "metrics.json").is_file():
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        entry |= {"state": "finished", "eval": {k: v for k, v in (metrics.get("eval") or {}).items() if isinstance(v, int | float)},
                  "train_seconds": metrics.get("train_seconds"), "samples": metrics.get("samples") or []}
    return entry


def scan(root: Path, live: set[Path] | None = None) -> list[dict[str, Any]]:
    """Every comparison and lone run directly under ``root``, newest first."""
    live = live or set()
    entries = []
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    for folder in folders:
        if is_run(folder):
            entries.append(run_entry(folder, root, live))
            continue
        runs = [run_entry(f, root, live) for f in sorted(folder.iterdir()) if f.is_dir() and is_run(f)]
        if not runs and not folder.name.endswith(PARTIAL):
            continue
        entries.append({"name": folder.name.removesuffix(PARTIAL), "path": folder.relative_to(root).as_posix(), "kind": "comparison",
                        "state": state(folder, live), "runs": runs,
                        "report": (folder / "report.html").is_file() and not folder.name.endswith(PARTIAL)})
    return entries
