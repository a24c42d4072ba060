"""adaptlab's DPO against TRL's ``DPOTrainer``, side by side, in one run.

Same model (the bundled SmolLM2-135M-Instruct), the same pairs (a sample of
``verses-preference``, given to TRL as conversational prompt/chosen/rejected rows
with the same system turn), the same chat template, beta, batch size, learning
rate, linear schedule with 10 % warm-up, AdamW, gradient clipping at 1.0, one
epoch, full fine-tuning, dropout off, fp32 on this machine. Reported: the first
step's loss (both must start at log 2 = 0.6931), the first 20 step losses,
training tokens/s (chosen + rejected tokens over the training time) and peak
memory -- TRL keeps a second copy of the model as its reference by default;
adaptlab computes the reference log-probabilities once before training and
keeps none.

    make bench-setup
    .venv/bin/python bench/dpo_vs_trl.py --pairs 96

Writes a markdown table to stdout and to bench/results/dpo_vs_trl.md.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

import adaptlab
from adaptlab.eval.measure import PeakMemory
from adaptlab.models.backbones import load_backbone

SYSTEM = "You translate French into English."


def settings(args) -> dict:
    return {"strategy": "dpo", "backbone": "smollm2-135m", "data": "verses-preference", "eval_data": "verses-preference-test",
            "data__max_train": args.pairs, "data__max_eval": 4, "data__max_length": 256, "data__validation_fraction": 0,
            "data__system": SYSTEM, "strategy__method": "full", "strategy__beta": args.beta, "train__epochs": 1, "train__lr": args.lr,
            "train__batch_size": args.batch_size, "train__schedule": "linear", "train__warmup_ratio": 0.1, "train__weight_decay": 0.0,
            "train__dropout": 0.0, "train__log_every": 1, "train__seed": args.seed, "train__progress": False,
            "generation__max_new_tokens": 8}


def run_adaptlab(args, out: Path) -> dict:
    result = adaptlab.train(output=str(out / "adaptlab"), **settings(args))
    steps = [json.loads(line) for line in (out / "adaptlab" / "steps.jsonl").read_text().splitlines()]
    m = result.metrics
    return {"tokens_per_second": m["train_tokens_per_second"], "train_seconds": m["train_seconds"],
            "peak_memory_mb": m["peak_memory_mb"], "losses": [s["loss"] for s in steps]}


def pairs(args) -> list[dict]:
    """The training pairs adaptlab used, as TRL's conversational rows."""
    from adaptlab.config import load_config
    from adaptlab.training.runner import fields_to_overrides, make_setup

    cfg = load_config({"strategy": "dpo"}, fields_to_overrides({k: v for k, v in settings(args).items() if k != "strategy"}))
    data = make_setup(cfg).data
    return [{"prompt": c[:-1], "chosen": c[-1:], "rejected": r[-1:]}
            for c, r in zip(data.train.chosen.turns, data.train.rejected.turns)]


def run_trl(args, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    backbone = load_backbone("smollm2-135m")
    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(backbone.source, dtype=torch.float32)
    config = DPOConfig(output_dir=str(out / "trl"), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                       num_train_epochs=1, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.0, max_grad_norm=1.0,
                       beta=args.beta, max_length=256, logging_steps=1, logging_first_step=True, report_to="none",
                       save_strategy="no", seed=args.seed, use_cpu=not torch.cuda.is_available(), bf16=False,
                       dataloader_num_workers=0, disable_tqdm=True, dataset_num_proc=None)
    rows = pairs(args)
    with PeakMemory() as memory:
        trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=backbone.tokenizer,
                             callbacks=[Losses()])
        data = trainer.train_dataset  # tokenised: prompt_ids, chosen_ids, rejected_ids (each sequence is prompt + answer)
        tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"]))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"tokens_per_second": round(tokens / seconds, 1) if tokens else float("nan"), "train_seconds": round(seconds, 3),
            "peak_memory_mb": memory.mb, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_adaptlab(args, Path(tmp))
        trl = run_trl(args, Path(tmp))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"# adaptlab DPO vs TRL DPOTrainer ({device}, SmolLM2-135M-Instruct, full fine-tuning, {args.pairs} verse pairs, "
             f"batch {args.batch_size}, beta {args.beta:g}, lr {args.lr:g}, one epoch)", "",
             "| path | first-step loss | train tokens/s | train time (s) | peak memory (MB) |", "|---|---|---|---|---|"]
    for name, r in (("adaptlab (reference cached)", ours), ("TRL DPOTrainer (reference model)", trl)):
        first = r["losses"][0] if r["losses"] else float("nan")
        lines.append(f"| {name} | {first:.4f} | {r['tokens_per_second']:,.1f} | {r['train_seconds']:.1f} | {r['peak_memory_mb']:,.0f} |")
    lines.append(f"| ratio (adaptlab / TRL) | | {ours['tokens_per_second'] / max(trl['tokens_per_second'], 1e-9):.2f}x | "
                 f"{ours['train_seconds'] / max(trl['train_seconds'], 1e-9):.2f}x | {ours['peak_memory_mb'] / max(trl['peak_memory_mb'], 1e-9):.2f}x |")
    lines += ["", f"log 2 = {math.log(2):.4f}. First 20 step losses (batches differ in order: TRL samples at random, adaptlab in "
              "length buckets):", "", "| step | adaptlab | TRL |", "|---|---|---|"]
    for i, (a, b) in enumerate(zip(ours["losses"][:20], trl["losses"][:20])):
        lines.append(f"| {i + 1} | {a:.4f} | {b:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "dpo_vs_trl.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
