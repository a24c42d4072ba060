"""KTO on unpaired feedback: real answers rated one at a time, never two for the same prompt.

The data is made from the bundled verses-preference pairs (a French verse; chosen: modern English, World English
Bible; rejected: archaic English, King James) the way thumbs-up/down logs look: 384 training prompts (the
preference recipe's sampling, ``max_train`` 384), each with *one* answer -- its modern translation marked true or
its archaic one marked false, by a seeded coin -- so no prompt has a pair. Held out: the preference recipe's 48
test prompts with both answers (96 rows), so the gap between desirable and undesirable answers is measured on the
same prompts. Like the preference recipe, it starts from the archaic SFT model (stage ``sft-kjv``, the same
settings) and a reward model (stage ``rm``, the same settings) judges what each row writes.

Rows: ``start`` (the archaic SFT model as it is) and ``kto`` (full fine-tuning, beta 0.1, lr 1e-5, 2 epochs: the
preference recipe's KTO row, on 384 unpaired answers instead of 192 pairs = 384 answers). Reported: the held-out
per-token log-prob gap (desirable minus undesirable), KTO's reward gap, chrF of the generated answers against the
modern and the archaic translations, the share of archaic words (``eval/style.py``), the judge's mean reward and
win rate over ``start``, training seconds and peak memory.

    .venv/bin/python bench/kto_unpaired.py            # about 20 minutes on 2 CPU cores

Writes ``bench/results/kto_unpaired.json`` and ``.md`` (the feedback files: ``bench/runs/kto-unpaired-data/``).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _env import ROOT, environment  # noqa: E402

SYSTEM = "You translate French into English."


def write_feedback(folder: Path, n_train: int, seed: int) -> tuple[Path, Path]:
    """The unpaired training rows and the held-out rows (both answers), from the preference recipe's splits."""
    from adaptlab.config import load_config
    from adaptlab.tasks import get_task_type

    cfg = load_config({"backbone": "smollm2-135m", "data": {"task": "preference", "train": "verses-preference",
                                                            "eval": "verses-preference-test", "max_train": n_train, "max_eval": 48,
                                                            "validation_fraction": 0}})
    data = get_task_type("preference").load(cfg.data, cfg.train.seed)
    coin = random.Random(seed)
    train = []
    for prompt, good, bad in zip(data.train.prompts, data.train.chosen.references, data.train.rejected.references):
        keep = coin.random() < 0.5
        train.append({"prompt": prompt, "completion": good if keep else bad, "label": "true" if keep else "false"})
    held_out = [row for prompt, good, bad in zip(data.eval.prompts, data.eval.chosen.references, data.eval.rejected.references)
                for row in ({"prompt": prompt, "completion": good, "label": "true"},
                            {"prompt": prompt, "completion": bad, "label": "false"})]
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "train.csv", folder / "test.csv"
    for path, rows in zip(paths, (train, held_out)):
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["prompt", "completion", "label"])
            writer.writeheader()
            writer.writerows(rows)
    return paths


def recipe(train: Path, test: Path) -> dict:
    pairs = {"train": "verses-preference", "eval": "verses-preference-test", "max_train": 192, "max_eval": 48}
    return {
        "backbone": "smollm2-135m",
        "data": {"task": "feedback", "train": str(train), "eval": str(test), "max_length": 256, "validation_fraction": 0,
                 "system": SYSTEM},
        "train": {"batch_size": 8, "eval_batch_size": 16, "dropout": 0.0},
        "generation": {"max_new_tokens": 80, "batch_size": 16},
        "stages": [{"name": "sft-kjv", "data": {"task": "sft", "response_column": "rejected", **pairs}, "strategy": "full",
                    "train": {"epochs": 1, "lr": 5.0e-5}},
                   {"name": "rm", "data": {"task": "preference", **pairs}, "strategy": {"name": "reward_model", "method": "lora"},
                    "train": {"epochs": 1, "lr": 3.0e-4}}],
        "judge": {"reward_model": "@rm", "baseline": "start"},
        "strategies": [{"name": "zero_shot", "label": "start", "backbone": "@sft-kjv"},
                       {"name": "kto", "backbone": "@sft-kjv", "method": "full", "beta": 0.1, "train": {"epochs": 2, "lr": 1.0e-5}}],
    }


