"""Write the generated part of ``docs/architecture.md``: the layers, every module with its docstring's first line,
and the protocols with their members, read from the code (between ``<!-- architecture:start/end -->``).

    python tools/architecture.py

``tests/test_readme_tables.py`` fails when the page differs from what this writes, so a module added, moved or
re-described shows up there without anyone editing the page by hand.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "src" / "adaptlab"
START, END = "<!-- architecture:start -->", "<!-- architecture:end -->"
PROTOCOLS = [("strategies/base.py", "Strategy"), ("tasks/base.py", "TaskType"), ("tasks/base.py", "Generative"),
             ("objectives/base.py", "Objective"), ("objectives/base.py", "Online")]
"""The seams: (module, class) of each protocol the loop, runner and report talk to."""


def first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def layers() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.test_import_layers import LAYERS

    return LAYERS


def modules() -> list[str]:
    lines = []
    for layer in layers():
        path = PACKAGE / layer
        if path.is_dir():
            lines.append(f"- **{layer}/** -- {first_line(path / '__init__.py')}")
            for f in sorted(path.glob("*.py")):
                if f.name != "__init__.py":
                    lines.append(f"  - `{f.name}`: {first_line(f)}")
            for sub in sorted(p for p in path.iterdir() if p.is_dir() and (p / "__init__.py").is_file()):
                lines.append(f"  - `{sub.name}/`: {first_line(sub / '__init__.py')}")
        elif path.with_suffix(".py").is_file():
            lines.append(f"- **{layer}.py** -- {first_line(path.with_suffix('.py'))}")
    recipes = ", ".join(f"`{f.stem}`" for f in sorted((PACKAGE / "recipes").glob("*.yaml")))
    lines += [f"- **recipes/** -- the bundled YAML recipes (`adaptlab compare NAME`, `adaptlab train NAME`): {recipes}",
              "- **resources/** -- the forgetting probe's fixed reference set (`resources/REFERENCE.md`)"]
    return lines


def protocols() -> list[str]:
    lines = []
    for module, name in PROTOCOLS:
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
        bases = [ast.unparse(b) for b in cls.bases if ast.unparse(b) != "Protocol"]
        members = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
        methods = [f"{n.name}()" for n in cls.body if isinstance(n, ast.FunctionDef)]
        extends = f" (extends {', '.join(bases)})" if bases else ""
        lines.append(f"- `{name}`{extends}, `{module}`: {', '.join(f'`{m}`' for m in members + methods)}")
    return lines


def render() -> str:
    return "\n".join([START, "", "Layers, lowest first (a module imports only from its own layer or below; "
                      "`tests/test_import_layers.py`): " + " < ".join(f"`{name}`" for name in layers()) + ".", "",
                      "### Modules", "", *modules(), "", "### Protocols", "", *protocols(), "", END])


def main() -> None:
    text = PAGE.read_text(encoding="utf-8")
    PAGE.write_text(text[: text.index(START)] + render() + text[text.index(END) + len(END):], encoding="utf-8")


if __name__ == "__main__":
    main()
