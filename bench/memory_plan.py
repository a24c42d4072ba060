"""``adaptlab plan-memory`` against measured peaks: random-weight Llama shapes of ~0.1, ~0.5 and ~1 B parameters.

Each row is one run in a process of its own: the plan is made from the config alone (no weights), then
the same settings train for a few steps through ``adaptlab.train`` and ``metrics.json``'s
``peak_memory_mb`` is read (resident memory sampled every 20 ms from building the model to the end of
training). The models are random-weight Llama configs with SmolLM2's tokenizer (vocabulary 49,152, tied
embeddings), saved once under ``~/.cache/adaptlab/bench-shapes``; every row is cut to the same length, so
the batch the plan assumes (batch size x length) is the batch that runs. Also reported: seconds per
optimiser step (the training seconds over the steps; the first step included).

    .venv/bin/python bench/memory_plan.py                  # the validation table (~25 min on 2 cores)
    .venv/bin/python bench/memory_plan.py --rows calibration

Writes ``bench/results/memory_plan.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = {
    "llama-0.05b": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4, "intermediate_size": 1536},
    "llama-0.1b": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4, "intermediate_size": 2048},
    "llama-0.5b": {"hidden_size": 1280, "num_hidden_layers": 22, "num_attention_heads": 20, "num_key_value_heads": 4, "intermediate_size": 3840},
    "llama-1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 8192},
}
ROWS = {  # name: (shape, task, strategy, gradient checkpointing, batch, length)
    "calibration": [("llama-0.05b", "sft", "full", False, 4, 256), ("llama-0.05b", "sft", "lora", False, 4, 256),
                    ("llama-0.05b", "sft", "lora", True, 4, 256)],
    "validation": [("llama-0.1b", "sft", "full", False, 4, 256), ("llama-0.1b", "sft", "lora", False, 4, 256),
                   ("llama-0.1b", "sft", "lora", True, 4, 256),
                   ("llama-0.5b", "sft", "full", False, 4, 256), ("llama-0.5b", "sft", "lora", False, 4, 256),
                   ("llama-0.5b", "sft", "lora", True, 4, 256),
                   ("llama-1b", "sft", "full", False, 2, 128), ("llama-1b", "sft", "lora", False, 4, 256),
                   ("llama-1b", "sft", "lora", True, 4, 256),
                   ("llama-1b", "classification", "lora", False, 4, 256), ("llama-1b", "classification", "lora", True, 4, 256)],
}
STEPS = 3


def shape_folder(name: str) -> Path:
    """A saved random-weight model of the shape (built once)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from adaptlab.models.backbones import BUNDLED_MODELS, cache_dir

    folder = cache_dir() / "bench-shapes" / name
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_MODELS["smollm2-135m"].locate())
    config = LlamaConfig(vocab_size=len(tokenizer), tie_word_embeddings=True, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **SHAPES[name])
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config)
    tmp = folder.with_suffix(".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def data_file(task: str, rows: int, folder: Path) -> Path:
    """Rows longer than any length used here, so that every one is cut to exactly ``max_length`` tokens."""
    import csv

    path = folder / f"{task}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        if task == "sft":
            w = csv.DictWriter(f, fieldnames=["prompt", "response"])
            w.writeheader()
            w.writerows({"prompt": f"say word number {i}", "response": " ".join(["word"] * 600)} for i in range(rows))
        else:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows({"text": " ".join(["word"] * 600), "label": ("a", "b")[i % 2]} for i in range(rows))
    return path


def child(spec: list, out: Path) -> dict:
    import adaptlab
    from adaptlab.config import load_config
    from adaptlab.training.plan_memory import plan_memory

    shape, task, strategy, checkpointing, batch, length = spec
    folder = shape_folder(shape)
    rows = STEPS * batch + 2
    data = data_file(task, rows, out)
    settings = {"strategy": strategy, "backbone": str(folder), "output": str(out / "run"),
                "data": {"train": str(data), "task": task, "max_length": length, "validation_fraction": 0, "eval_fraction": 2 / rows},
                "train": {"epochs": 1, "lr": 1e-4, "batch_size": batch, "gradient_checkpointing": checkpointing, "progress": False,
                          "checkpoint_every": None},
                "generation": {"max_new_tokens": 1}}
    planned = plan_memory(load_config(settings), device="cpu")
    result = adaptlab.train(settings)
    m = result.metrics
    steps = m["train_settings"]["optimizer_steps"]
    return {"planned_mb": planned["plan"]["total"], "plan": planned["plan"], "measured_mb": m["peak_memory_mb"],
            "seconds_per_step": round(m["train_seconds"] / max(steps, 1), 2), "steps": steps,
            "total_params": planned["plan"]["total_params"], "trainable_params": m["trainable_params"]}


def environment() -> dict:
    import platform
    from importlib.metadata import version

    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "date": time.strftime("%Y-%m-%d"), "device": "cpu", "threads": torch.get_num_threads(),
            "python": platform.python_version(), **{p: version(p) for p in ("torch", "transformers", "peft", "adaptlab")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="validation", choices=sorted(ROWS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import logging

        logging.disable(logging.WARNING)
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT " + json.dumps(child(json.loads(args.child), Path(tmp))), flush=True)
        return
    results = []
    for spec in ROWS[args.rows]:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{spec} failed:\n{done.stderr[-3000:]}")
        row = {"shape": spec[0], "task": spec[1], "strategy": spec[2], "checkpointing": spec[3], "batch": spec[4], "length": spec[5],
               **json.loads(line[7:]), "wall_seconds": round(time.perf_counter() - started, 1)}
        row["error"] = round(row["planned_mb"] / row["measured_mb"] - 1, 3)
        results.append(row)
        print({k: v for k, v in row.items() if k != "plan"}, flush=True)
    write(args.rows, results)


def write(name: str, results: list[dict]) -> None:
    env = environment()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stem = "memory_plan" if name == "validation" else f"memory_plan_{name}"
    (out / f"{stem}.json").write_text(json.dumps({"environment": env, "rows": results}, indent=2), encoding="utf-8")
    lines = [f"# Planned vs measured peak memory ({env['device']}, {env['threads']} threads, torch {env['torch']}, commit {env['commit']}, "
             f"{env['date']})", "", f"Command: `.venv/bin/python bench/memory_plan.py --rows {name}` "
             f"(random-weight Llama shapes, SmolLM2 tokenizer, fp32, {STEPS} optimiser steps each)", "",
             "| shape | params | task | strategy | grad. ckpt | batch x length | planned (MB) | measured (MB) | error | s/step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['shape']} | {r['total_params'] / 1e9:.2f} B | {r['task']} | {r['strategy']} | {'on' if r['checkpointing'] else 'off'} | "
                     f"{r['batch']} x {r['length']} | {r['planned_mb']:,.0f} | {r['measured_mb']:,.0f} | {r['error']:+.0%} | "
                     f"{r['seconds_per_step']:.1f} |")
    worst = max(abs(r["error"]) for r in results)
    lines += ["", f"Largest error: {worst:.0%} (planned / measured - 1)."]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
