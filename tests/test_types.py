"""The type check of the seams: mypy over the files ``[tool.mypy] files`` lists in pyproject.toml (the objective
and method protocols and what composes them), so an objective or method that breaks its protocol fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_the_seams(monkeypatch):
    api = pytest.importorskip("mypy.api", reason="mypy is in the dev extra (the lock installs it)")
    monkeypatch.chdir(ROOT)
    out, err, status = api.run([])
    assert status == 0, out + err
