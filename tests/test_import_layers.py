"""The import contract: packages form layers, and a module imports only from its own layer or below.

Layers, lowest first (``LAYERS``): a strategy may use a task type but no task type may reach for a strategy;
objectives sit between the task types whose batches they read and the strategies that compose them with a
method. Imports inside functions count too -- they are how cycles hide. What breaks the rule today is listed
in ``KNOWN`` (module -> package): the list may only shrink (a new upward import fails, and so does an entry
that no longer exists, so fixing one means deleting its line).
"""

from __future__ import annotations

import ast
from pathlib import Path

import adaptlab

LAYERS = ["errors", "settings", "models", "data", "eval", "tasks", "objectives", "strategies", "training", "config",
          "reporting", "serve", "ui", "api", "cli", "__main__", "adaptlab"]
KNOWN = {
    ("adaptlab.eval.episodic", "config"),
    ("adaptlab.eval.episodic", "reporting"), ("adaptlab.eval.episodic", "strategies"), ("adaptlab.eval.episodic", "training"),
    ("adaptlab.models.frozen_prefix", "data"), ("adaptlab.models.frozen_prefix", "eval"), ("adaptlab.reporting.judge", "serve"),
    ("adaptlab.strategies._adapters", "training"), ("adaptlab.strategies._teacher", "serve"), ("adaptlab.training.folders", "config"),
    ("adaptlab.training.plan_memory", "config"), ("adaptlab.training.runner", "config"), ("adaptlab.training.runner", "serve"),
    ("adaptlab.training.space", "config"), ("adaptlab.training.tune", "config"),
}
ROOT = Path(adaptlab.__file__).parent


def imports() -> set[tuple[str, str]]:
    """(importing module, imported adaptlab package) for every ``from adaptlab... import`` in the package."""
    found = set()
    for f in ROOT.rglob("*.py"):
        parts = ("adaptlab",) + f.relative_to(ROOT).with_suffix("").parts
        package = parts[:-1]  # what a relative import starts from
        module = ".".join(parts[:-1] if f.name == "__init__.py" else parts)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "adaptlab":
                target = node.module
            else:
                continue
            found.add((module, target.split(".")[1] if "." in target else "adaptlab"))
    return found


def layer_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "adaptlab"


def upward() -> set[tuple[str, str]]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return {(m, p) for m, p in imports() if rank[p] > rank[layer_of(m)]}


def test_every_package_has_a_layer():
    packages = {layer_of(m) for m, _ in imports()} | {p for _, p in imports()}
    assert packages <= set(LAYERS), f"give these a layer: {sorted(packages - set(LAYERS))}"


def test_no_new_import_from_a_higher_layer():
    new = upward() - KNOWN
    assert not new, "imports from a higher layer: " + ", ".join(f"{m} -> {p}" for m, p in sorted(new))


def test_the_known_exceptions_still_exist():
    gone = KNOWN - upward()
    assert not gone, "fixed, so remove from KNOWN: " + ", ".join(f"{m} -> {p}" for m, p in sorted(gone))


def test_objectives_and_task_types_never_reach_for_what_composes_them():
    bad = {(m, p) for m, p in imports() if layer_of(m) in ("objectives", "tasks", "models", "eval")
           and p in ("strategies", "training", "reporting", "serve", "cli", "api")} - KNOWN
    assert not bad, bad
