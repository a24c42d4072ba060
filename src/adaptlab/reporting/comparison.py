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
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..config import RunConfig, apply_overrides, build_config, read_yaml
from ..errors import AdaptlabError
from ..strategies import get_strategy
from ..strategies.base import supported
from ..training.runner import RunResult, _as_dict, _is_main_process, exclusive, fields_to_overrides, partial_folder, run_one
from .eta import time_left
from .judge import check_judge, judge
from .pipeline import Setups, check_names, plan_stages, run_stages
from .report import write_report
from .seeds import group_of, seed_list

log = logging.getLogger("adaptlab")

DEMO_RECIPE = "demo.yaml"
DEFAULT_STRATEGIES = ["linear_probe", "top_k", "gradual_unfreeze", "full", "lora"]


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
    return read_yaml(recipe) if recipe else {}


def plan(recipe: dict[str, Any], strategies: list[str] | None, overrides: dict[str, Any],
         trials: dict[str, int] | None = None) -> list[tuple[str, RunConfig]]:
    """Validate one :class:`RunConfig` per strategy entry; return ``(run name, config)`` pairs.

    Precedence, lowest first: the recipe's shared settings, the entry's own
    options and ``train`` settings, then the command line (``--epochs``,
    ``--set strategy.r=16``), which reaches every entry. Strategies named on the
    command line keep their recipe entry's settings when the recipe has one.
    """
    base = copy.deepcopy(recipe)
    extra = [{"name": e} if isinstance(e, str) else e for e in base.pop("strategy_settings", None) or []]
    listed = [{"name": e} if isinstance(e, str) else e for e in base.pop("strategies", None) or []]
    base.pop("strategy", None)
    base.pop("stages", None)  # run first, see pipeline.py
    base.pop("judge", None)  # after every run, see judge.py
    base.pop("search", None)  # compare --tune's search space, see training/tune.py
    base.pop("seeds", None)  # compare --seeds
    base.pop("resplit", None)  # compare --resplit
    base.pop("plan", None)  # adaptlab recommend's measurements and estimates, see recommend.py
    by_name = {str(e.get("label") or e.get("name")): e for e in extra + listed if isinstance(e, dict)}
    entries = [by_name.get(name, {"name": name}) for name in strategies] if strategies else listed or DEFAULT_STRATEGIES
    configs: list[tuple[str, RunConfig]] = []
    labels: list[str] = []
    for entry in entries:
        entry = {"name": entry} if isinstance(entry, str) else copy.deepcopy(entry)
        if not isinstance(entry, dict) or "name" not in entry:
            raise AdaptlabError(f"each entry of 'strategies' needs a name, got {entry!r}")
        run = copy.deepcopy(base)
        run.setdefault("train", {}).update(entry.pop("train", {}))
        run.setdefault("data", {}).update(entry.pop("data", {}))  # e.g. GRPO reading preference pairs as prompts
        label = str(entry.pop("label", None) or entry["name"])
        tune = entry.pop("tune", None)  # this entry is tuned first (``tune: N`` trials), see training/tune.py
        if "backbone" in entry:  # e.g. "@domain": the same strategy on a domain-adapted backbone
            run["backbone"] = entry.pop("backbone")
        run["strategy"] = entry
        cfg = build_config(apply_overrides(run, overrides))
        labels.append(label)
        count = labels.count(label)
        configs.append((label if count == 1 else f"{label}-{count}", cfg))
        if tune is not None and trials is not None:
            if not isinstance(tune, int) or isinstance(tune, bool) or tune < 1:
                raise AdaptlabError(f"entry {label}: 'tune' must be a number of trials (1 or more), got {tune!r}")
            trials[configs[-1][0]] = tune
    return configs


