"""GRPO side by side: adaptlab's ``grpo`` and TRL's GRPOTrainer on the same prompts, model, G, steps and reward.

Both sides: the bundled SmolLM2-135M-Instruct in fp32, LoRA r 8 / alpha 16 on every linear layer of the blocks,
the same ``--examples`` French verses of ``verses-fr-en`` as prompts (with the same system turn and chat template),
G = 4 answers per prompt of at most 64 tokens sampled at temperature 1.0, 4 prompts (16 answers) per optimiser step,
one pass, lr 2e-4 constant, KL weight 0.04 to the reference (the same model with its adapters disabled, on both
sides), gradient checkpointing on, and the same reward: ``adaptlab.objectives.rewards.chrf`` (sentence chrF against
the verse's English reference), handed to TRL unchanged apart from reading its conversational completions' text.
Each side keeps its other defaults (TRL 1.16: ``loss_type="dapo"``, group-scaled rewards -- adaptlab's too).

Reported per side: the mean sampled reward of each step (the reward curve), answer length, the training span's
seconds and completion tokens per second, its peak resident memory (sampled every 20 ms, as metrics.json measures
it) and the end-to-end wall time of the process. Each side runs in a process of its own.

    make bench-setup
    .venv/bin/python bench/grpo_vs_trl.py --examples 48

Writes ``bench/results/grpo_vs_trl.json`` and ``.md``.
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
SETTINGS = {"group_size": 4, "max_new_tokens": 64, "temperature": 1.0, "beta": 0.04, "prompts_per_step": 4, "lr": 2e-4}


def adaptlab_side(args: argparse.Namespace, out: Path) -> dict:
    import adaptlab

    s = SETTINGS
    result = adaptlab.train({"strategy": {"name": "grpo", "method": {"name": "lora", "r": 8, "alpha": 16}, "reward": "chrf",
                                          "group_size": s["group_size"], "max_new_tokens": s["max_new_tokens"],
                                          "temperature": s["temperature"], "beta": s["beta"]},
                             "backbone": "smollm2-135m", "output": str(out / "run"),
                             "data": {"train": "verses-fr-en", "task": "sft", "max_train": args.examples, "max_eval": 4,
                                      "max_length": 192, "validation_fraction": 0, "system": SYSTEM},
                             "train": {"epochs": 1, "lr": s["lr"], "batch_size": s["prompts_per_step"], "progress": False,
                                       "seed": args.seed, "log_every": 1},
                             "generation": {"max_new_tokens": 8}})
    m = result.metrics
    steps = [json.loads(x) for x in (Path(result.run_dir) / "steps.jsonl").read_text().splitlines()]
    tokens = sum(x["answer_length"] for x in steps) * s["prompts_per_step"] * s["group_size"]
    return {"train_peak_mb": m["peak_memory_mb"], "train_seconds": m["train_seconds"], "steps": len(steps),
            "rewards": [round(x["reward"], 4) for x in steps], "answer_length": [round(x["answer_length"], 1) for x in steps],
            "completion_tokens_per_second": round(tokens / m["train_seconds"], 1)}


def prompts(args: argparse.Namespace) -> list[dict]:
    """adaptlab's training rows for the same settings, in TRL's conversational form, with the reference column."""
    from adaptlab.config import load_config
    from adaptlab.training.runner import make_setup

    cfg = load_config({"strategy": "lora", "backbone": "smollm2-135m",
                       "data": {"train": "verses-fr-en", "task": "sft", "max_train": args.examples, "max_eval": 4, "max_length": 192,
                                "validation_fraction": 0, "system": SYSTEM}, "train": {"seed": args.seed}})
    split = make_setup(cfg).data.train
    return [{"prompt": t[:-1], "reference": t[-1]["content"]} for t in split.turns]


def trl_side(args: argparse.Namespace, out: Path) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from adaptlab.eval.measure import PeakMemory
    from adaptlab.models.backbones import load_backbone
    from adaptlab.objectives.rewards import chrf

    def reward(prompts: list, completions: list, reference: list, **_: object) -> list[float]:
        return chrf(prompts, [c[-1]["content"].strip() for c in completions], reference)

    s = SETTINGS
    backbone = load_backbone("smollm2-135m")
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(backbone.source, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    config = GRPOConfig(output_dir=str(out / "trl"), per_device_train_batch_size=s["prompts_per_step"] * s["group_size"],
                        num_generations=s["group_size"], max_completion_length=s["max_new_tokens"], temperature=s["temperature"],
                        beta=s["beta"], learning_rate=s["lr"], lr_scheduler_type="constant", num_train_epochs=1,
                        gradient_checkpointing=True, report_to="none", save_strategy="no", seed=args.seed,
                        use_cpu=not torch.cuda.is_available(), bf16=False, dataloader_num_workers=0, disable_tqdm=True,
                        logging_steps=1)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=Dataset.from_list(prompts(args)),
                          processing_class=backbone.tokenizer, peft_config=lora)
    with PeakMemory() as memory:
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    logs = [x for x in trainer.state.log_history if "reward" in x]
    lengths = [x.get("completions/mean_length", 0.0) for x in logs]
    tokens = sum(lengths) * s["prompts_per_step"] * s["group_size"]
    return {"train_peak_mb": memory.mb, "train_seconds": round(seconds, 2), "steps": trainer.state.global_step,
            "rewards": [round(x["reward"], 4) for x in logs], "answer_length": [round(x, 1) for x in lengths],
            "completion_tokens_per_second": round(tokens / seconds, 1)}


def child(side: str, args: argparse.Namespace) -> None:
    import logging

    logging.disable(logging.WARNING)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = (adaptlab_side if side == "adaptlab" else trl_side)(args, Path(tmp))
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
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--child", metavar="SIDE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args)
    results = []
    for side in ("adaptlab", "trl"):
        cmd = [sys.executable, __file__, "--child", side, "--examples", str(args.examples), "--seed", str(args.seed)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
        results.append({"side": side, **json.loads(line[7:])})
        print(results[-1], flush=True)
    write(results, args)


def thirds(values: list[float]) -> str:
    """Mean of the first and the last third of a curve."""
    k = max(1, len(values) // 3)
    return f"{sum(values[:k]) / k:.3f} → {sum(values[-k:]) / k:.3f}"


def write(results: list[dict], args: argparse.Namespace) -> None:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    env = environment()
    (out / "grpo_vs_trl.json").write_text(json.dumps({"environment": env, "settings": {**vars(args), **SETTINGS},
                                                      "results": results}, indent=2))
    s = SETTINGS
    lines = [f"# GRPO: adaptlab vs TRL GRPOTrainer (SmolLM2-135M-Instruct, LoRA, {args.examples} prompts, G {s['group_size']}, "
             f"{s['prompts_per_step']} prompts/step, chrF reward, {env['device']}, {env['threads']} threads, commit {env['commit']}, "
             f"{env['date']})", "",
             f"Command: `.venv/bin/python bench/grpo_vs_trl.py --examples {args.examples}` (TRL {env['trl']})", "",
             "| trainer | steps | sampled reward, first → last third of steps | answer tokens (mean) | training peak (MB) | "
             "train s | answer tokens/s | wall s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        name = "adaptlab grpo" if r["side"] == "adaptlab" else "TRL GRPOTrainer"
        mean_length = sum(r["answer_length"]) / max(len(r["answer_length"]), 1)
        lines.append(f"| {name} | {r['steps']} | {thirds(r['rewards'])} | {mean_length:.1f} | {r['train_peak_mb']:,.0f} | "
                     f"{r['train_seconds']:.1f} | {r['completion_tokens_per_second']:.1f} | {r['wall_seconds']:.1f} |")
    lines += ["", "Reward per step:", ""] + [f"- {r['side']}: " + ", ".join(f"{x:.3f}" for x in r["rewards"]) for r in results]
    (out / "grpo_vs_trl.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
