"""``adaptlab recommend``: a ranked plan of strategies, before anything trains.

The factors the choice rests on are measured, not asked: the data (rows, classes, lengths, label
balance), how far the user's texts are from what the backbone knows (its sentence embeddings of
them against the bundled general reference passages), the compute (device, memory, the budgets
given) and a quick probe (a cached-feature linear probe on a subsample: seconds). Each candidate
strategy then runs a few timed steps (``estimate.py``) for its time, memory and artefact size on
this machine. The plan is a comparison recipe (``adaptlab compare --plan plan.yaml`` runs it)
whose ``plan:`` block keeps the estimates; the comparison's report sets them beside what was
measured.

The ranking rule, stated in the plan: the linear probe first (seconds; a floor every other run
must beat), then by data size -- few examples favour few trainable parameters (LoRA, top-k), many
favour full fine-tuning, more so when the texts are far from the backbone's general text -- and
only strategies that fit the budgets, in that order, while the time budget lasts.
"""

from __future__ import annotations

import logging
import math
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import AdaptlabError

log = logging.getLogger("adaptlab")

CANDIDATES = ("linear_probe", "lora", "top_k", "full", "gradual_unfreeze")
SHIFT_FAR = 2.0
"""Domain shift above this many times the reference set's own spread counts as far from general text."""


def profile_data(setup: Any) -> dict[str, Any]:
    """Rows, classes, token lengths and label balance of the training split."""
    lengths = sorted(len(r["input_ids"]) for r in setup.train_rows)
    counts = [setup.data.train.labels.count(i) for i in range(len(setup.data.labels))]
    return {"train_rows": len(setup.train_rows), "validation_rows": len(setup.val_rows), "eval_rows": len(setup.eval_rows),
            "classes": len(setup.data.labels), "tokens_median": statistics.median(lengths),
            "tokens_p90": lengths[int(0.9 * (len(lengths) - 1))], "smallest_class_share": round(min(counts) / sum(counts), 3),
            "largest_class_share": round(max(counts) / sum(counts), 3)}


def domain_shift(setup: Any, sample: int = 200, seed: int = 0) -> dict[str, Any]:
    """How far the user's texts sit from general text in the backbone's own embedding space.

    ``distance``: 1 - cosine between the mean embedding of a sample of the user's texts and that of the
    bundled reference passages (Hamlet and everyday question/answer pairs, ``resources/``); ``spread``: the
    same distance between two random halves of the reference set -- how much general text differs from
    itself; ``ratio`` = distance / spread (about 1: like general text; well above 1: a domain of its own).
    """
    import random

    from transformers import AutoModel

    from ..eval.forgetting import embed, reference_pairs, reference_text, text_batches

    reference = reference_text() + [t for pair in reference_pairs() for t in pair]
    texts = list(setup.data.train.texts)
    random.Random(seed).shuffle(texts)
    model = AutoModel.from_pretrained(setup.backbone.source).eval()
    from ..settings import DataConfig
    from ..training.runner import input_length

    tok, prefix, n = setup.backbone.tokenizer, setup.backbone.input_prefix, input_length(DataConfig(), setup.backbone)
    with torch.inference_mode():
        user, ref = (embed(model, text_batches(tok, [prefix + t for t in part], n, 32), torch.device("cpu"), "domain shift")
                     for part in (texts[:sample], reference))
    order = torch.randperm(len(ref), generator=torch.Generator().manual_seed(seed))
    half = len(ref) // 2

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        return 1 - float(torch.nn.functional.cosine_similarity(a.mean(0), b.mean(0), dim=0))

    d, spread = distance(user, ref), distance(ref[order[:half]], ref[order[half:]])
    ratio = d / max(spread, 1e-6)
    meaning = "far from general text: a domain of its own" if ratio > SHIFT_FAR else "close to general text"
    return {"distance": round(d, 4), "spread": round(spread, 4), "ratio": round(ratio, 2), "meaning": meaning, "texts": len(user)}


