"""The README's measured tables are their results files' (``python tools/readme_tables.py`` copies them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.readme_tables import ROOT, TABLES, block, current


@pytest.mark.parametrize("name", sorted(TABLES))
def test_readme_table_is_its_results_file(name):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (ROOT / "bench" / "results" / TABLES[name]).is_file(), f"no results file for {name}"
    assert current(text, name) == block(name), f"README's {name} table differs from bench/results/{TABLES[name]}: run python tools/readme_tables.py"


def test_every_marker_has_a_table():
    text = Path(ROOT / "README.md").read_text(encoding="utf-8")
    assert {name for name in TABLES if f"<!-- {name}:start -->" in text} == set(TABLES)
