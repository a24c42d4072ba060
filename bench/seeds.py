"""A bundled comparison repeated over several seeds: mean ± std and a 95 % t-interval per strategy.

Each seed changes the initialisation, the batch order and the examples drawn (``--shots`` draws its k
examples per class with the seed), so the spread is what a user re-running the recipe would see. Until
``adaptlab compare --seeds`` exists (issue 15) this is how the few-shot table of issue 17 is measured:

    python bench/seeds.py fewshot --seeds 42,43,44
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # t(0.975, n - 1)


def summary(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of the 95 % t-interval of the mean."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    std = statistics.stdev(values)
    return mean, std, T95.get(len(values) - 1, 1.96) * std / math.sqrt(len(values))


def main() -> None:
    import adaptlab
    from adaptlab.tasks import task_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--out", type=Path, default=Path("runs") / f"seeds-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    metric = "score"
    for seed in seeds:
        result = adaptlab.compare(recipe=args.recipe, output=args.out / f"seed-{seed}", overrides=[f"train.seed={seed}", *args.sets])
        for row in result.rows:
            metric = task_of(row).default_metric
            value = row["eval"].get(metric)
            if value is not None:
                scores.setdefault(row["run"], []).append(float(value))
                seconds.setdefault(row["run"], []).append(float(row["train_seconds"]))
    lines = [f"| strategy | {metric}: mean ± std ({len(seeds)} seeds) | 95 % interval | per seed | train s (mean) |", "|---|---|---|---|---|"]
    for run, values in scores.items():
        mean, std, half = summary(values)
        lines.append(f"| {run} | {mean:.3f} ± {std:.3f} | [{mean - half:.3f}, {mean + half:.3f}] | "
                     f"{', '.join(f'{v:.3f}' for v in values)} | {statistics.fmean(seconds[run]):.1f} |")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.md").write_text(f"# {args.recipe} over seeds {args.seeds}\n\n{text}\n")
    (args.out / "seeds.json").write_text(json.dumps({"seeds": seeds, "metric": metric, "scores": scores, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
