"""adaptlab's DPO against TRL's ``DPOTrainer`` at its recommended settings, side by side, in one run.

Same model (the bundled SmolLM2-135M-Instruct), the same pairs (a sample of
``verses-preference``, given to TRL as conversational prompt/chosen/rejected rows
with the same system turn), the same chat template, beta, batch size, learning
rate, linear schedule with 10 % warm-up, AdamW, gradient clipping at 1.0, one
epoch, full fine-tuning, dropout off, fp32 on this CPU.

TRL runs with ``precompute_ref_log_probs=True`` (its reference scored once before
training, no second model kept: what adaptlab always does) and its defaults
otherwise (gradient checkpointing on, as adaptlab's ``auto``; its fused LM head).
Liger's kernels need Triton on a GPU and are owed to the GPU run; its
padding-free mode is disabled in this TRL version.

Timed by one rule on both sides (``_fair.py``): **fit** from a loaded model and
the pairs to a trained model in memory (TRL: constructing the trainer -- which
tokenises and scores the reference -- plus ``train()``; adaptlab: its ``fit``,
which scores the reference first), the optimiser steps alone for tokens/s, and
**end to end** from the call to a saved model. Reported beside them: the first
step's loss (both must start at log 2 = 0.6931), the first 20 step losses and
peak memory.

    make bench-setup
    .venv/bin/python bench/dpo_vs_trl.py --pairs 96

Writes bench/results/dpo_vs_trl.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
from _fair import Clock, Side, adaptlab_side, load_causal_lm, loss_log, table, write

import adaptlab
from adaptlab.eval.measure import PeakMemory

SYSTEM = "You translate French into English."


def settings(args) -> dict:
    return {"strategy": "dpo", "backbone": "smollm2-135m", "data": "verses-preference", "eval_data": "verses-preference-test",
            "data__max_train": args.pairs, "data__max_eval": 4, "data__max_length": 256, "data__validation_fraction": 0,
            "data__system": SYSTEM, "strategy__method": "full", "strategy__beta": args.beta, "train__epochs": 1, "train__lr": args.lr,
            "train__batch_size": args.batch_size, "train__schedule": "linear", "train__warmup_ratio": 0.1, "train__weight_decay": 0.0,
            "train__dropout": 0.0, "train__log_every": 1, "train__seed": args.seed, "train__progress": False,
            "generation__max_new_tokens": 8}


def run_adaptlab(args, out: Path) -> tuple[Side, list[float]]:
    with Clock() as wall:
        result = adaptlab.train(output=str(out / "adaptlab"), **settings(args))
    steps = [json.loads(line) for line in (out / "adaptlab" / "steps.jsonl").read_text().splitlines()]
    return adaptlab_side("adaptlab (reference cached)", result.metrics, wall.seconds, "tokens", {}), [s["loss"] for s in steps]


def pairs(args) -> list[dict]:
    """The training pairs adaptlab used, as TRL's conversational rows."""
    from adaptlab.config import load_config
    from adaptlab.training.runner import fields_to_overrides, make_setup

    cfg = load_config({"strategy": "dpo"}, fields_to_overrides({k: v for k, v in settings(args).items() if k != "strategy"}))
    data = make_setup(cfg).data
    return [{"prompt": c[:-1], "chosen": c[-1:], "rejected": r[-1:]}
            for c, r in zip(data.train.chosen.turns, data.train.rejected.turns)]


def run_trl(args, out: Path) -> tuple[Side, list[float]]:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    logger, losses = loss_log()
    rows = pairs(args)
    with PeakMemory() as memory, Clock() as wall:
        with Clock() as load:
            backbone, model = load_causal_lm("smollm2-135m", args.seed)
        with Clock() as fit:
            config = DPOConfig(output_dir=str(out / "trl"), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                               num_train_epochs=1, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.0, max_grad_norm=1.0,
                               beta=args.beta, max_length=256, logging_steps=1, logging_first_step=True, report_to="none",
                               save_strategy="no", seed=args.seed, use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available(),
                               dataloader_num_workers=0, disable_tqdm=True, precompute_ref_log_probs=True)
            trainer = DPOTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=backbone.tokenizer,
                                 callbacks=[logger])
            with Clock() as steps:
                trainer.train()
        with Clock() as save:
            trainer.save_model(str(out / "trl" / "model"))
    data = trainer.train_dataset  # tokenised: prompt_ids, chosen_ids, rejected_ids (each sequence is prompt + answer)
    tokens = sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(data["prompt_ids"], data["chosen_ids"], data["rejected_ids"]))
    side = Side("TRL DPOTrainer (reference precomputed)", fit.seconds, steps.seconds, tokens, wall.seconds,
                {"load": load.seconds, "save": save.seconds}, memory.mb, {})
    return side, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ours, our_losses = run_adaptlab(args, Path(tmp))
        trl, trl_losses = run_trl(args, Path(tmp))
    for side, losses in ((ours, our_losses), (trl, trl_losses)):
        side.quality = {"first-step loss": losses[0] if losses else float("nan")}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"# adaptlab DPO vs TRL DPOTrainer ({device}, SmolLM2-135M-Instruct, full fine-tuning, {args.pairs} verse pairs, "
             f"batch {args.batch_size}, beta {args.beta:g}, lr {args.lr:g}, one epoch; `bench/dpo_vs_trl.py --pairs {args.pairs}`)", "",
             *table([trl, ours], "tokens"), "",
             f"log 2 = {math.log(2):.4f}. First 20 step losses (batches differ in order: TRL samples at random, adaptlab in "
             "length buckets):", "", "| step | adaptlab | TRL |", "|---|---|---|"]
    for i, (a, b) in enumerate(zip(our_losses[:20], trl_losses[:20])):
        lines.append(f"| {i + 1} | {a:.4f} | {b:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write("dpo_vs_trl", text, {"args": vars(args), "sides": [trl, ours], "losses": {"adaptlab": our_losses, "trl": trl_losses}}, started)


if __name__ == "__main__":
    main()
