"""Copy the tables of ``bench/results/*.md`` into the README, between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``.

    python tools/readme_tables.py

A README number is then the number of its results file, which a command in the README regenerates;
``tests/test_readme_tables.py`` fails when they differ.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"memory-vs-trl": "memory_vs_trl_batch8.md", "memory-plan": "memory_plan.md", "grpo-seeds": "grpo_seeds.md",
          "grpo-vs-trl": "grpo_vs_trl.md"}
"""README marker -> the results file whose table goes there."""


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
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    for name in TABLES:
        text = text.replace(current(text, name), block(name))
    readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
