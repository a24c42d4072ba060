"""Run several strategies on the same data, split and seed, and report.

A comparison recipe is a run recipe plus a ``strategies`` list; each entry is a
strategy name or a mapping with the strategy's options and, optionally, its own
``train`` settings (a linear probe wants more epochs than full fine-tuning).
Data and backbone are validated and tokenised once and shared by every run.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from .config import RunConfig, apply_overrides, build_config, read_yaml
from .errors import AdaptlabError
from .report import write_report
from .runner import RunResult, fields_to_overrides, make_setup, partial_folder, run_one, _as_dict

log = logging.getLogger("adaptlab")

DEMO_RECIPE = "demo.yaml"


@dataclass
class Comparison:
    folder: Path
    runs: list[RunResult]
    rows: list[dict[str, Any]]


def bundled_recipe(name: str) -> dict[str, Any]:
    return read_yaml(Path(str(files("adaptlab.recipes") / name)))


def load_recipe(recipe: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    """A recipe as a dict: a mapping, a YAML file, or the name of a bundled recipe (``crosslingual``)."""
    if isinstance(recipe, dict):
        return recipe
    if recipe is None:
        return {}
    path = Path(recipe)
    if not path.exists() and not path.suffix and (files("adaptlab.recipes") / f"{path.name}.yaml").is_file():
        return bundled_recipe(f"{path.name}.yaml")
    return read_yaml(path)


def plan(recipe: dict[str, Any], strategies: list[str] | None, overrides: dict[str, Any]) -> list[tuple[str, RunConfig]]:
    """Validate one :class:`RunConfig` per strategy entry; return ``(run name, config)`` pairs."""
    base = copy.deepcopy(recipe)
    entries = strategies or base.pop("strategies", None) or ["linear_probe", "top_k", "gradual_unfreeze", "full", "lora"]
    base.pop("strategies", None)
    base.pop("strategy", None)
    apply_overrides(base, overrides)
    configs: list[tuple[str, RunConfig]] = []
    labels: list[str] = []
    for entry in entries:
        entry = {"name": entry} if isinstance(entry, str) else copy.deepcopy(entry)
        if not isinstance(entry, dict) or "name" not in entry:
            raise AdaptlabError(f"each entry of 'strategies' needs a name, got {entry!r}")
        run = copy.deepcopy(base)
        run.setdefault("train", {}).update(entry.pop("train", {}))
        label = str(entry.pop("label", None) or entry["name"])
        run["strategy"] = entry
        cfg = build_config(run)
        labels.append(label)
        count = labels.count(label)
        configs.append((label if count == 1 else f"{label}-{count}", cfg))
    return configs


def compare(
    strategies: list[str] | None = None,
    recipe: str | Path | dict[str, Any] | None = None,
    *,
    overrides: list[str] | dict[str, Any] | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    **fields: Any,
) -> Comparison:
    """Run ``strategies`` under one setup; write run folders, results and a report.

    With neither a recipe nor data, runs the bundled demo: MiniLM-L6 on Rotten
    Tomatoes with the five core strategies.
    """
    more = {**fields_to_overrides(fields), **_as_dict(overrides)}
    if recipe is None and "data.train" not in more:
        recipe = bundled_recipe(DEMO_RECIPE)
        log.info("no data given: running the bundled demo recipe (minilm-l6 on rotten-tomatoes)")
    data = load_recipe(recipe)
    configs = plan(data, strategies, more)
    out = Path(output or data.get("output") or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    work = partial_folder(out)
    if out.exists():
        raise AdaptlabError(f"comparison folder {out} already exists; choose another --output")
    if work.exists() and not resume:
        raise AdaptlabError(f"{work} holds an interrupted comparison; pass --resume to continue it, or delete it")
    setup = make_setup(configs[0][1])
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for name, cfg in configs:
        run_dir = work / name
        if (run_dir / "metrics.json").is_file():  # finished before an interruption
            runs.append(RunResult(run_dir, json.loads((run_dir / "metrics.json").read_text()), cfg))
            continue
        runs.append(run_one(cfg.model_copy(update={"output": str(out / name)}), setup, run_dir,
                            resume=resume and partial_folder(run_dir).exists()))
    rows = [dict(run=name, **r.metrics) for (name, _), r in zip(configs, runs)]
    write_report(work, rows, setup.data.majority_baseline)
    os.replace(work, out)
    log.info("report: %s", out / "report.md")
    return Comparison(out, [RunResult(out / n, r.metrics, r.config) for (n, _), r in zip(configs, runs)], rows)
