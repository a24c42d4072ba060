"""One timing rule for every side-by-side (issue 27): the same span on both sides, fixed costs apart.

- **fit**: from a loaded model and the training rows to a trained model in memory. adaptlab: the loop's ``fit``
  span (metrics.json ``timing.fit``: building the loaders, cached frozen computation, the range test when the
  learning rate is ``auto``, the optimiser steps; its per-epoch evaluation and checkpoints are switched off in
  the benches, or listed). The anchor: constructing its Trainer (Accelerate set-up; TRL also tokenises there, and
  with ``precompute_ref_log_probs`` scores the reference) plus ``train()``. Warm-up is inside on both sides.
- **steps**: the optimiser steps alone (adaptlab ``timing.steps``; the anchor's ``train()``): per-step throughput
  is the units trained on (examples or non-padding tokens) over this.
- **fixed costs**, each side's own: load (data and model), evaluation, the forgetting probe, saving.
- **end to end**: from the call (imports excluded on both sides) to a finished folder on disk: adaptlab's
  ``adaptlab.train``, the anchor's load + trainer + train + its own evaluation + ``save_model``.

Each table prints both spans and the ratio of each, so a per-step speed-up is never read as the wait a user has.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from _env import environment

RESULTS = Path(__file__).parent / "results"


@dataclass
class Side:
    """One path's measurements (seconds unless named otherwise)."""

    path: str
    fit_s: float
    steps_s: float
    units: int
    """What the throughput counts (examples or non-padding tokens), trained on in ``steps_s``."""
    end_to_end_s: float
    fixed: dict[str, float] = field(default_factory=dict)
    """Costs outside ``fit``: load, evaluation, probe, save (and, inside it, the range test: named ``in fit:``)."""
    peak_mb: float | None = None
    quality: dict[str, float] = field(default_factory=dict)
    """The trained model's score (accuracy, loss...), so a faster side is not a side that did less."""

    @property
    def per_second(self) -> float:
        return self.units / self.steps_s if self.steps_s else 0.0


class Clock:
    """Wall time of a block; synchronises CUDA at the end so queued work is counted. ``peak``: also the block's
    peak GPU memory (``peak_mb``; NaN without a GPU) -- blocks nested inside one time with a plain ``Clock``,
    which resets nothing."""

    def __init__(self, peak: bool = False):
        self.peak = peak

    def __enter__(self) -> Clock:
        gc.collect()
        if self.peak and torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.start
        if self.peak:
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")


def loss_log() -> tuple[object, list[float]]:
    """A ``TrainerCallback`` that keeps every training loss the Trainer logs, and the list it fills."""
    from transformers import TrainerCallback

    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return Losses(), losses


def load_causal_lm(name: str, seed: int) -> tuple[object, torch.nn.Module]:
    """A bundled backbone (its tokenizer) and its causal LM in fp32, seeded first: the anchor's starting model."""
    from transformers import AutoModelForCausalLM

    from adaptlab.models.backbones import load_backbone

    backbone = load_backbone(name)
    torch.manual_seed(seed)
    return backbone, AutoModelForCausalLM.from_pretrained(backbone.source, dtype=torch.float32)


def adaptlab_side(path: str, metrics: dict, end_to_end_s: float, unit: str, quality: dict[str, float]) -> Side:
    """A Side from an adaptlab run's metrics.json: ``unit`` is ``examples`` or ``tokens``."""
    t = metrics["timing"]
    units = round(metrics[f"train_{unit}_per_second"] * metrics["train_seconds"])  # what the loop counted
    fixed = {k: t[k] for k in ("load", "prepare", "score_before", "forgetting_probe", "final_eval", "save") if t.get(k)}
    fixed.update({f"in fit: {k}": t[k] for k in ("precompute", "range_test", "epoch_eval", "checkpoint") if t.get(k)})
    return Side(path, t["fit"], t["steps"], units, end_to_end_s, fixed, metrics.get("peak_memory_mb"), quality)


def table(sides: list[Side], unit: str, base: int = -1) -> list[str]:
    """Markdown rows: each side's spans and throughput, and its ratio to ``sides[base]`` (adaptlab: the last)."""
    ref = sides[base]
    lines = [f"| path | fit s (same span) | steps s | {unit}/s in steps | end-to-end s | fixed costs s | peak MB | "
             f"quality | fit: {ref.path} speed-up | {unit}/s: {ref.path} / path | end-to-end: {ref.path} speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in sides:
        fixed = ", ".join(f"{k} {v:.1f}" for k, v in s.fixed.items())
        quality = ", ".join(f"{k} {v:.4g}" for k, v in s.quality.items())
        mine = s is ref
        lines.append(f"| {s.path} | {s.fit_s:.1f} | {s.steps_s:.1f} | {s.per_second:,.1f} | {s.end_to_end_s:.1f} | {fixed} | "
                     f"{'' if s.peak_mb is None else f'{s.peak_mb:,.0f}'} | {quality} | "
                     f"{'' if mine else f'{s.fit_s / ref.fit_s:.2f}x'} | "
                     f"{'' if mine else f'{ref.per_second / max(s.per_second, 1e-9):.2f}x'} | "
                     f"{'' if mine else f'{s.end_to_end_s / ref.end_to_end_s:.2f}x'} |")
    return lines


def write(name: str, text: str, data: dict, started: float) -> None:
    """``bench/results/NAME.md`` and ``NAME.json`` (with the environment and the whole run's wall time)."""
    RESULTS.mkdir(exist_ok=True)
    env = {**environment(("torch", "transformers", "peft", "accelerate", "trl", "adaptlab")),
           "wall_seconds": round(time.perf_counter() - started, 1)}
    (RESULTS / f"{name}.md").write_text(text.rstrip() + f"\n\nEnvironment: {json.dumps(env)}\n", encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps({"environment": env, **data}, indent=2, default=_plain) + "\n",
                                          encoding="utf-8")


def _plain(obj: object) -> object:
    return asdict(obj) if isinstance(obj, Side) else str(obj)
