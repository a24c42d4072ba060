"""The preference recipe's objectives side by side: SFT (archaic) -> DPO, ORPO, SimPO, KTO, GRPO, judged on the same prompts.

Runs ``adaptlab compare preference --strategies sft-as-is,dpo,orpo,simpo,kto,grpo`` (its stages first: the archaic
SFT model every row starts from, and the reward model that judges -- and that is GRPO's reward) unless the
comparison folder already holds it,
then reads its ``results.json``: per row, on the 48 held-out prompts of verses-preference-test, the share of
pairs whose chosen answer is likelier, DPO's reward accuracy (rows with a cached reference: dpo, kto), chrF of
the generated answers against the chosen and the rejected translations, the share of archaic words, and the
judge's mean reward and win rate over the archaic SFT model; training seconds and peak memory. GRPO's row
trains on the pairs' prompts as an sft task, so its evaluation has no pairs to rank (likelihood and reward
accuracy: "–"); chrF against the rejected answers and the archaic-word share are computed here from its
``generations.jsonl`` the way the preference task computes them (``tasks/preference.py``), the rejected
answers taken from the baseline row's generations of the same prompts.

    .venv/bin/python bench/preference_objectives.py           # about 60 minutes on 2 CPU cores

Writes ``bench/results/preference_objectives.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = "sft-as-is,dpo,orpo,simpo,kto,grpo"


def fmt(value: object, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def generations(folder: Path) -> list[dict]:
    path = folder / "generations.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


def text_measures(folder: Path, run: str, baseline: str | None) -> dict:
    """chrF vs the rejected answers and the archaic-word share of a row whose task did not measure them."""
    from adaptlab.eval.generation import text_metrics
    from adaptlab.eval.style import archaic_rate

    mine, base = generations(folder / run), generations(folder / baseline) if baseline else []
    rejected = {(i, g["prompt"]): g.get("rejected") for i, g in enumerate(base)}
    pairs = [(g["output"], rejected.get((i, g["prompt"]))) for i, g in enumerate(mine)]
    if not mine or any(r is None for _, r in pairs):
        return {}
    outputs = [o for o, _ in pairs]
    return {"chrf_rejected": text_metrics(outputs, [r for _, r in pairs])["chrf"], "archaic_rate": archaic_rate(outputs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "bench" / "runs" / "preference-objectives")
    parser.add_argument("--rows", default=ROWS, help="the recipe rows to run and tabulate (labels)")
    args = parser.parse_args()
    wall = None
    if not (args.folder / "results.json").is_file():
        started = time.perf_counter()
        resume = ["--resume"] if (args.folder.parent / f"{args.folder.name}.partial").exists() else []  # an interrupted run
        subprocess.run([str(Path(sys.executable).parent / "adaptlab"), "compare", "preference", "--strategies", args.rows,
                        "-o", str(args.folder), *resume], check=True)
        wall = time.perf_counter() - started
    results = json.loads((args.folder / "results.json").read_text())
    runs = [r for r in results["runs"] if r["run"] in args.rows.split(",")]
    baseline = (results.get("judge") or {}).get("baseline")
    for r in runs:
        if r["eval"].get("archaic_rate") is None:
            r["eval"] = {**r["eval"], **text_measures(args.folder, r["run"], baseline)}
    rows = [{"run": r["run"], "strategy": r["strategy"], **{k: r["eval"].get(k) for k in (
        "likelihood_accuracy", "reward_accuracy", "margin", "chrf", "chrf_rejected", "archaic_rate")},
        "judge_reward": (r.get("judge") or {}).get("reward"), "judge_win_rate": (r.get("judge") or {}).get("win_rate"),
        "train_seconds": r["train_seconds"], "peak_memory_mb": r["peak_memory_mb"], "versions": r["versions"]} for r in runs]
    out = ROOT / "bench" / "results"
    env = {"date": time.strftime("%Y-%m-%d"), **(rows[0]["versions"] if rows else {})}
    (out / "preference_objectives.json").write_text(json.dumps({"environment": env, "wall_seconds": wall, "judge": results["judge"],
                                                                "rows": rows}, indent=2))
    lines = [f"# Preference objectives from the archaic SFT model (SmolLM2-135M-Instruct; DPO, SimPO, KTO: full fine-tuning "
             f"of the archaic SFT model, 192 pairs, 2 epochs; ORPO: full, from the instruction model; GRPO: LoRA on the archaic "
             f"SFT model, 96 of the prompts, G 4, the reward model as reward; 48 held-out prompts; {env['date']})", "",
             f"Command: `.venv/bin/python bench/preference_objectives.py --rows {args.rows}` (runs `adaptlab compare preference "
             f"--strategies {args.rows}`{'; %.0f min' % (wall / 60) if wall else ''})", "",
             "| row | chosen likelier | reward accuracy (margin) | chrF vs chosen | chrF vs rejected | archaic words | "
             "win rate vs archaic SFT (RM) | mean reward (RM) | train s | peak memory (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        accuracy = f"{r['reward_accuracy']:.3f} ({r['margin']:.1f})" if r["reward_accuracy"] is not None else "–"
        lines.append(f"| {r['run']} | {fmt(r['likelihood_accuracy'], '.3f')} | {accuracy} | {fmt(r['chrf'], '.1f')} | "
                     f"{fmt(r['chrf_rejected'], '.1f')} | {fmt(r['archaic_rate'], '.3f')} | {fmt(r['judge_win_rate'], '.3f')} | "
                     f"{fmt(r['judge_reward'], '.2f')} | {r['train_seconds']:.0f} | {r['peak_memory_mb']:,.0f} |")
    anchors = (results.get("judge") or {}).get("anchors") or {}
    if anchors:
        lines += ["", "The reward model's mean reward of the reference answers: " +
                  ", ".join(f"{k} {v:.2f}" for k, v in anchors.items()) + "."]
    (out / "preference_objectives.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
