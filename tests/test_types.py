"""The type check of the seams: mypy over the files ``[tool.mypy] files`` lists in pyproject.toml (the objective
and method protocols and what composes them), so an objective or method that breaks its protocol fails here.

mypy runs in its own process: in this one, its millions of cached objects would stay alive for the rest of the
session and make every later garbage collection -- and so every later test -- several times slower."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_the_seams():
    pytest.importorskip("mypy.api", reason="mypy is in the dev extra (the lock installs it)")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
