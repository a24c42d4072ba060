"""Peak memory of adaptlab's LoRA SFT and LoRA DPO against TRL's SFTTrainer and DPOTrainer, side by side.

Each side runs in a process of its own (nothing one side allocated stays in the other's heap), on the
same rows (adaptlab's ``verses-fr-en`` / ``verses-preference`` sample, given to TRL as conversational
prompt/completion and prompt/chosen/rejected rows with the same system turn), the same model (the
bundled SmolLM2-135M-Instruct, fp32), LoRA r 8 / alpha 16 on every attention and feed-forward
projection, the same batch size, one epoch. Each side otherwise keeps its own defaults -- adaptlab's
(gradient checkpointing ``auto``: on for generative tasks; labelled-token log-probabilities in chunks)
and TRL's current ones (SFTTrainer: gradient checkpointing, its chunked LM head; DPOTrainer: gradient
checkpointing, and ``precompute_ref_log_probs=True``, its recommended setting when memory matters; Liger
kernels need a GPU and are not used here).

Reported per side: the peak resident memory of the training span (from a loaded model and tokenised
data to a trained model, sampled every 20 ms as ``metrics.json`` measures it), the whole process's
peak (``ru_maxrss``: loading, evaluation and saving included), the training seconds of that span and
the end-to-end wall time of the process.

    make bench-setup
    .venv/bin/python bench/memory_vs_trl.py --batch-size 8 --examples 64

Writes ``bench/results/memory_vs_trl.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM = "You translate French into English."
LORA = {"r": 8, "alpha": 16}


def adaptlab_side(task: str, args: argparse.Namespace, out: Path) -> dict:
    import adaptlab

    data = {"sft": "verses-fr-en", "preference": "verses-preference"}[task]
    strategy = {"name": "lora", **LORA} if task == "sft" else {"name": "dpo", "method": {"name": "lora", **LORA}}
    result = adaptlab.train({"strategy": strategy, "backbone": "smollm2-135m", "output": str(out / "run"),
                             "data": {"train": data, "task": task, "max_train": args.examples, "max_eval": 4, "max_length": 256,
                                      "validation_fraction": 0, "system": SYSTEM},
                             "train": {"epochs": 1, "lr": 1e-4, "batch_size": args.batch_size, "progress": False, "seed": args.seed},
                             "generation": {"max_new_tokens": 8}})
    m = result.metrics
    return {"train_peak_mb": m["peak_memory_mb"], "train_seconds": m["train_seconds"],
            "gradient_checkpointing": m["train_settings"]["gradient_checkpointing"], "steps": m["train_settings"]["optimizer_steps"]}


def rows_for(task: str, args: argparse.Namespace) -> list[dict]:
    """adaptlab's training rows for the same settings, in TRL's conversational form."""
    from adaptlab.config import load_config
    from adaptlab.training.runner import make_setup

    data = {"sft": "verses-fr-en", "preference": "verses-preference"}[task]
    cfg = load_config({"strategy": "lora", "backbone": "smollm2-135m",
                       "data": {"train": data, "task": task, "max_train": args.examples, "max_eval": 4, "max_length": 256,
                                "validation_fraction": 0, "system": SYSTEM}, "train": {"seed": args.seed}})
    split = make_setup(cfg).data.train
    if task == "sft":
        return [{"prompt": t[:-1], "completion": t[-1:]} for t in split.turns]
    return [{"prompt": c[:-1], "chosen": c[-1:], "rejected": r[-1:]} for c, r in zip(split.chosen.turns, split.rejected.turns)]


def trl_side(task: str, args: argparse.Namespace, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    from adaptlab.eval.measure import PeakMemory
    from adaptlab.models.backbones import load_backbone

    backbone = load_backbone("smollm2-135m")
    rows = Dataset.from_list(rows_for(task, args))
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(backbone.source, dtype=torch.float32)
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules="all-linear", task_type="CAUSAL_LM")
    common = {"output_dir": str(out / "trl"), "per_device_train_batch_size": args.batch_size, "learning_rate": 1e-4, "num_train_epochs": 1,
              "report_to": "none", "save_strategy": "no", "seed": args.seed, "use_cpu": not torch.cuda.is_available(), "bf16": False,
              "dataloader_num_workers": 0, "disable_tqdm": True, "max_length": 256, "logging_steps": 10}
    if task == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=model, args=SFTConfig(**common, completion_only_loss=True), train_dataset=rows,
                             processing_class=backbone.tokenizer, peft_config=lora)
    else:
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(model=model, args=DPOConfig(**common, precompute_ref_log_probs=True), train_dataset=rows,
                             processing_class=backbone.tokenizer, peft_config=lora)
    with PeakMemory() as memory:
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"train_peak_mb": memory.mb, "train_seconds": round(seconds, 2),
            "gradient_checkpointing": bool(trainer.args.gradient_checkpointing), "steps": trainer.state.global_step}


def child(side: str, task: str, args: argparse.Namespace) -> None:
    import logging

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = (adaptlab_side if side == "adaptlab" else trl_side)(task, args, Path(tmp))
    result["process_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print("RESULT " + json.dumps(result), flush=True)


def environment() -> dict:
    import platform
    from importlib.metadata import version

    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"commit": commit, "date": time.strftime("%Y-%m-%d"), "device": "cuda" if torch.cuda.is_available() else "cpu",
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            **{p: version(p) for p in ("torch", "transformers", "peft", "trl", "adaptlab")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tasks", default="sft,preference")
    parser.add_argument("--child", nargs=2, metavar=("SIDE", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args)
    results = []
    for task in args.tasks.split(","):
        for side in ("adaptlab", "trl"):
            cmd = [sys.executable, __file__, "--child", side, task, "--examples", str(args.examples),
                   "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{side} {task} failed:\n{done.stderr[-3000:]}")
            results.append({"task": task, "side": side, **json.loads(line[7:])})
            print(results[-1], flush=True)
    write(results, args)


def write(results: list[dict], args: argparse.Namespace) -> None:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = f"memory_vs_trl_batch{args.batch_size}"
    env = environment()
    (out / f"{name}.json").write_text(json.dumps({"environment": env, "settings": vars(args), "results": results}, indent=2))
    lines = [f"# LoRA SFT and DPO peak memory: adaptlab vs TRL (SmolLM2-135M-Instruct, {args.examples} rows, batch "
             f"{args.batch_size}, {env['device']}, {env['threads']} threads, commit {env['commit']}, {env['date']})", "",
             f"Command: `.venv/bin/python bench/memory_vs_trl.py --batch-size {args.batch_size} --examples {args.examples}`", "",
             "| task | trainer | gradient checkpointing | steps | training peak (MB) | process peak (MB) | train s | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        name_ = "adaptlab" if r["side"] == "adaptlab" else ("TRL SFTTrainer" if r["task"] == "sft" else "TRL DPOTrainer")
        lines.append(f"| {r['task']} | {name_} | {r['gradient_checkpointing']} | {r['steps']} | {r['train_peak_mb']:,.0f} | "
                     f"{r['process_peak_mb']:,.0f} | {r['train_seconds']:.1f} | {r['wall_seconds']:.1f} |")
    (out / f"memory_vs_trl_batch{args.batch_size}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