def with_seeds(configs: list[tuple[str, RunConfig]], seeds: int, resplit: bool = False) -> list[tuple[str, RunConfig]]:
    """Each entry once per seed (``<name>-seed<s>``, ``train.seed`` = s); unchanged for one seed. The data's split
    stays the first seed's (``data.split_seed``) unless ``resplit``: then every seed draws its own."""
    if seeds == 1:
        return configs
    out = []
    for name, cfg in configs:
        data = cfg.data if resplit or cfg.data.split_seed is not None else cfg.data.model_copy(update={"split_seed": cfg.train.seed})
        out += [(f"{name}-seed{s}", cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": s}), "data": data}))
                for s in seed_list(cfg.train.seed, seeds)]
    return out


def _run(name: str, cfg: RunConfig, setups: Setups, work: Path, out: Path, resume: bool) -> RunResult:
    """One strategy of the comparison, skipped if it finished before an interruption."""
    run_dir = work / name
    if (run_dir / "metrics.json").is_file():
        return RunResult(run_dir, json.loads((run_dir / "metrics.json").read_text()), cfg)
    return run_one(cfg.model_copy(update={"output": str(out / name)}), setups.get(cfg), run_dir,
                   resume=resume and partial_folder(run_dir).exists())


def _run_all(configs: list, setups: Setups, work: Path, out: Path, resume: bool) -> list[RunResult]:
    """Every strategy in turn, with a status line before each: which one, how many, and the time left --
    each pending run's work priced at the speed the finished ones measured (``eta.py``)."""
    runs: list[RunResult] = []
    for i, (name, cfg) in enumerate(configs):
        left = time_left([(c, setups.get(c)) for _, c in configs[i:]], [r.metrics for r in runs]) if runs else None
        note = f", about {_minutes(left)} left (less where early stopping ends a run sooner)" if left is not None else ""
        log.info("strategy %d/%d: %s%s", i + 1, len(configs), name, note)
        runs.append(replace(_run(name, cfg, setups, work, out, resume), module=None))  # free its weights before the next
    return runs


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def compare(
    strategies: list[str] | None = None,
    recipe: str | Path | dict[str, Any] | None = None,
    *,
    overrides: list[str] | dict[str, Any] | None = None,
    output: str | Path | None = None,
    resume: bool = False,
    seeds: int | None = None,
    tune: int | None = None,
    resplit: bool | None = None,
    **fields: Any,
) -> Comparison:
    """Run ``strategies`` under one setup; write run folders, results and a report.

    With neither a recipe nor data, runs the bundled demo: MiniLM-L6 on Rotten
    Tomatoes with the five core strategies. ``seeds``: run each strategy with that many
    seeds (``train.seed``, +1, ...) and report mean, spread and intervals (``seeds.py``).
    ``tune``: first search each strategy's settings with that many trials (``training/tune.py``). ``resplit``: each
    seed also draws its own split (else the seeds vary initialisation and order on one split).
    """
    more = {**fields_to_overrides(fields), **_as_dict(overrides)}
    if recipe is None and "data.train" not in more:
        recipe = bundled_recipe(DEMO_RECIPE)
        log.info("no data given: running the bundled demo recipe (minilm-l6 on rotten-tomatoes)")
    if seeds is not None and seeds < 1:
        raise AdaptlabError(f"--seeds must be at least 1, got {seeds}")
    if tune is not None and tune < 1:
        raise AdaptlabError(f"--tune must be at least 1 trial, got {tune}")
    data = load_recipe(recipe)
    seeds = seeds or data.get("seeds") or 1
    if not isinstance(seeds, int) or seeds < 1:
        raise AdaptlabError(f"'seeds' must be a whole number of at least 1, got {seeds!r}")
    trials: dict[str, int] = {}
    configs = plan(data, strategies, more, trials)
    if tune:
        trials = {name: trials.get(name, tune) for name, _ in configs}
    out = Path(output or data.get("output") or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
    with exclusive(out):
        return _compare_into(out, data, configs, more, resume, seeds, trials, bool(data.get("resplit") if resplit is None else resplit))


def _compare_into(out: Path, data: dict[str, Any], configs: list, more: dict[str, Any], resume: bool, seeds: int = 1,
                  trials: dict[str, int] | None = None, resplit: bool = False) -> Comparison:
    """Run the comparison into ``out`` (its caller holds the folder's lock)."""
    work = partial_folder(out)
    if out.exists():
        raise AdaptlabError(f"comparison folder {out} already exists; choose another --output")
    if work.exists() and not resume:
        raise AdaptlabError(f"{work} holds an interrupted comparison; pass --resume to continue it, or delete it")
    stages = plan_stages(data, more) if data.get("stages") else []
    check_names(stages, configs)
    judge_spec = check_judge(data.get("judge"), [n for n, _ in configs], [n for n, _ in stages])
    setups = Setups(work)
    first = setups.get(next(c for _, c in stages + configs if not c.backbone.startswith("@")))  # fail before any folder
    for _, cfg in configs:  # a strategy that cannot do the task: one clear error, before any folder
        if not cfg.backbone.startswith("@"):
            supported(get_strategy(cfg.strategy.name), setups.get(cfg).task_type)
    if trials:
        from ..training.space import check_space, parse_space

        for _, cfg in configs:  # a bad search space: one line before any folder
            check_space(parse_space(data.get("search") or {}), cfg)
    work.mkdir(parents=True, exist_ok=True)
    try:
        stage_runs = [replace(r, module=None) for r in run_stages(stages, work, resume, setups, final=out)]
        if trials:
            from ..training.tune import tuned

            configs = tuned(configs, trials, work, data.get("search"))
        configs = with_seeds(configs, seeds, resplit)
        runs = _run_all(configs, setups, work, out, resume)
    except BaseException:
        if not any(work.iterdir()):  # nothing finished or resumable: leave nothing behind
            work.rmdir()
        raise
    configs, runs = stages + configs, stage_runs + runs
    if not _is_main_process():
        return Comparison(out, runs, [])
    rows = [dict(run=name, group=group_of(name), **r.metrics) for (name, _), r in zip(configs, runs)]
    judged = judge(judge_spec, rows, work) if judge_spec else None
    write_report(work, rows, getattr(first.data, "majority_baseline", None), judged, (data.get("plan") or {}).get("estimates"))
    os.replace(work, out)
    log.info("report: %s", out / "report.md")
    return Comparison(out, [RunResult(out / n, r.metrics, r.config) for (n, _), r in zip(configs, runs)], rows)
