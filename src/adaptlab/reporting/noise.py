"""One seed's uncertainty: a bootstrap interval per run and McNemar's test between two runs.

With a single seed there is no spread over seeds to show, only the evaluation sample's: each
classification run records which evaluation examples it got right (``eval_correct``, in the evaluation
sampler's order, the same for every strategy of a comparison). The interval of a run's accuracy is the
percentile bootstrap over those examples (Efron & Tibshirani 1993, ch. 13; 2,000 resamples, seeded); two
runs are compared on the same examples with McNemar's test (McNemar 1947; the exact binomial test on the
examples exactly one of them got right, as recommended for small counts by Fagerland et al. 2013). Both
are a few lines over the standard library: scipy would be a dependency for one binomial tail.
The report says what this interval is: evaluation-sample noise only, not seed-to-seed variation.
"""

from __future__ import annotations

import math
import random
from typing import Any


def bootstrap_interval(correct: str, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of the accuracy behind a string of 0/1 per example."""
    values = [c == "1" for c in correct]
    n = len(values)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def mcnemar(a: str, b: str) -> tuple[int, int, float]:
    """Examples only ``a`` got right, only ``b`` got right, and the exact two-sided p-value."""
    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b))
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return only_a, only_b, 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return only_a, only_b, min(1.0, 2 * tail)


def comparable(rows: list[dict[str, Any]]) -> bool:
    """Every row has per-example results over the same number of examples (one evaluation set)."""
    lengths = {len(r.get("eval_correct") or "") for r in rows}
    return len(lengths) == 1 and 0 not in lengths


def noise_section(rows: list[dict[str, Any]]) -> list[str]:
    """Per run: the bootstrap interval; against the best run: McNemar's verdict (within noise at p >= 0.05)."""
    rows = [r for r in rows if r.get("eval_correct") and r.get("score") is not None]
    if len(rows) < 2 or not comparable(rows):
        return []
    best = max(rows, key=lambda r: r["score"])
    lines = ["", "## How much is noise (one seed)", "",
             f"95 % bootstrap interval of each accuracy over the {len(best['eval_correct'])} evaluation examples (sampling "
             "noise of the evaluation set only: a second seed would move the numbers as well; `--seeds N` measures that), "
             f"and McNemar's exact test against **{best['run']}** on the same examples.", "",
             "| strategy | accuracy | 95 % bootstrap interval | only it right / only best right | p | |", "|---|---|---|---|---|---|"]
    for r in rows:
        low, high = bootstrap_interval(r["eval_correct"])
        if r is best:
            lines.append(f"| {r['run']} | {r['score']:.3f} | [{low:.3f}, {high:.3f}] | – | – | best |")
            continue
        mine, theirs, p = mcnemar(r["eval_correct"], best["eval_correct"])
        lines.append(f"| {r['run']} | {r['score']:.3f} | [{low:.3f}, {high:.3f}] | {mine} / {theirs} | {p:.3f} | "
                     f"{'within noise' if p >= 0.05 else 'worse'} |")
    return lines


def within_noise_of_best(rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The runs McNemar cannot tell from the best (p >= 0.05), the best included; None without per-example data."""
    rows = [r for r in rows if r.get("eval_correct") and r.get("score") is not None]
    if len(rows) < 2 or not comparable(rows):
        return None
    best = max(rows, key=lambda r: r["score"])
    return [r for r in rows if r is best or mcnemar(r["eval_correct"], best["eval_correct"])[2] >= 0.05]
