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


def _tables() -> list[tuple[str, str, str | None]]:
    """(page, header row, the marker it sits in or None) of every markdown table on the README and docs pages."""
    import re

    out = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if page.name == "cli.md":  # generated from the CLI
            continue
        inside, previous = None, False
        for line in page.read_text(encoding="utf-8").splitlines():
            marker = re.match(r"<!-- ([\w-]+):(start|end) -->", line)
            if marker:
                inside = marker.group(1) if marker.group(2) == "start" else None
            table = line.startswith("|")
            if table and not previous:
                out.append((str(page.relative_to(ROOT)), line, inside))
            previous = table
    return out


def test_every_shown_table_has_a_results_file_or_is_listed_as_lacking_one():
    """``make evidence`` regenerates what is between markers; a new measured table must come with its results file
    (or be added to tools/evidence.py's UNBACKED inventory, which says what is still missing)."""
    from tools.evidence import DESCRIPTIVE, EVIDENCE, UNBACKED

    listed = list(UNBACKED) + list(DESCRIPTIVE)
    backed = {e.results for e in EVIDENCE.values()}
    for page, header, marker in _tables():
        if marker is not None:
            assert marker == "support-table" or TABLES[marker] in backed, f"{page}: {marker} has no command in tools/evidence.py"
            continue
        assert any(page == p and header.startswith(h) for p, h in listed), f"{page}: table {header[:60]!r} has no results file"
    for (page, header), _ in UNBACKED.items():
        assert any(page == p and h.startswith(header) for p, h, _m in _tables()), f"UNBACKED names a table that is gone: {header}"


def test_every_evidence_command_names_a_script_that_exists():
    from tools.evidence import EVIDENCE

    for name, e in EVIDENCE.items():
        for command in e.commands:
            script = next((w for w in command.split() if w.startswith("bench/") and w.endswith(".py")), None)
            assert script is None or (ROOT / script).is_file(), (name, script)


def test_the_architecture_page_is_generated_from_the_code():
    from tools.architecture import END, PAGE, START, render

    text = PAGE.read_text(encoding="utf-8")
    assert text[text.index(START): text.index(END) + len(END)] == render(), "run python tools/architecture.py"