def quick_probe(setup: Any, cfg: Any, sample: int = 400) -> dict[str, Any]:
    """A cached-feature linear probe on a subsample: accuracy on the validation (or evaluation) rows, seconds."""
    import time

    from ..strategies.base import Task, get_strategy
    from ..training.loop import fit
    from ..training.runner import prepare_module, resolve_train
    from .estimate import sampled

    probe_cfg = cfg.model_copy(update={"strategy": get_strategy("linear_probe").Config(name="linear_probe")})
    train_cfg = resolve_train(probe_cfg, setup.task_type).model_copy(update={"progress": False, "checkpoint_every": None, "lr": 1e-2,
                                                                          "report_to": []})
    strategy = get_strategy("linear_probe")(probe_cfg.strategy)
    held = sampled(setup.val_rows or setup.eval_rows, sample)
    started = time.perf_counter()
    module = prepare_module(strategy, Task(setup.data.labels, setup.backbone, train_cfg, type=setup.task_type, run_config=probe_cfg))
    _, state = fit(strategy, module, sampled(setup.train_rows, sample), held, train_cfg, pad_token_id=setup.backbone.tokenizer.pad_token_id or 0,
                   task_type=setup.task_type)
    best = state.history[state.best_epoch - 1]
    return {"accuracy": round(best.get("accuracy", 0.0), 4), "train_rows": min(sample, len(setup.train_rows)), "held_out_rows": len(held),
            "majority_class": round(setup.data.majority_baseline, 4), "seconds": round(time.perf_counter() - started, 1)}


