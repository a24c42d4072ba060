"""Copy the tables of ``bench/results/*.md`` into the docs, between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``.

    python tools/readme_tables.py

A number on a page (the README or ``docs/*.md``) is then the number of its results file, which a command on that
page regenerates; ``tests/test_readme_tables.py`` fails when they differ.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"memory-vs-trl": "memory_vs_trl_batch8.md", "memory-plan": "memory_plan.md", "grpo-seeds": "grpo_seeds.md",
          "grpo-vs-trl": "grpo_vs_trl.md", "preference-objectives": "preference_objectives.md",
          "kto-unpaired": "kto_unpaired.md", "crosslingual-curve": "crosslingual_curve.md", "episodic-bbc": "episodic_bbc.md",
          "serve-load": "serve_load.md", "fewshot-seeds": "fewshot_seeds.md", "task-aware": "task_aware.md",
          "task-aware-256": "task_aware_256.md", "recommend-estimates": "recommend_estimates.md"}
"""Marker -> the results file whose table goes there."""


def pages() -> list[Path]:
    """Where tables may be shown: the README and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def page_of(name: str) -> Path:
    """The one page holding the marker ``name``."""
    found = [p for p in pages() if f"<!-- {name}:start -->" in p.read_text(encoding="utf-8")]
    if len(found) != 1:
        raise SystemExit(f"marker {name} is on {len(found)} pages ({', '.join(p.name for p in found)}); it needs exactly one")
    return found[0]


def table(results: Path) -> str:
    """The markdown table of a results file, and the summary lines after it."""
    lines = results.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    return "\n".join(lines[start:]).strip()


def block(name: str) -> str:
    return f"<!-- {name}:start -->\n{table(ROOT / 'bench' / 'results' / TABLES[name])}\n<!-- {name}:end -->"


def current(text: str, name: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return text[text.index(start): text.index(end) + len(end)]


def main() -> None:
    for name in TABLES:
        if not (ROOT / "bench" / "results" / TABLES[name]).is_file():
            print(f"{name}: bench/results/{TABLES[name]} is missing (tools/evidence.py {name}); its table is left as it is")
            continue
        page = page_of(name)
        text = page.read_text(encoding="utf-8")
        page.write_text(text.replace(current(text, name), block(name)), encoding="utf-8")


if __name__ == "__main__":
    main()
