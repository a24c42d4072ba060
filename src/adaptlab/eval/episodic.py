"""Episodic few-shot evaluation on classes held out from (meta-)training.

The classes of the data are split in two disjoint sets (Vinyals et al. 2016,
§4; Snell et al. 2017, §3): each strategy trains as usual on the examples of
the *meta-train* classes only, then is scored on many N-way K-shot episodes
drawn from the *meta-test* classes, which it has never seen: it adapts to each
episode's support set with its ``adapt_episode`` hook (prototypes, MAML's inner
steps, a head fitted on the support) and classifies the queries. The result is
the mean episode accuracy with a 95 % confidence interval (1.96 standard
errors, as in the few-shot literature). Every strategy gets the same episodes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data.batching import Collate, encode
from ..data.episodes import by_class, sample_episode, split_classes
from ..data.task import Examples, TaskData, cap, carve_validation, extract, label_names, load_table, stratified_split
from ..errors import AdaptlabError
from ..models.backbones import load_backbone, resolve_ref
from ..reporting.comparison import load_recipe, plan
from ..reporting.pipeline import Setups, check_names, plan_stages, run_stages
from ..strategies import get_strategy
from ..training.runner import Setup, _as_dict, fields_to_overrides, input_length, partial_folder, run_one
from .metrics import model_inputs

log = logging.getLogger("adaptlab")


@dataclass
class EpisodicResult:
    folder: Path
    rows: list[dict[str, Any]]
    classes: dict[str, list[str]]


def class_split_setup(cfg: RunConfig, test_classes: list[str] | None, n_test: int,
                      root: Path | None = None) -> tuple[Setup, Examples, list[str], list[str]]:
    """A training setup with the meta-train classes only, and the examples of the meta-test classes
    (``root``: the folder that holds the runs, where an ``@stage`` backbone is looked up)."""
    table = load_table(cfg.data.train, cfg.data.encoding)
    texts, pairs, raw = extract(table, cfg.data)
    names = label_names(raw, table.source)
    train_classes, test_classes = split_classes(names, test_classes, n_test, cfg.train.seed)
    index = {c: i for i, c in enumerate(train_classes)}
    seen = Examples([t for t, y in zip(texts, raw) if y in index], [index[y] for y in raw if y in index])
    held, kept = stratified_split(seen.labels, max(len(index), round(len(seen) * cfg.data.eval_fraction)), cfg.train.seed)
    train, evaluation = seen.subset(kept), cap(seen.subset(held), cfg.data.max_eval, cfg.train.seed)
    if cfg.data.max_train and cfg.data.max_train < len(train):
        train = train.subset(stratified_split(train.labels, cfg.data.max_train, cfg.train.seed)[0])
    test_index = {c: i for i, c in enumerate(test_classes)}
    unseen = Examples([t for t, y in zip(texts, raw) if y in test_index], [test_index[y] for y in raw if y in test_index])
    train, validation = carve_validation(train, cfg.data, cfg.train.seed)  # chooses the epoch; `evaluation` is reported
    data = TaskData(train, evaluation, train_classes, table.source, sampling={"meta_test_classes_excluded": test_classes},
                    validation=validation)
    backbone = load_backbone(resolve_ref(cfg.backbone, root))
    n = input_length(cfg.data, backbone)
    rows = [encode(s, backbone.tokenizer, n, backbone.input_prefix) for s in (train, evaluation)]
    val = encode(validation, backbone.tokenizer, n, backbone.input_prefix) if validation else []
    return Setup(data, backbone, *rows, val_rows=val), unseen, train_classes, test_classes


def episode_accuracies(strategy: Any, module: torch.nn.Module, rows: list[dict], n_way: int, k_shot: int,
                       queries: int, episodes: int, seed: int, pad_token_id: int = 0) -> list[float]:
    """Accuracy on each of ``episodes`` N-way K-shot episodes of ``rows`` (same episodes for the same seed)."""
    adapt = getattr(strategy, "adapt_episode", None)
    if adapt is None:
        raise AdaptlabError(f"strategy '{strategy.name}' has no episodic mode (it needs an adapt_episode hook); "
                            f"try protonet, maml or contrastive")
    groups = {c: ix for c, ix in by_class([int(r["labels"]) for r in rows]).items() if len(ix) >= k_shot + queries}
    if len(groups) < n_way:
        raise AdaptlabError(f"{n_way}-way episodes of {k_shot}+{queries} examples per class need {n_way} held-out "
                            f"classes with {k_shot + queries} examples; {len(groups)} have them")
    rng, collate = random.Random(seed), Collate(pad_token_id)
    device = next(module.parameters()).device
    module.eval()
    out = []
    for _ in range(episodes):
        support, query = sample_episode(groups, n_way, k_shot, queries, rng)
        batch = {k: v.to(device) for k, v in collate([rows[i] for i in support + query]).items()}
        inputs, n_support = model_inputs(batch), len(support)
        # episode labels 0..n_way-1 by support order (classes were drawn in order, k_shot each)
        labels = torch.arange(n_way, device=device).repeat_interleave(k_shot)
        query_y = torch.arange(n_way, device=device).repeat_interleave(queries)
        logits = adapt(module, {k: v[:n_support] for k, v in inputs.items()}, labels,
                       {k: v[n_support:] for k, v in inputs.items()}, n_way)
        out.append((logits.argmax(-1) == query_y).float().mean().item())
    return out


def confidence(accuracies: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval."""
    n = len(accuracies)
    mean = sum(accuracies) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / max(n - 1, 1))
    return mean, 1.96 * std / math.sqrt(n)


