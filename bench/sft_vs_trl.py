"""adaptlab's SFT against TRL's ``SFTTrainer``, side by side, in one run.

Same model (the bundled SmolLM2-135M-Instruct), the same verses (adaptlab's
``verses-fr-en`` sample, given to TRL as conversational prompt/completion rows
with the same system turn), the same chat template, batch size, learning rate,
linear schedule with 10 % warm-up, AdamW with weight decay 0.01, gradient
clipping at 1.0, one epoch, full fine-tuning, fp32 on this machine. Both train
on the completion only. Reported: training tokens/s (non-padding tokens over
the training time), peak memory, and the first 20 step losses.

Known difference in what is trained: TRL's completion mask covers everything
after the prompt, so it also trains the newline the ChatML template writes after
``<|im_end|>``; adaptlab stops at ``<|im_end|>`` (the newline is the template's,
not the answer's). That token is nearly free to predict, so TRL's mean loss per
token is slightly lower; the batches also differ in order (TRL samples at random,
adaptlab in length buckets), so step losses agree in level and trend, not digit
for digit.

    make bench-setup
    .venv/bin/python bench/sft_vs_trl.py --examples 160

Writes a markdown table to stdout and to bench/results/sft_vs_trl.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import adaptlab
from adaptlab.config import load_config
from adaptlab.eval.measure import PeakMemory
from adaptlab.models.backbones import load_backbone

SYSTEM = "You translate French into English."


def settings(args) -> dict:
    return {"strategy": "full", "backbone": "smollm2-135m", "data": "verses-fr-en", "eval_data": "verses-fr-en-test",
            "data__max_train": args.examples, "data__max_eval": 4, "data__max_length": 192, "data__validation_fraction": 0,
            "data__system": SYSTEM, "train__epochs": 1, "train__lr": args.lr, "train__batch_size": args.batch_size,
            "train__schedule": "linear", "train__warmup_ratio": 0.1, "train__weight_decay": 0.01, "train__dropout": 0.0,
            "train__log_every": 1, "train__seed": args.seed, "train__progress": False, "generation__max_new_tokens": 8}


def run_adaptlab(args, out: Path) -> dict:
    result = adaptlab.train(output=str(out / "adaptlab"), **settings(args))
    steps = [json.loads(line) for line in (out / "adaptlab" / "steps.jsonl").read_text().splitlines()]
    m = result.metrics
    return {"tokens_per_second": m["train_tokens_per_second"], "train_seconds": m["train_seconds"],
            "peak_memory_mb": m["peak_memory_mb"], "losses": [s["loss"] for s in steps]}


def conversations(args) -> list[dict]:
    """The training conversations adaptlab used, as TRL's conversational prompt/completion rows."""
    from adaptlab.training.runner import fields_to_overrides, make_setup

    cfg = load_config({"strategy": "full"}, fields_to_overrides({k: v for k, v in settings(args).items() if k != "strategy"}))
    data = make_setup(cfg).data
    return [{"prompt": turns[:-1], "completion": turns[-1:]} for turns in data.train.turns]


def run_trl(args, out: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    backbone = load_backbone("smollm2-135m")
    rows = conversations(args)
    losses: list[float] = []

    class Losses(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(backbone.source, dtype=torch.float32)
    config = SFTConfig(output_dir=str(out / "trl"), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
                       num_train_epochs=1, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0,
                       max_length=192, packing=False, completion_only_loss=True, logging_steps=1, logging_first_step=True,
                       report_to="none", save_strategy="no", seed=args.seed, use_cpu=not torch.cuda.is_available(),
                       bf16=False, dataloader_num_workers=0, disable_tqdm=True, dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=backbone.tokenizer,
                         callbacks=[Losses()])
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    with PeakMemory() as memory:
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"tokens_per_second": round(tokens / seconds, 1), "train_seconds": round(seconds, 3), "peak_memory_mb": memory.mb,
            "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_adaptlab(args, Path(tmp))
        trl = run_trl(args, Path(tmp))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"# adaptlab SFT vs TRL SFTTrainer ({device}, SmolLM2-135M-Instruct, full fine-tuning, {args.examples} verses, "
             f"batch {args.batch_size}, lr {args.lr:g}, one epoch)", "",
             "| path | train tokens/s | train time (s) | peak memory (MB) |", "|---|---|---|---|",
             f"| adaptlab | {ours['tokens_per_second']:,.1f} | {ours['train_seconds']:.1f} | {ours['peak_memory_mb']:,.0f} |",
             f"| TRL SFTTrainer | {trl['tokens_per_second']:,.1f} | {trl['train_seconds']:.1f} | {trl['peak_memory_mb']:,.0f} |",
             f"| ratio (adaptlab / TRL) | {ours['tokens_per_second'] / max(trl['tokens_per_second'], 1e-9):.2f}x | "
             f"{ours['train_seconds'] / max(trl['train_seconds'], 1e-9):.2f}x | "
             f"{ours['peak_memory_mb'] / max(trl['peak_memory_mb'], 1e-9):.2f}x |", "",
             "First 20 step losses (TRL's trains one more token per answer, the newline after `<|im_end|>`):", "",
             "| step | adaptlab | TRL |", "|---|---|---|"]
    for i, (a, b) in enumerate(zip(ours["losses"][:20], trl["losses"][:20])):
        lines.append(f"| {i + 1} | {a:.4f} | {b:.4f} |")
    n = min(20, len(ours["losses"]), len(trl["losses"]))
    mean = lambda xs: sum(xs[:n]) / max(n, 1)  # noqa: E731
    lines += ["", f"Mean of the first {n}: adaptlab {mean(ours['losses']):.4f}, TRL {mean(trl['losses']):.4f}."]
    text = "\n".join(lines) + "\n"
    print(text)
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "sft_vs_trl.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
