"""What a strategy will cost on this machine and this data, from a few timed steps (``adaptlab recommend``).

Each candidate trains for two short epochs on a small sample of the user's training rows through
the shared loop (the same hooks, caching and batches as a real run), at a fixed rate so no range
test runs. The first epoch holds the one-off work (feature caching, building the model's caches),
the second only steps; the real run's training time is then extrapolated the way its loop plans it::

    train time = one-off x N/n + per-epoch x N/n x epochs + range test (lr_find.budget's steps) + evaluation passes

with ``epochs`` settled as ``epochs: auto`` would settle them (at least ``min_steps`` optimiser
steps, at most ``max_epochs``). Peak memory is the sample run's (same model, optimiser, batch size
and lengths); the artefact size is the sample run's saved model, which does not depend on the data.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLE = 96
"""Training rows the timed epochs use."""
EVAL_SAMPLE = 64


@dataclass
class Estimate:
    """One strategy's estimated costs for the full run."""

    strategy: str
    train_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    artifact_mb: float
    trainable_params: int
    epochs: int
    epoch_seconds: float = 0.0
    """One epoch's share of ``train_seconds`` (full data): a run that stops early is compared with the estimate
    for the epochs it ran (``train_seconds - epoch_seconds x epochs not run``), not for the ones it skipped."""

    def as_dict(self) -> dict[str, Any]:
        # four significant figures: a positive estimate never rounds to 0 (a probe on cached features takes milliseconds)
        return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in self.__dict__.items()}


def steps_per_epoch(cfg: Any, n_train: int) -> int:
    """Optimiser steps in one pass over ``n_train`` rows (one process), as the loop plans them."""
    return max(1, math.ceil(math.ceil(n_train / cfg.batch_size) / cfg.grad_accum))


def planned_epochs(cfg: Any, n_train: int) -> int:
    """The epochs the loop will run: as set, or what ``epochs: auto`` gives ``n_train`` rows."""
    if isinstance(cfg.epochs, int):
        return cfg.epochs
    return min(cfg.max_epochs, max(1, math.ceil(cfg.min_steps / steps_per_epoch(cfg, n_train))))


def extrapolate(first: float, second: float, n_sample: int, n_train: int, epochs: int, step_seconds: float,
                eval_seconds_per_row: float, n_select: int, n_eval: int, range_test: bool,
                lr_find_steps: int = 40) -> tuple[float, float, float]:
    """(train seconds, wall seconds, one epoch's seconds) of the full run from the sample's two epoch times (see the
    module docstring)."""
    scale = n_train / max(n_sample, 1)
    epoch = max(second, 1e-6) * scale
    once = max(first - second, 0.0)
    train = once * scale + epoch * epochs + (lr_find_steps * step_seconds if range_test else 0.0)
    wall = train + eval_seconds_per_row * (n_select * epochs + n_eval)
    return train, wall, epoch


