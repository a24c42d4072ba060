"""The default five-strategy sweep: adaptlab against the same five written with the Hugging Face Trainer.

For each strategy of the bundled demo (linear_probe, top_k, gradual_unfreeze,
full, lora) adaptlab trains first, as `adaptlab compare` does; then the plain
path trains the same model, prepared by the same strategy object (same frozen
parameters, same adapters, same initial weights), on the same rows, for the
same number of epochs at the same learning rate, batch size, weight decay and
dropout 0, with ``transformers.Trainer`` -- twice: as it comes (random batches,
``DataCollatorWithPadding``) and with length-grouped batches. gradual_unfreeze
opens its groups from a ``TrainerCallback`` and uses its own per-group learning
rates, as in adaptlab. Every path is scored by the same function on the same
evaluation rows. Reported: training seconds, the speed-up over each Trainer
setting, accuracy; and the whole sweep.

What adaptlab does differently is only how it runs the work: length buckets,
cached frozen computation (the linear probe's features; top_k's frozen blocks
from the second epoch) and no host sync per step.

    .venv/bin/python bench/trainer_vs_adaptlab.py                 # the demo's sizes: ~25 min on 2 cores
    .venv/bin/python bench/trainer_vs_adaptlab.py --max-train 400 --strategies top_k,full

Writes a markdown table to stdout and to bench/results/trainer_vs_adaptlab.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from gpu_vs_trainer import grouping  # bench/ is on sys.path when this file runs

import adaptlab
from adaptlab.config import load_config
from adaptlab.eval.metrics import evaluate
from adaptlab.strategies import Task, get_strategy
from adaptlab.strategies.base import hook, param_groups
from adaptlab.training.runner import make_setup, prepare_module, resolve_train


def demo_settings() -> tuple[dict, dict[str, dict]]:
    from importlib.resources import files

    recipe = yaml.safe_load((files("adaptlab.recipes") / "demo.yaml").read_text(encoding="utf-8"))
    return recipe, {s["name"]: s for s in recipe["strategies"]}


def ours(name: str, settings: dict, args, out: Path) -> dict:
    options = {k: v for k, v in settings.items() if k not in ("name", "train")}
    overrides = {"data.max_train": args.max_train, "data.max_eval": args.max_eval, "train.dropout": 0.0, "train.seed": args.seed,
                 "train.progress": False, "train.checkpoint_every": None,
                 **{f"train.{k}": v for k, v in settings.get("train", {}).items()}, **{f"strategy.{k}": v for k, v in options.items()}}
    run = adaptlab.train(strategy=name, backbone="minilm-l6", data="rotten-tomatoes", output=str(out / name), overrides=overrides)
    m = run.metrics
    return {"seconds": m["train_seconds"], "accuracy": m["eval"]["accuracy"], "epochs": m["train_settings"]["epochs_run"],
            "lr": m["train_settings"]["lr"],
            "overrides": overrides}


def plain(name: str, mine: dict, args, grouped: bool) -> dict:
    """The same strategy's model, trained by transformers.Trainer."""
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from adaptlab.data.batching import Collate
    from adaptlab.training.runner import fields_to_overrides

    cfg = load_config({"strategy": name, "backbone": "minilm-l6", "data": "rotten-tomatoes"},
                      fields_to_overrides({k.replace(".", "__"): v for k, v in mine["overrides"].items()}))
    setup = make_setup(cfg)
    strategy = get_strategy(name)(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg), type=setup.task_type, run_config=cfg)
    module = prepare_module(strategy, task)
    groups = hook(strategy, "param_groups", param_groups)(module, mine["lr"], cfg.train.weight_decay or 0.0)
    optimizer = torch.optim.AdamW(groups, lr=mine["lr"])
    on_epoch = hook(strategy, "on_epoch_start", lambda epoch, module: None)

    class Open(TrainerCallback):  # gradual unfreezing: the strategy opens its groups epoch by epoch
        def on_epoch_begin(self, targs, state, control, **kwargs):
            on_epoch(int(state.epoch or 0), module)

    class Loss(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels)
            return (loss, outputs) if return_outputs else loss

    rows = [{k: r[k] for k in ("input_ids", "attention_mask", "labels") if k in r} for r in setup.train_rows]

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=cfg.train.batch_size, learning_rate=mine["lr"], num_train_epochs=mine["epochs"],
            lr_scheduler_type="linear", warmup_steps=cfg.train.warmup_ratio, weight_decay=cfg.train.weight_decay or 0.0,
            max_grad_norm=cfg.train.max_grad_norm or 0.0, seed=args.seed, report_to="none", save_strategy="no", eval_strategy="no",
            logging_strategy="no", dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
            remove_unused_columns=False, **grouping(grouped))
        trainer = Loss(model=module, args=targs, train_dataset=rows, data_collator=DataCollatorWithPadding(setup.backbone.tokenizer),
                       optimizers=(optimizer, None), callbacks=[Open()])
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    loader = DataLoader(setup.eval_rows, batch_size=64, collate_fn=Collate(setup.backbone.tokenizer.pad_token_id or 0))
    return {"seconds": seconds, "accuracy": evaluate(module, loader)["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-eval", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--strategies", default="linear_probe,top_k,gradual_unfreeze,full,lora")
    args = parser.parse_args()
    _, settings = demo_settings()
    lines = [f"The demo sweep: MiniLM-L6, {args.max_train} Rotten Tomatoes examples (a fifth held out), dropout 0, the demo's "
             f"per-strategy settings, torch {torch.__version__}, {torch.get_num_threads()} threads", "",
             "| strategy | epochs | path | train time (s) | adaptlab speed-up | accuracy |", "|---|---|---|---|---|---|"]
    totals = {"adaptlab": 0.0, "Trainer": 0.0, "Trainer, group_by_length": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.strategies.split(","):
            mine = ours(name, settings.get(name, {"name": name}), args, Path(tmp))
            results = {"Trainer": plain(name, mine, args, False), "Trainer, group_by_length": plain(name, mine, args, True)}
            totals["adaptlab"] += mine["seconds"]
            for path, r in results.items():
                totals[path] += r["seconds"]
                lines.append(f"| {name} | {mine['epochs']} | {path} | {r['seconds']:.1f} | {r['seconds'] / mine['seconds']:.2f}x | "
                             f"{r['accuracy']:.3f} |")
            lines.append(f"| {name} | {mine['epochs']} | adaptlab | {mine['seconds']:.1f} | | {mine['accuracy']:.3f} |")
            print("\n".join(lines[-3:]), flush=True)
    lines.append(f"| **sweep** | | Trainer | {totals['Trainer']:.1f} | {totals['Trainer'] / totals['adaptlab']:.2f}x | |")
    lines.append(f"| **sweep** | | Trainer, group_by_length | {totals['Trainer, group_by_length']:.1f} | "
                 f"{totals['Trainer, group_by_length'] / totals['adaptlab']:.2f}x | |")
    lines.append(f"| **sweep** | | adaptlab | {totals['adaptlab']:.1f} | | |")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "trainer_vs_adaptlab.md").write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