def reasons(data: dict[str, Any], shift: dict[str, Any], probe: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """(rank, one-line reason) per candidate: lower ranks run first."""
    n, far = data["train_rows"], shift["ratio"] > SHIFT_FAR
    lift = probe["accuracy"] - probe["majority_class"]
    size = "few" if n < 500 else "many" if n >= 5000 else "a moderate number of"
    out = {"linear_probe": (0, f"seconds on cached features; the quick probe reaches {probe['accuracy']:.3f} "
                               f"({lift:+.3f} over the majority class): the floor every other strategy must beat")}
    if n < 500:
        out |= {"lora": (1, f"{size} examples ({n}): few trainable parameters overfit least, and the artefact is small"),
                "top_k": (2, "trains only the top layers: cheap, and keeps most of what the backbone knew"),
                "full": (3, f"every weight trains: with {n} examples it risks overfitting, but it is the reference"),
                "gradual_unfreeze": (4, "ULMFiT's schedule guards small data against forgetting; slower than top-k")}
    else:
        full_reason = ("the texts are far from general text (shift ratio "
                       f"{shift['ratio']:.1f}): updating every weight adapts the representation itself") if far else \
            f"{size} examples ({n}): enough to update every weight; the most accurate when data is plentiful"
        out |= {"full": (1 if (far or n >= 5000) else 2, full_reason),
                "lora": (2 if (far or n >= 5000) else 1, "close to full fine-tuning's accuracy at a fraction of its trainable "
                                                          "parameters and artefact size"),
                "top_k": (3, "trains only the top layers: a cheap middle ground"),
                "gradual_unfreeze": (4, "ULMFiT's schedule: most useful when forgetting matters")}
    return out


def fits(est: dict[str, Any], budget: dict[str, float | None]) -> str | None:
    """Why ``est`` breaks a budget, or None."""
    if budget.get("max_memory_gb") and est["peak_memory_mb"] > budget["max_memory_gb"] * 1024:
        return f"peak memory {est['peak_memory_mb'] / 1024:.2f} GB > {budget['max_memory_gb']} GB"
    if budget.get("max_artifact_mb") and est["artifact_mb"] > budget["max_artifact_mb"]:
        return f"artefact {est['artifact_mb']:.1f} MB > {budget['max_artifact_mb']} MB"
    if budget.get("minutes") and est["wall_seconds"] > budget["minutes"] * 60:
        return f"about {est['wall_seconds'] / 60:.1f} min > {budget['minutes']} min"
    return None


def choose(ranked: list[dict[str, Any]], budget: dict[str, float | None]) -> list[dict[str, Any]]:
    """The ranked candidates that fit, in order, while the time budget lasts; an error naming the closest when none does."""
    chosen, left = [], (budget.get("minutes") or math.inf) * 60
    for est in ranked:
        why = fits(est, {**budget, "minutes": None})
        if why is None and est["wall_seconds"] <= left:
            chosen.append(est)
            left -= est["wall_seconds"]
        else:
            est["left_out"] = why or f"about {est['wall_seconds'] / 60:.1f} min, more than the {left / 60:.1f} min left of the budget"
    if not chosen:
        closest = min(ranked, key=lambda e: _overrun(e, budget))
        raise AdaptlabError(f"no strategy fits the budget; the closest is {closest['strategy']} ({closest['left_out']}, "
                            f"{_overrun(closest, budget):.1f}x over)")
    return chosen


def _overrun(est: dict[str, Any], budget: dict[str, float | None]) -> float:
    ratios = [1.0]
    if budget.get("minutes"):
        ratios.append(est["wall_seconds"] / (budget["minutes"] * 60))
    if budget.get("max_memory_gb"):
        ratios.append(est["peak_memory_mb"] / (budget["max_memory_gb"] * 1024))
    if budget.get("max_artifact_mb"):
        ratios.append(est["artifact_mb"] / budget["max_artifact_mb"])
    return max(ratios)


def compute() -> dict[str, Any]:
    import os

    import psutil

    out = {"device": "cuda" if torch.cuda.is_available() else "cpu", "cpu_cores": os.cpu_count(),
           "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "memory_available_gb": round(psutil.virtual_memory().available / 2**30, 1)}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
        out["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return out


def write_plan(path: Path, base: dict[str, Any], entries: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """``plan.yaml``: a comparison recipe (the chosen strategies in order, with their settings) whose ``plan:`` block
    keeps the measurements and estimates."""
    from ..training.checkpoint import write_atomic

    recipe = {**{k: v for k, v in base.items() if k not in ("strategy", "strategies", "output")}, "strategies": entries, "plan": info}
    header = f"# adaptlab recommend: run it with `adaptlab compare --plan {path}`\n"
    write_atomic(path, header + yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))

def recommend(recipe: Any = None, *, overrides: dict[str, Any] | None = None, budget_minutes: float | None = None,
              max_memory_gb: float | None = None, max_artifact_mb: float | None = None, output: str | Path | None = None,
              strategies: list[str] | None = None) -> dict[str, Any]:
    """Measure the data, the domain shift and the machine, time each candidate, and write ``plan.yaml``; return the plan."""
    import copy
    import time

    from ..config import apply_overrides, build_config
    from ..strategies import get_strategy
    from ..training.plan_memory import plan_memory
    from ..training.runner import make_setup
    from .comparison import DEMO_RECIPE, bundled_recipe, load_recipe
    from .estimate import estimate

    for flag, value in (("--budget-minutes", budget_minutes), ("--max-memory-gb", max_memory_gb), ("--max-artifact-mb", max_artifact_mb)):
        if value is not None and value <= 0:
            raise AdaptlabError(f"{flag} must be positive, got {value}")
    if recipe is None and "data.train" not in (overrides or {}):
        recipe = bundled_recipe(DEMO_RECIPE)
    data = copy.deepcopy(load_recipe(recipe))
    entries = {e["name"] if isinstance(e, dict) else e: (e if isinstance(e, dict) else {"name": e})
               for e in (data.get("strategy_settings") or []) + (data.get("strategies") or [])}
    base = {k: v for k, v in data.items() if k not in ("strategy", "strategies", "strategy_settings", "plan", "judge", "search", "seeds")}
    names = strategies or list(CANDIDATES)
    for name in names:
        get_strategy(name)  # an unknown name: one line with the closest
    configs = {n: build_config(apply_overrides({**copy.deepcopy(base), "strategy": {k: v for k, v in entries.get(n, {"name": n}).items()
                                                                                   if k != "train"},
                                                 "train": {**base.get("train", {}), **entries.get(n, {}).get("train", {})}}, overrides or {}))
               for n in names}
    setup = make_setup(next(iter(configs.values())))
    if getattr(setup.task_type, "generative", False):
        raise AdaptlabError(f"adaptlab recommend plans classification runs; this data is {setup.task_type.name}")
    started = time.perf_counter()
    profile, shift = profile_data(setup), domain_shift(setup)
    probe = quick_probe(setup, next(iter(configs.values())))
    why = reasons(profile, shift, probe)
    ranked = []
    for name in sorted(names, key=lambda n: why.get(n, (9, ""))[0]):
        planned = plan_memory(configs[name], labels=len(setup.data.labels))["plan"]  # from the config: before any weight loads
        log.info("recommend: timing a few steps of %s", name)
        ranked.append({**estimate(configs[name], setup).as_dict(), "planned_memory_mb": planned["total"],
                       "reason": why.get(name, (9, "asked for"))[1]})
    budget = {"minutes": budget_minutes, "max_memory_gb": max_memory_gb, "max_artifact_mb": max_artifact_mb}
    chosen = choose(ranked, budget)
    info = {"made": time.strftime("%Y-%m-%d %H:%M"), "compute": compute(), "budget": {k: v for k, v in budget.items() if v},
            "data": profile, "domain_shift": shift, "quick_probe": probe, "seconds": round(time.perf_counter() - started, 1),
            "estimates": {e["strategy"]: e for e in ranked}, "order": [e["strategy"] for e in chosen]}
    path = Path(output or "plan.yaml")
    chosen_entries = [{**entries.get(e["strategy"], {"name": e["strategy"]}), "name": e["strategy"]} for e in chosen]
    write_plan(path, apply_overrides(copy.deepcopy(base), overrides or {}), chosen_entries, info)
    info["path"] = str(path)
    return info
