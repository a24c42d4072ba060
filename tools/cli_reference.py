"""Write ``docs/cli.md``: every command of the ``adaptlab`` CLI with every option, its default and its help.

    python tools/cli_reference.py

Generated from the CLI itself (typer's click commands), so the reference cannot drift from ``--help``;
``tests/test_readme_tables.py`` fails when the page is stale or misses an option.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"


def _commands() -> dict:
    import typer.main

    from adaptlab.cli import app

    return dict(typer.main.get_command(app).commands)


def options() -> dict[str, list[str]]:
    """Command -> its option flags (``--lr``), in the order ``--help`` shows them."""
    from typer.core import TyperOption

    return {name: [p.opts[0] for p in cmd.params if isinstance(p, TyperOption) and p.name != "help"]
            for name, cmd in _commands().items()}


def _default(param) -> str:  # noqa: ANN001
    shown = param.show_default
    if isinstance(shown, str):
        return shown
    if param.default is None or param.default is False and param.is_flag:
        return "–"
    return f"`{param.default}`"


def _cell(text: str) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def render() -> str:
    from typer.core import TyperArgument, TyperOption

    lines = ["# The command line", "", "Every command and option, generated from the CLI (`python tools/cli_reference.py`); "
             "`adaptlab COMMAND --help` shows the same. Back to the [README](../README.md).", ""]
    for name, cmd in _commands().items():
        lines += [f"## adaptlab {name}", "", _cell(cmd.help or ""), ""]
        args = [p for p in cmd.params if isinstance(p, TyperArgument)]
        if args:
            lines += ["Arguments: " + ", ".join(f"`{(a.name or '').upper()}`" for a in args), ""]
        rows = [p for p in cmd.params if isinstance(p, TyperOption) and p.name != "help"]
        if rows:
            lines += ["| option | default | what it does |", "|---|---|---|"]
            lines += [f"| {', '.join(f'`{o}`' for o in p.opts + p.secondary_opts)} | {_cell(_default(p))} | {_cell(p.help or '')} |"
                      for p in rows]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    PAGE.write_text(render(), encoding="utf-8")


if __name__ == "__main__":
    main()
