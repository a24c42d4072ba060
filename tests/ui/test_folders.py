"""What ``adaptlab ui`` reads from a runs folder: states from the folders' names and ages, progress and the time
left from ``steps.jsonl``; and the command's bad input (no browser needed)."""

from __future__ import annotations

import json
import os
import time

from adaptlab.ui.folders import STALE_S, scan


def write_run(folder, steps, metrics=None):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("strategy: {name: lora}\nbackbone: tiny\n")
    (folder / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_states_progress_and_time_left(tmp_path):
    now = time.time()
    steps = [{"step": 10, "epoch": 1, "loss": 0.7, "time": now - 20, "steps_planned": 50},
             {"step": 20, "epoch": 2, "loss": 0.5, "time": now - 10, "steps_planned": 50}]
    write_run(tmp_path / "cmp.partial" / "lora.partial", steps)
    write_run(tmp_path / "done" / "lora", steps, {"eval": {"accuracy": 0.9, "confusion": [[1]]}, "train_seconds": 3})
    (tmp_path / "done" / "report.html").write_text("<html></html>")
    write_run(tmp_path / "old.partial", steps[:1])
    for path in (tmp_path / "old.partial").rglob("*"):
        os.utime(path, (now - STALE_S - 5, now - STALE_S - 5))
    entries = {e["name"]: e for e in scan(tmp_path)}
    running = entries["cmp"]["runs"][0]
    assert entries["cmp"]["state"] == running["state"] == "running" and not entries["cmp"]["report"]
    assert running["progress"] == {"step": 20, "epoch": 2, "loss": 0.5, "examples_per_second": None, "tokens_per_second": None,
                                   "total_steps": 50, "seconds_left": 30}
    assert entries["done"]["state"] == "finished" and entries["done"]["report"]
    assert entries["done"]["runs"][0]["eval"] == {"accuracy": 0.9}
    assert entries["old"]["state"] == "interrupted" and entries["old"]["kind"] == "run"


def test_ui_refuses_a_file_for_a_folder_in_one_line(cli, tmp_path):
    (tmp_path / "runs.txt").write_text("x")
    code, _, err = cli("ui", tmp_path / "runs.txt")
    assert code == 2 and err.strip().endswith("is a file; give the folder that holds your runs (default: runs)")
