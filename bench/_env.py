"""What every results file records about where it was measured: commit, date, device, threads, versions."""

from __future__ import annotations

import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def environment(packages: tuple[str, ...] = ("torch", "transformers", "peft", "adaptlab")) -> dict:
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT).stdout.strip())
    found = {}
    for p in packages:
        try:
            found[p] = version(p)
        except PackageNotFoundError:
            found[p] = None
    return {"commit": commit + ("+changes" if dirty else ""), "date": time.strftime("%Y-%m-%d"),
            "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
            "python": platform.python_version(), **found}
