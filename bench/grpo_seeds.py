"""GRPO and RLOO on the bundled recipe (`adaptlab compare grpo`): the held-out reward before and after, per seed.

Runs the recipe with ``--seeds N`` (each objective once per seed: the same prompts, its own sampling and
initialisation) unless the comparison folder already holds it, then reads every run's ``metrics.json``: the
mean chrF reward of greedy answers to the 48 held-out prompts before training (its history's epoch 0) and
after (``eval.reward``), chrF (corpus) before and after, training seconds and peak memory.

    .venv/bin/python bench/grpo_seeds.py --seeds 2          # about 66 minutes on 2 CPU cores (2026-12-08)

Writes ``bench/results/grpo_seeds.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def runs(folder: Path) -> list[dict]:
    import yaml

    out = []
    for metrics in sorted(folder.glob("*/metrics.json")):
        m = json.loads(metrics.read_text())
        strategy = yaml.safe_load((metrics.parent / "config.yaml").read_text())["strategy"]
        start = next(h for h in m["history"] if h["epoch"] == 0)
        out.append({"run": metrics.parent.name, "objective": m["strategy"], "seed": m["seed"],
                    "beta": strategy["beta"], "lr": m["train_settings"].get("lr"),
                    "reward_before": start["reward"], "reward_after": m["eval"]["reward"],
                    "chrf_before": start["chrf"], "chrf_after": m["eval"]["chrf"], "train_seconds": m["train_seconds"],
                    "peak_memory_mb": m["peak_memory_mb"], "steps": m["train_settings"]["optimizer_steps"],
                    "versions": m["versions"]})
    return out


def write(rows: list[dict], args: argparse.Namespace, wall: float | None) -> None:
    results = ROOT / "bench" / "results"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    env = {"date": time.strftime("%Y-%m-%d"), "tabulated_at_commit": commit, **(rows[0]["versions"] if rows else {})}
    (results / "grpo_seeds.json").write_text(json.dumps({"environment": env, "settings": vars(args), "wall_seconds": wall,
                                                         "runs": rows}, indent=2))
    lines = [f"# GRPO and RLOO raise the held-out reward (SmolLM2-135M-Instruct, LoRA, 96 prompts, G 4, chrF reward; "
             f"48 held-out prompts, greedy answers; {env.get('date')})", "",
             f"Command: `.venv/bin/python bench/grpo_seeds.py --seeds {args.seeds}"
             f"{' --also ' + ' '.join(args.also) if getattr(args, 'also', None) else ''}` (runs `adaptlab compare grpo --seeds "
             f"{args.seeds}`; {'%.0f min' % (wall / 60) if wall else 'time: see the runs'})", "",
             "| objective | KL weight | seed | held-out reward before | after | Δ | chrF before | after | steps | train s | "
             "peak memory (MB) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['objective']} | {r['beta']:g} | {r['seed']} | {r['reward_before']:.4f} | {r['reward_after']:.4f} | "
                     f"{r['reward_after'] - r['reward_before']:+.4f} | {r['chrf_before']:.1f} | {r['chrf_after']:.1f} | {r['steps']} | "
                     f"{r['train_seconds']:.0f} | {r['peak_memory_mb']:,.0f} |")
    for objective, beta in sorted({(r["objective"], r["beta"]) for r in rows}):
        gains = [r["reward_after"] - r["reward_before"] for r in rows if (r["objective"], r["beta"]) == (objective, beta)]
        spread = f" ± {statistics.stdev(gains):.4f} (sd)" if len(gains) > 1 else ""
        lines.append(f"| **{objective}: mean Δ** | {beta:g} | {len(gains)} seed{'s' * (len(gains) > 1)} | | | "
                     f"**{statistics.mean(gains):+.4f}**{spread} | | | | | |")
    lines += ["", "Rows from `--also` folders are ablations made with the same recipe and one `--set` (here: RLOO at GRPO's KL "
              "weight, `adaptlab compare grpo --strategies rloo --set strategy.beta=0.04`). Training seconds are wall time on "
              f"2 cores, one run at a time (they rise when another job shares the cores); tabulated at commit {commit}."]
    (results / "grpo_seeds.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--folder", type=Path, default=ROOT / "bench" / "runs" / "grpo-seeds")
    parser.add_argument("--also", type=Path, nargs="*", default=[],
                        help="further comparison folders to tabulate (e.g. an ablation run with another --set)")
    args = parser.parse_args()
    wall = None
    if not any(args.folder.glob("*/metrics.json")):
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "adaptlab"), "compare", "grpo", "--seeds", str(args.seeds),
                        "-o", str(args.folder)], check=True)
        wall = time.perf_counter() - started
    rows = [r for folder in [args.folder, *args.also] for r in runs(folder)]
    write(rows, argparse.Namespace(seeds=args.seeds, also=[str(a) for a in args.also]), wall)


if __name__ == "__main__":
    main()