def episodic(
    strategies: list[str] | None = None,
    recipe: str | Path | dict[str, Any] | None = None,
    *,
    test_classes: list[str] | None = None,
    n_test_classes: int = 2,
    n_way: int | None = None,
    k_shot: int = 5,
    queries: int = 10,
    episodes: int = 100,
    overrides: list[str] | dict[str, Any] | None = None,
    output: str | Path | None = None,
    **fields: Any,
) -> EpisodicResult:
    """Meta-train each strategy on some classes, score N-way K-shot episodes of the others."""
    more = {**fields_to_overrides(fields), **_as_dict(overrides)}
    data = load_recipe(recipe)
    configs = plan(data, strategies or (None if data.get("strategies") else ["protonet"]), more)  # the recipe's list
    for _, cfg in configs:
        if not hasattr(get_strategy(cfg.strategy.name), "adapt_episode"):
            raise AdaptlabError(f"strategy '{cfg.strategy.name}' has no episodic mode; try protonet, maml or contrastive")
    out = Path(output or Path("runs") / f"episodic-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() or partial_folder(out).exists():
        raise AdaptlabError(f"folder {out} (or {out}.partial) already exists; choose another --output")
    work = partial_folder(out)
    stages = _stages(data, more, configs)
    first = configs[0][1]
    if not first.backbone.startswith("@"):  # bad data: one clear line before any folder
        setup, unseen, train_classes, held_out = class_split_setup(first, test_classes, n_test_classes, work)
    work.mkdir(parents=True)
    try:  # no --resume here: a failed evaluation leaves no folder behind
        if stages:  # a recipe's stages (domain-adaptive pretraining, ...) first: `backbone: "@name"` is their run folder
            run_stages(stages, work, False, Setups(work), final=out)
        if first.backbone.startswith("@"):
            setup, unseen, train_classes, held_out = class_split_setup(first, test_classes, n_test_classes, work)
        n_way = n_way or len(held_out)
        rows = _score_all(configs, setup, unseen, out, work, n_way, k_shot, queries, episodes)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    classes = {"meta_train": train_classes, "meta_test": held_out}
    settings = {"n_way": n_way, "k_shot": k_shot, "queries": queries, "episodes": episodes, "seed": first.train.seed,
                "backbone": first.backbone, "data": setup.data.source, "stages": [n for n, _ in stages]}
    (work / "episodic.json").write_text(json.dumps({"classes": classes, **settings, "results": rows}, indent=2), encoding="utf-8")
    (work / "episodic.md").write_text("\n".join(episodic_table(rows, classes, settings)) + "\n", encoding="utf-8")
    os.replace(work, out)
    return EpisodicResult(out, rows, classes)


def _score_all(configs: list[tuple[str, RunConfig]], setup: Setup, unseen: Examples, out: Path, work: Path, n_way: int,
               k_shot: int, queries: int, episodes: int) -> list[dict[str, Any]]:
    """Meta-train each strategy on the seen classes, then score it on the same episodes of the unseen ones."""
    backbone = setup.backbone
    test_rows = encode(unseen, backbone.tokenizer, input_length(configs[0][1].data, backbone), backbone.input_prefix)
    rows = []
    for name, cfg in configs:
        run = run_one(cfg.model_copy(update={"output": str(out / name)}), setup, work / name)
        strategy = get_strategy(cfg.strategy.name)(cfg.strategy)
        accs = episode_accuracies(strategy, run.module, test_rows, n_way, k_shot, queries, episodes, cfg.train.seed,
                                  backbone.tokenizer.pad_token_id or 0)
        mean, ci = confidence(accs)
        log.info("%s: %d-way %d-shot accuracy %.3f +- %.3f on held-out classes", name, n_way, k_shot, mean, ci)
        rows.append({"run": name, "strategy": cfg.strategy.name, "accuracy": mean, "ci95": ci,
                     "seen_classes_accuracy": run.metrics["eval"]["accuracy"], "trainable_params": run.metrics["trainable_params"],
                     "train_seconds": run.metrics["train_seconds"]})
        del run  # its weights are freed before the next run, so that run's peak memory is its own
    return rows


def _stages(recipe: dict[str, Any], more: dict[str, Any], configs: list[tuple[str, RunConfig]]) -> list[tuple[str, RunConfig]]:
    """The recipe's stages, checked before anything runs: names apart from the strategies', every ``@name`` one of them."""
    stages = plan_stages(recipe, more) if recipe.get("stages") else []
    check_names(stages, configs)
    return stages


def episodic_table(rows: list[dict[str, Any]], classes: dict[str, list[str]], s: dict[str, Any]) -> list[str]:
    lines = [f"# Episodic evaluation: {s['n_way']}-way {s['k_shot']}-shot, {s['episodes']} episodes of {s['queries']} queries per class", "",
             f"Backbone `{s['backbone']}`{_from_stages(s)}, data `{s['data']}`. Meta-train classes: {', '.join(classes['meta_train'])}; "
             f"meta-test classes (never seen in training): {', '.join(classes['meta_test'])}. Seed {s['seed']}; every "
             f"strategy is scored on the same episodes.", "",
             "| strategy | episode accuracy | 95% CI | accuracy on seen classes | trainable params | train time (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['accuracy']:.4f} | ± {r['ci95']:.4f} | {r['seen_classes_accuracy']:.4f} | "
                     f"{r['trainable_params']:,} | {r['train_seconds']:.1f} |")
    return lines


def _from_stages(s: dict[str, Any]) -> str:
    stages = s.get("stages") or []
    return f" (after the recipe's stages {', '.join(f'`{n}`' for n in stages)}, run first)" if stages else ""
