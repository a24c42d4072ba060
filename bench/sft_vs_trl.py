"""adaptlab's SFT against TRL's ``SFTTrainer`` at its current defaults, side by side, in one run.

Same model (the bundled SmolLM2-135M-Instruct), the same verses (adaptlab's
``verses-fr-en`` sample, given to TRL as conversational prompt/completion rows
with the same system turn), the same chat template, batch size, learning rate,
linear schedule with 10 % warm-up, AdamW with weight decay 0.01, gradient
clipping at 1.0, one epoch, full fine-tuning, fp32 on this CPU (bf16 is ~20x
slower here). Both train on the completion only.

TRL runs at the defaults of the installed version (1.16): gradient checkpointing
on (adaptlab's ``auto`` also turns it on for generative tasks), its fused LM head
that computes the log-probabilities in chunks without the full logits, no packing.
Its padding-free mode (and ``bfd`` packing, which implies it) needs a
variable-length attention kernel (flash attention), which this CPU does not have:
with plain attention padding-free rows would attend across their boundaries, so
it stays off here and is owed to the GPU run.

Timed by one rule on both sides (``_fair.py``): **fit** from a loaded model and
the training rows to a trained model in memory (TRL: constructing the trainer,
which tokenises, plus ``train()``), the optimiser steps alone for tokens/s, and
**end to end** from the call to a saved model (adaptlab's forgetting probe and
its evaluation of 4 held-out verses are in its end-to-end time; TRL does
neither).

Known difference in what is trained: TRL's completion mask covers everything
after the prompt, so it also trains the newline the ChatML template writes after
``<|im_end|>``; adaptlab stops at ``<|im_end|>``. That token is nearly free to
predict, so TRL's mean loss per token is slightly lower; the batches also differ
in order (TRL samples at random, adaptlab in length buckets), so step losses
agree in level and trend, not digit for digit.

    make bench-setup
    .venv/bin/python bench/sft_vs_trl.py --examples 160

Writes bench/results/sft_vs_trl.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from _fair import Clock, Side, adaptlab_side, load_causal_lm, loss_log, table, write

import adaptlab
from adaptlab.config import load_config
from adaptlab.eval.measure import PeakMemory

SYSTEM = "You translate French into English."


def settings(args) -> dict:
    return {"strategy": "full", "backbone": "smollm2-135m", "data": "verses-fr-en", "eval_data": "verses-fr-en-test",
            "data__max_train": args.examples, "data__max_eval": 4, "data__max_length": 192, "data__validation_fraction": 0,
            "data__system": SYSTEM, "train__epochs": 1, "train__lr": args.lr, "train__batch_size": args.batch_size,
            "train__schedule": "linear", "train__warmup_ratio": 0.1, "train__weight_decay": 0.01, "train__dropout": 0.0,
            "train__log_every": 1, "train__seed": args.seed, "train__progress": False, "generation__max_new_tokens": 8}


def run_adaptlab(args, out: Path) -> tuple[Side, list[float]]:
    with Clock() as wall:
        result = adaptlab.train(output=str(out / "adaptlab"), **settings(args))
    steps = [json.loads(line) for line in (out / "adaptlab" / "steps.jsonl").read_text().splitlines()]
    m = result.metrics
    return adaptlab_side("adaptlab", m, wall.seconds, "tokens", {}), [s["loss"] for s in steps]


def conversations(args) -> list[dict]:
    """The training conversations adaptlab used, as TRL's conversational prompt/completion rows."""
    from adaptlab.training.runner import fields_to_overrides, make_setup

    cfg = load_config({"strategy": "full"}, fields_to_overrides({k: v for k, v in settings(args).items() if k != "strategy"}))
    data = make_setup(cfg).data
    return [{"prompt": turns[:-1], "completion": turns[-1:]} for turns in data.train.turns]


def run_trl(args, out: Path) -> tuple[Side, list[float]]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = conversations(args)
    logger, losses = loss_log()
    with PeakMemory() as memory, Clock() as wall:
        with Clock() as load:
            backbone, model = load_causal_lm("smollm2-135m", args.seed)
        with Clock() as fit:
            config = SFTConfig(output_dir=str(out / "trl"), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                               num_train_epochs=1, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0,
                               max_length=192, completion_only_loss=True, logging_steps=1, logging_first_step=True,
                               report_to="none", save_strategy="no", seed=args.seed, use_cpu=not torch.cuda.is_available(),
                               bf16=torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True)
            trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=backbone.tokenizer,
                                 callbacks=[logger])
            with Clock() as steps:
                trainer.train()
        with Clock() as save:
            trainer.save_model(str(out / "trl" / "model"))
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    side = Side("TRL SFTTrainer (defaults)", fit.seconds, steps.seconds, tokens, wall.seconds,
                {"load": load.seconds, "save": save.seconds}, memory.mb, {})
    return side, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ours, our_losses = run_adaptlab(args, Path(tmp))
        trl, trl_losses = run_trl(args, Path(tmp))
    n = min(20, len(our_losses), len(trl_losses))
    mean = lambda xs: sum(xs[:n]) / max(n, 1)  # noqa: E731
    ours.quality, trl.quality = {"mean loss, first 20 steps": mean(our_losses)}, {"mean loss, first 20 steps": mean(trl_losses)}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"# adaptlab SFT vs TRL SFTTrainer ({device}, SmolLM2-135M-Instruct, full fine-tuning, {args.examples} verses, "
             f"batch {args.batch_size}, lr {args.lr:g}, one epoch; `bench/sft_vs_trl.py --examples {args.examples}`)", "",
             *table([trl, ours], "tokens"), "",
             "First 20 step losses (TRL's trains one more token per answer, the newline after `<|im_end|>`):", "",
             "| step | adaptlab | TRL |", "|---|---|---|"]
    for i, (a, b) in enumerate(zip(our_losses[:20], trl_losses[:20])):
        lines.append(f"| {i + 1} | {a:.4f} | {b:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write("sft_vs_trl", text, {"args": vars(args), "sides": [trl, ours], "losses": {"adaptlab": our_losses, "trl": trl_losses}}, started)


if __name__ == "__main__":
    main()
