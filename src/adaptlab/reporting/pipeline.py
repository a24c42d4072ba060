"""Multi-stage recipes: runs that build on earlier runs, in one command.

A recipe with a ``stages`` list runs each stage in order. A stage is a run
recipe plus a ``name`` (its folder); its ``train`` and ``data`` settings are
merged over the recipe's. ``@name`` in a later stage -- as its ``backbone``
(domain-adaptive pretraining, then the task) or in a strategy option (a
distillation teacher) -- means that stage's finished run folder::

    stages:
      - {name: domain, strategy: {name: dapt, corpus: rotten-tomatoes}}
      - {name: task, strategy: full, backbone: "@domain"}

``@name`` is resolved against the folder that holds the run, so a pipeline or
comparison folder stays valid when moved. ``adaptlab train`` writes the stages
as sibling run folders (each atomic; a rerun with ``--resume`` skips finished
ones) plus ``report.md``; ``adaptlab compare`` runs a recipe's stages before its
strategies, whose entries may then use ``backbone: "@name"`` (the DAPT A/B).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import RunConfig, apply_overrides, build_config, read_yaml
from ..errors import AdaptlabError
from ..models.backbones import resolve_ref
from ..tasks import task_of

log = logging.getLogger("adaptlab")


def recipe_data(recipe: str | Path | dict[str, Any] | None) -> dict[str, Any]:
    if recipe is None:
        return {}
    return copy.deepcopy(recipe) if isinstance(recipe, dict) else read_yaml(recipe)


def has_stages(recipe: Any) -> bool:
    if isinstance(recipe, RunConfig) or recipe is None:
        return False
    return bool(recipe_data(recipe).get("stages"))


def plan_stages(recipe: dict[str, Any], overrides: dict[str, Any]) -> list[tuple[str, RunConfig]]:
    """Validate one :class:`RunConfig` per stage; return ``(name, config)`` pairs."""
    entries = recipe.get("stages") or []
    if not isinstance(entries, list):
        raise AdaptlabError("'stages' must be a list of stage recipes, each with a name")
    base = {k: copy.deepcopy(v) for k, v in recipe.items() if k not in ("stages", "strategies", "strategy_settings", "strategy", "output", "judge")}
    apply_overrides(base, overrides)
    planned: list[tuple[str, RunConfig]] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise AdaptlabError(f"each stage needs a name, got {entry!r}")
        entry = copy.deepcopy(entry)
        name = entry.pop("name")
        if not name or "/" in name or name.startswith((".", "@")) or name in (n for n, _ in planned):
            raise AdaptlabError(f"stage name '{name}' is empty, a path or used twice")
        run = copy.deepcopy(base)
        for key in ("train", "data"):
            if key in entry:
                run.setdefault(key, {}).update(entry.pop(key))
        run.update(entry)
        try:
            planned.append((name, build_config(run)))
        except AdaptlabError as e:
            raise AdaptlabError(f"stage '{name}': {e}") from None
    return planned


class Setups:
    """Validated, tokenised data per (backbone, data, seed), shared by the runs that can share it."""

    def __init__(self, root: Path):
        self.root = root
        self.cache: dict[str, Any] = {}

    def get(self, cfg: RunConfig) -> Any:
        from ..training.runner import make_setup, split_seed

        key = json.dumps([resolve_ref(cfg.backbone, self.root), cfg.data.model_dump(mode="json"), split_seed(cfg)])
        if key not in self.cache:
            self.cache[key] = make_setup(cfg, root=self.root)
        return self.cache[key]


def check_names(stages: list[tuple[str, RunConfig]], configs: list[tuple[str, RunConfig]]) -> None:
    """Stages and strategy entries are folders side by side: no name may be both; and every ``backbone: "@name"``
    of an entry names a stage of the recipe (checked before anything runs, not when the entry's turn comes)."""
    known = {n for n, _ in stages}
    clash = known & {n for n, _ in configs}
    if clash:
        raise AdaptlabError(f"stage and strategy entries share the name {sorted(clash)[0]!r}; give one a label")
    for name, cfg in configs:
        if cfg.backbone.startswith("@") and cfg.backbone[1:] not in known:
            raise AdaptlabError(f"entry {name}: backbone '{cfg.backbone}' names no stage of this recipe "
                                f"(stages: {', '.join(sorted(known)) or 'none'})")


def run_stages(stages: list[tuple[str, RunConfig]], folder: Path, resume: bool, setups: Setups,
               final: Path | None = None) -> list[Any]:
    """Run ``stages`` in order into ``folder/<name>``; finished ones are read back, not rerun.

    ``final``: where ``folder`` will be once complete (a comparison's ``.partial``
    folder is renamed), recorded as each run's ``output``.
    """
    from ..training.runner import RunResult, partial_folder, run_one

    results: list[RunResult] = []
    for name, cfg in stages:
        if results:  # only the last stage's trained module is returned: free the others' weights before the next
            results[-1] = replace(results[-1], module=None)
        out = folder / name
        if (out / "metrics.json").is_file():
            results.append(RunResult(out, json.loads((out / "metrics.json").read_text(encoding="utf-8")), cfg))
            continue
        log.info("stage %s: %s on %s", name, cfg.strategy.name, cfg.backbone)
        setup = setups.get(cfg)
        results.append(run_one(cfg.model_copy(update={"output": str((final or folder) / name)}), setup, out,
                               resume=resume and partial_folder(out).exists()))
    return results


def train_stages(recipe: Any, overrides: dict[str, Any], resume: bool = False) -> Any:
    """``adaptlab train`` on a recipe with stages: every stage, then report.md; returns the last run."""
    from ..training.runner import RunResult, exclusive
    from .report import write_report

    data = recipe_data(recipe)
    out = Path(overrides.pop("output", None) or data.get("output") or Path("runs") / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}")
    stages = plan_stages(data, overrides)
    with exclusive(out):
        if (out / "report.md").exists():
            raise AdaptlabError(f"pipeline folder {out} already exists; choose another --output")
        if out.exists() and not resume:
            raise AdaptlabError(f"{out} holds an interrupted pipeline; pass --resume to continue it, or delete it")
        setups = Setups(out)
        setups.get(next(c for _, c in stages if not c.backbone.startswith("@")))  # bad data fails before any folder
        out.mkdir(parents=True, exist_ok=True)
        results = run_stages(stages, out, resume, setups)
        rows = [dict(run=name, **r.metrics) for (name, _), r in zip(stages, results)]
        final = [r for r in rows if task_of(r).serves]
        if final:  # stages whose product is a backbone (domain-adaptive pretraining) alone make no comparison
            write_report(out, rows, final[0].get("majority_baseline"))
        log.info("pipeline: %s", out)
        last = results[-1]
        return RunResult(last.run_dir, last.metrics, last.config, last.module)