def sampled(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """A seeded random ``n`` of ``rows`` (files are often sorted by label: the first rows may hold one class)."""
    import random

    return rows if len(rows) <= n else [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]


def estimate(cfg: Any, setup: Any) -> Estimate:
    """Time two sample epochs of ``cfg``'s strategy on ``setup``'s rows; extrapolate (``cfg``: a RunConfig)."""
    from ..eval.measure import PeakMemory, folder_bytes
    from ..strategies.base import Task, get_strategy, hook, save_pretrained
    from ..training.loop import EPOCH_END, fit, score
    from ..training.lr_find import budget
    from ..training.runner import prepare_module, resolve_train, run_task_type

    strategy = get_strategy(cfg.strategy.name)(cfg.strategy)
    task_type = run_task_type(strategy, setup, cfg)
    full = resolve_train(cfg, task_type)
    sample_cfg = full.model_copy(update={"epochs": 2, "lr": full.lr if isinstance(full.lr, float) else 1e-4, "progress": False,
                                         "checkpoint_every": None, "patience": None, "report_to": []})
    rows = sampled(setup.train_rows, SAMPLE)
    task = Task(setup.data.labels, setup.backbone, sample_cfg, type=task_type, run_config=cfg)
    stamps: list[float] = []
    token = EPOCH_END.set(lambda epoch, scores: stamps.append(time.perf_counter()))
    pad = setup.backbone.tokenizer.pad_token_id or 0
    try:
        with PeakMemory() as memory:
            module = prepare_module(strategy, task)
            started = time.perf_counter()
            module, state = fit(strategy, module, rows, [], sample_cfg, pad_token_id=pad, task_type=task_type)
            probe_rows = sampled(setup.val_rows or setup.eval_rows, EVAL_SAMPLE)
            tick = time.perf_counter()
            score(strategy, module, probe_rows, sample_cfg, pad_token_id=pad, task_type=task_type)
            eval_per_row = (time.perf_counter() - tick) / max(len(probe_rows), 1)
    finally:
        EPOCH_END.reset(token)
    folder = Path(tempfile.mkdtemp(prefix="adaptlab-estimate-"))
    try:
        hook(strategy, "save", save_pretrained)(module, folder, task)
        size = folder_bytes(folder) / 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    first, second = stamps[0] - started, stamps[1] - stamps[0]
    steps = max(state.step / 2, 1)
    epochs = planned_epochs(full, len(setup.train_rows))
    probe = budget(full, epochs * steps_per_epoch(full, len(setup.train_rows)))
    train, wall, epoch_seconds = extrapolate(first, second, len(rows), len(setup.train_rows), epochs, second / steps,
                                             eval_per_row, len(setup.val_rows), len(setup.eval_rows),
                                             full.lr in (None, "auto") and probe > 0, probe)
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return Estimate(cfg.strategy.name, train, wall, memory.mb, size, trainable, epochs, epoch_seconds)


def for_epochs(est: dict[str, Any], epochs_run: int | None) -> tuple[float, str]:
    """The estimated training seconds for the epochs a run actually ran, and a note when it stopped early
    (patience ended it before the planned epochs: the skipped epochs' time was never spent)."""
    planned = est.get("epochs") or 0
    if not epochs_run or epochs_run >= planned or not est.get("epoch_seconds"):
        return est["train_seconds"], ""
    seconds = est["train_seconds"] - est["epoch_seconds"] * (planned - epochs_run)
    return max(seconds, 0.0), f" (stopped early: estimate for {epochs_run} of {planned} epochs)"


def estimates_section(estimates: dict[str, dict[str, Any]] | None, rows: list[dict[str, Any]]) -> list[str]:
    """The report's "Estimated before, measured after" table for a comparison run from ``adaptlab recommend``'s plan."""
    if not estimates:
        return []
    lines = ["", "## Estimated (adaptlab recommend) and measured", "",
             "| strategy | train time: estimated | measured | ratio | peak memory (MB): estimated | measured | size (MB): estimated | measured |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        est = estimates.get(r.get("group") or r["run"]) or estimates.get(r.get("strategy"))
        if not est:
            continue
        expected, note = for_epochs(est, r.get("epochs_run"))
        ratio = r["train_seconds"] / expected if expected else float("nan")
        lines.append(f"| {r['run']}{note} | {_minutes(expected)} | {_minutes(r['train_seconds'])} | {ratio:.2f} | "
                     f"{est['peak_memory_mb']:,.0f} | {r['peak_memory_mb']:,.0f} | {_mb(est['artifact_mb'])} | "
                     f"{_mb((r.get('artifact_bytes') or 0) / 1e6)} |")
    return lines + ["", "Ratio: measured / estimated training time (within 0.5-2 is what the estimate aims for); a run that "
                    "stopped early is compared with the estimate for the epochs it ran."]


def _mb(mb: float) -> str:
    return f"{mb:.1f}" if mb >= 1 else f"{mb:.2g}"  # a probe's head is kilobytes: not "0.0"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
