"""Several seeds per strategy: mean ± std, a 95 % interval, and which differences are within noise.

``adaptlab compare --seeds N`` runs every strategy N times, with ``train.seed`` = s, s+1, ... Each seed
draws the initialisation and the batch order anew on the first seed's split; with ``--resplit`` it also
draws the held-out split, the validation split and the few-shot examples anew, so the spread is what
re-running the comparison on new data would show. The report then gives, per
strategy, the mean and sample standard deviation of the primary metric over the seeds and the 95 %
t-interval of the mean (Student's t: with 3 seeds the interval is wide, and says so); and, paired by seed
(both strategies saw the same split at each seed), the difference between the best strategy and each
other one with its own t-interval. A difference whose interval contains 0 is *within noise*, and the
recommendation is the cheapest strategy (training time) whose difference from the best is within noise.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        15: 2.131, 20: 2.086, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
"""Student's t quantile 0.975 by degrees of freedom (the nearest tabulated one below, a little conservative;
1.96 beyond 120)."""


def t975(df: int) -> float:
    if df > 120:
        return 1.96
    return T975[max(k for k in T975 if k <= df)]


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the mean's 95 % t-interval (NaN for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    std = statistics.stdev(values)
    return mean, std, t975(len(values) - 1) * std / math.sqrt(len(values))


def seed_list(first: int, n: int) -> list[int]:
    return [first + i for i in range(n)]


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per strategy (``group``) with its scores by seed, in the rows' order; only groups with a score."""
    groups: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("score") is None:
            continue
        g = groups.setdefault(r.get("group") or r["run"], {"run": r.get("group") or r["run"], "by_seed": {}, "seconds": [],
                                                            "trainable_params": r.get("trainable_params"), "metric": r["metric"]})
        g["by_seed"][r.get("seed")] = r["score"]
        if r.get("learned") == "no":  # flagged by eval/diagnosis.py: at or below the majority class
            g.setdefault("did_not_learn", []).append(r.get("seed"))
        g.setdefault("splits", set()).add(r.get("split_seed"))
        g["seconds"].append(r.get("train_seconds") or 0.0)
    for g in groups.values():
        g["mean"], g["std"], g["half"] = interval(list(g["by_seed"].values()))
        g["train_seconds"] = statistics.fmean(g["seconds"])
    return list(groups.values())


def best_group(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest mean among the strategies that ran every seed (a one-seed stage is no rival)."""
    n = max(len(g["by_seed"]) for g in groups)
    return max((g for g in groups if len(g["by_seed"]) == n), key=lambda g: g["mean"])


def paired(best: dict[str, Any], other: dict[str, Any]) -> tuple[float, float, int]:
    """Mean of (best - other) over the seeds both ran, the half-width of its 95 % t-interval, and how many."""
    seeds = [s for s in best["by_seed"] if s in other["by_seed"]]
    diffs = [best["by_seed"][s] - other["by_seed"][s] for s in seeds]
    mean, _, half = interval(diffs) if diffs else (float("nan"), float("nan"), float("nan"))
    return mean, half, len(seeds)


def within_noise(mean: float, half: float) -> bool:
    """The paired interval contains 0 (False when it could not be formed: fewer than two shared seeds)."""
    return not math.isnan(half) and mean - half <= 0


def group_of(name: str) -> str:
    """The strategy entry a run belongs to: ``lora-seed43`` -> ``lora``."""
    head, _, tail = name.rpartition("-seed")
    return head if head and tail.isdigit() else name


def split_note(groups: list[dict[str, Any]]) -> str:
    """Which data varied with the seed (rows carry ``split_seed``: the same for every seed unless ``--resplit``)."""
    splits = set().union(*(g.get("splits", {None}) for g in groups))
    if len(splits) == 1 and None not in splits:
        return "Each seed re-draws the initialisation and the batch order on one split of the data (--resplit: the split too)."
    return "Each seed re-draws the split, the initialisation and the batch order."


def seeds_section(groups: list[dict[str, Any]]) -> list[str]:
    """The over-seeds table, the paired differences from the best, and the recommendation they support."""
    if not groups or max(len(g["by_seed"]) for g in groups) < 2:
        return []
    metric = groups[0]["metric"]
    best = best_group([g for g in groups if not g.get("did_not_learn")] or groups)  # the recommendation's best too
    n = max(len(g["by_seed"]) for g in groups)
    lines = ["", f"## Over {n} seeds", "",
             f"{split_note(groups)} {metric}: mean ± standard deviation over "
             f"the seeds, the 95 % t-interval of the mean, and the paired difference from the best strategy (same seed, "
             f"same split) with its own 95 % t-interval; *within noise* when that interval contains 0.", "",
             f"| strategy | {metric} (mean ± std) | 95 % interval | per seed | Δ from {best['run']} (95 % interval) | | train time (s, mean) |",
             "|---|---|---|---|---|---|---|"]
    for g in groups:
        seeds = ", ".join(f"{v:.3f}" for v in g["by_seed"].values())
        low, high = g["mean"] - g["half"], g["mean"] + g["half"]
        if g is best:
            delta, verdict = "–", "best"
        else:
            mean, half, shared = paired(best, g)
            delta = f"{-mean:+.3f} [{-mean - half:+.3f}, {-mean + half:+.3f}]" if shared > 1 else "–"
            verdict = "not tested (fewer than 2 shared seeds)" if shared < 2 else "within noise" if within_noise(mean, half) else "worse"
        if g.get("did_not_learn"):
            verdict = f"did not learn (seed {', '.join(map(str, g['did_not_learn']))})"
        lines.append(f"| {g['run']} | {g['mean']:.3f} ± {g['std']:.3f} | [{low:.3f}, {high:.3f}] | {seeds} | {delta} | {verdict} | "
                     f"{g['train_seconds']:.1f} |")
    return lines


def recommend_over_seeds(groups: list[dict[str, Any]]) -> str:
    """The cheapest strategy (mean training time) no worse than the best beyond noise, among those that learned
    on every seed (a strategy flagged did-not-learn on any seed is never recommended, as with one seed)."""
    failed = [g["run"] for g in groups if g.get("did_not_learn")]
    groups = [g for g in groups if not g.get("did_not_learn")]
    if not groups:
        return f"No recommendation: no strategy learned more than the majority class on every seed ({', '.join(failed)})."
    best = best_group(groups)
    tied = [g for g in groups if g is best or within_noise(*paired(best, g)[:2])]
    cheap = min(tied, key=lambda g: g["train_seconds"])
    text = f"Over the seeds, **{best['run']}** has the best mean {best['metric']} ({best['mean']:.3f})."
    if failed:
        text += f" Not considered: {', '.join(failed)} (did not learn on some seed; see below)."
    if cheap is best:
        return text + " Every cheaper strategy is worse beyond noise: the recommendation."
    return (text + f" **{cheap['run']}** ({cheap['mean']:.3f}) is within noise of it and trains "
            f"{best['train_seconds'] / max(cheap['train_seconds'], 1e-9):.1f}x faster: the recommendation, "
            f"since the data cannot tell the two apart.")