def measured(folder: Path) -> list[dict]:
    from adaptlab.eval.generation import text_metrics
    from adaptlab.eval.style import archaic_rate

    results = json.loads((folder / "results.json").read_text())
    rows = []
    for r in results["runs"]:
        if r["run"] not in ("start", "kto"):
            continue
        gen = [json.loads(line) for line in (folder / r["run"] / "generations.jsonl").read_text().splitlines()]
        good = [g for g in gen if g["desirable"]]
        bad = [g for g in gen if not g["desirable"]]
        rows.append({"run": r["run"], "gap": r["eval"]["gap"], "reward_gap": r["eval"].get("reward_gap"),
                     "chrf_modern": text_metrics([g["output"] for g in good], [g["reference"] for g in good])["chrf"],
                     "chrf_archaic": text_metrics([g["output"] for g in bad], [g["reference"] for g in bad])["chrf"],
                     "archaic_rate": archaic_rate([g["output"] for g in good]),  # each prompt once
                     "judge_reward": (r.get("judge") or {}).get("reward"), "judge_win_rate": (r.get("judge") or {}).get("win_rate"),
                     "train_seconds": r["train_seconds"], "peak_memory_mb": r["peak_memory_mb"]})
    return rows


def fmt(value: object, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "bench" / "runs" / "kto-unpaired")
    parser.add_argument("--train", type=int, default=384, help="training prompts (one rated answer each)")
    parser.add_argument("--seed", type=int, default=0, help="the coin that keeps a prompt's modern or its archaic answer")
    args = parser.parse_args()
    train, test = write_feedback(ROOT / "bench" / "runs" / "kto-unpaired-data", args.train, args.seed)
    wall = None
    if not (args.folder / "results.json").is_file():
        import adaptlab

        started = time.perf_counter()
        adaptlab.compare(recipe=recipe(train, test), output=str(args.folder), resume=(args.folder.parent / f"{args.folder.name}.partial").exists())
        wall = time.perf_counter() - started
    rows = measured(args.folder)
    env = environment()
    kept = sum(1 for line in train.read_text().splitlines()[1:] if line.endswith("true"))
    out = ROOT / "bench" / "results"
    (out / "kto_unpaired.json").write_text(json.dumps({"environment": env, "settings": vars(args) | {"folder": str(args.folder)},
                                                       "desirable_train_rows": kept, "wall_seconds": wall, "rows": rows}, indent=2))
    lines = [f"# KTO on unpaired feedback (SmolLM2-135M-Instruct, archaic SFT start, full fine-tuning; {args.train} training prompts "
             f"with one rated answer each, {kept} desirable; 48 held-out prompts with both answers; {env['date']})", "",
             f"Command: `.venv/bin/python bench/kto_unpaired.py` (commit {env['commit']}{'; %.0f min' % (wall / 60) if wall else ''})", "",
             "| row | log-prob gap (desirable − undesirable, per token) | reward gap | chrF vs modern | chrF vs archaic | archaic words "
             "| win rate vs start (RM) | mean reward (RM) | train s | peak memory (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['gap']:.3f} | {fmt(r['reward_gap'], '.2f')} | {r['chrf_modern']:.1f} | {r['chrf_archaic']:.1f} | "
                     f"{r['archaic_rate']:.3f} | {fmt(r['judge_win_rate'], '.3f')} | {fmt(r['judge_reward'], '.2f')} | "
                     f"{r['train_seconds']:.0f} | {r['peak_memory_mb']:,.0f} |")
    (out / "kto_unpaired.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
