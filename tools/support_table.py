"""Write the family x strategy support table (docs/models.md) from the family matrix (``tests/strategies/test_families.py``).

    python tools/support_table.py          # runs every cell (tiny models, ~5 minutes on 2 cores), rewrites docs/models.md

Each cell is what the matrix found: the strategy trains that family's model through the shared loop with
every invariant of the matrix holding (✓), or refuses it in one line before anything loads (✗ with the
reason). ``test_support_table_says_what_the_matrix_found`` fails when docs/models.md and the matrix disagree.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

START, END = "<!-- support-table:start -->", "<!-- support-table:end -->"
ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "models.md"
"""Where the table is shown."""


def short_reason(message: str, family: str = "") -> str:
    """The why of a refusal: its first clause, without the strategy's name in front or the advice after ';'."""
    why = message.split(";")[0].strip()
    why = re.sub(r"^[a-z_]+: ", "", why)
    return why.replace(family, "{family}") if family else why


def render(outcomes: dict[tuple[str, str, str], str]) -> str:
    """Markdown tables, one per task type: families down, strategies across; refusals numbered below."""
    notes: dict[str, int] = {}
    parts = [START, ""]
    for task in ("sft", "classification"):
        cells = {(f, s): o for (f, t, s), o in outcomes.items() if t == task}
        families = list(dict.fromkeys(f for f, _ in cells))
        strategies = sorted({s for _, s in cells})
        parts += [f"**{task}**", "", "| family | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 1) + "|"]
        for family in families:
            row = []
            for strategy in strategies:
                outcome = cells.get((family, strategy))
                if outcome is None:
                    row.append("")
                elif outcome == "ok":
                    row.append("✓")
                else:
                    reason = short_reason(outcome, family)
                    row.append(f"✗{notes.setdefault(reason, len(notes) + 1)}")
            parts.append(f"| {family} | " + " | ".join(row) + " |")
        parts.append("")
    parts += ["Refused, in one line before anything loads:", ""]
    parts += [f"{n}. {reason}" for reason, n in notes.items()]
    return "\n".join([*parts, "", END])


def section(readme: Path) -> str:
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return ""
    return text[text.index(START): text.index(END) + len(END)]


def write(readme: Path, table: str) -> None:
    text = readme.read_text(encoding="utf-8")
    old = section(readme)
    if not old:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    readme.write_text(text.replace(old, table), encoding="utf-8")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import logging

    from tests.strategies.test_families import CELLS, build_root, run_cell, train_teacher

    logging.disable(logging.WARNING)
    outcomes = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = build_root(Path(tmp))
        teacher = train_teacher(root)
        for family, task, name in CELLS:
            cell = run_cell(family, task, name, root, teacher if name == "distill" else None)
            outcomes[(family, task, name)] = cell.get("refused", "ok")
            print(family, task, name, outcomes[(family, task, name)][:100], flush=True)
    write(PAGE, render(outcomes))


if __name__ == "__main__":
    main()
