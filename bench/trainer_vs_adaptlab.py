"""adaptlab's loop against the plain Hugging Face Trainer (+ peft), side by side, one run.

Same backbone, data, split, seed, learning rate, schedule, batch size, epochs and
dropout for both; what differs is what each path does per step: the Trainer path
is the usual recipe (dynamic padding, examples in random order), adaptlab adds
length-bucketed batches. Both are timed on training only, then scored on the same
evaluation examples.

    .venv/bin/python bench/trainer_vs_adaptlab.py --max-train 2000 --max-eval 500

Writes a markdown table to stdout and to bench/results/trainer_vs_adaptlab.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import adaptlab
from adaptlab.config import load_config
from adaptlab.data.task import build_task
from adaptlab.models.backbones import load_backbone
from adaptlab.strategies.lora import LoRA

SETTINGS = {"full": {"lr": 1e-4}, "lora": {"lr": 2e-3}}


def hf_trainer(strategy: str, args, data, backbone) -> dict:
    """The plain path: AutoModelForSequenceClassification (+ get_peft_model) and transformers.Trainer."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    tok = backbone.tokenizer
    enc = lambda ex: [{**{k: v[i] for k, v in tok(ex.texts, truncation=True, max_length=128).items()}, "labels": y}  # noqa: E731
                      for i, y in enumerate(ex.labels)]
    train_rows, eval_rows = enc(data.train), enc(data.eval)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        backbone.source, num_labels=len(data.labels), hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if strategy == "lora":
        from types import SimpleNamespace

        from peft import get_peft_model

        from adaptlab.tasks import get_task_type

        task = SimpleNamespace(backbone=backbone, type=get_task_type("classification"))
        model = get_peft_model(model, LoRA(LoRA.Config()).peft_config(task))
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=32, per_device_eval_batch_size=64, learning_rate=SETTINGS[strategy]["lr"],
            num_train_epochs=args.epochs, lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0,
            seed=args.seed, report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
            dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=train_rows, data_collator=DataCollatorWithPadding(tok))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        logits = trainer.predict(eval_rows).predictions
    accuracy = float((torch.tensor(logits).argmax(-1) == torch.tensor(data.eval.labels)).float().mean())
    return {"seconds": seconds, "accuracy": accuracy}


def ours(strategy: str, args, out: Path) -> dict:
    run = adaptlab.train(strategy=strategy, backbone="minilm-l6", data="rotten-tomatoes", output=str(out / strategy),
                         overrides={"data.max_train": args.max_train, "data.max_eval": args.max_eval, "train.epochs": args.epochs,
                                    "train.lr": SETTINGS[strategy]["lr"], "train.dropout": 0.0, "train.seed": args.seed,
                                    "train.progress": False, "train.checkpoint_every": None})
    return {"seconds": run.metrics["train_seconds"], "accuracy": run.metrics["eval"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-eval", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--strategies", default="full,lora")
    args = parser.parse_args()
    cfg = load_config({"strategy": "full", "data": {"train": "rotten-tomatoes", "max_train": args.max_train, "max_eval": args.max_eval}})
    data, backbone = build_task(cfg.data, args.seed), load_backbone("minilm-l6")
    lines = [f"{args.max_train} train / {args.max_eval} eval Rotten Tomatoes examples, MiniLM-L6, {args.epochs} epoch(s), "
             f"batch 32, dropout 0, torch {torch.__version__}, {torch.get_num_threads()} threads", "",
             "| strategy | path | train time (s) | speed-up | accuracy |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies.split(","):
            plain = hf_trainer(strategy, args, data, backbone)
            mine = ours(strategy, args, Path(tmp))
            lines.append(f"| {strategy} | HF Trainer{' + peft' if strategy == 'lora' else ''} | {plain['seconds']:.1f} | 1.00x | "
                         f"{plain['accuracy']:.4f} |")
            lines.append(f"| {strategy} | adaptlab | {mine['seconds']:.1f} | {plain['seconds'] / mine['seconds']:.2f}x | "
                         f"{mine['accuracy']:.4f} |")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "trainer_vs_adaptlab.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
