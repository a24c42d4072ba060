"""The measured tables on the README and docs pages are their results files' (``python tools/readme_tables.py``
copies them), and every command and option of the CLI is documented (``docs/cli.md``, generated)."""

from __future__ import annotations

import pytest

from tools.readme_tables import ROOT, TABLES, block, current, page_of


@pytest.mark.parametrize("name", sorted(TABLES))
def test_a_shown_table_is_its_results_file(name):
    assert (ROOT / "bench" / "results" / TABLES[name]).is_file(), f"no results file for {name}"
    page = page_of(name)
    text = page.read_text(encoding="utf-8")
    assert current(text, name) == block(name), (f"{page.name}'s {name} table differs from bench/results/{TABLES[name]}: "
                                                "run python tools/readme_tables.py")


def test_the_cli_reference_is_current_and_every_option_is_in_it():
    from tools.cli_reference import PAGE, options, render

    assert PAGE.read_text(encoding="utf-8") == render(), "docs/cli.md is stale: run python tools/cli_reference.py"
    text = PAGE.read_text(encoding="utf-8")
    for command, flags in options().items():
        assert f"## adaptlab {command}" in text, command
        for flag in flags:
            assert f"`{flag}`" in text, (command, flag)


def test_every_docs_link_of_the_readme_exists():
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in set(re.findall(r"\]\((docs/[^)#]+)", text)):
        assert (ROOT / target).is_file(), target
