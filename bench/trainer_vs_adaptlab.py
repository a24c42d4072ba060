"""The default five-strategy sweep: adaptlab against the same five written with the Hugging Face Trainer.

For each strategy of the bundled demo (linear_probe, top_k, gradual_unfreeze,
full, lora) adaptlab trains first; then the Trainer trains the same model,
prepared by the same strategy object (same frozen parameters, same adapters,
same initial weights), on the same rows, for the same number of epochs at the
same learning rate, batch size, weight decay and dropout 0, with its recommended
length-grouped batches (``train_sampling_strategy="group_by_length"``).
gradual_unfreeze opens its groups from a ``TrainerCallback`` and uses its own
per-group learning rates, as in adaptlab.

Timed by one rule on both sides (``_fair.py``): **fit** from a loaded model and
tokenised rows to a trained model in memory (adaptlab's ``fit``, with no
validation split so neither side evaluates inside it; the Trainer's
construction plus ``train()``); the optimiser steps alone for the per-step
throughput; each side's fixed costs (load and tokenise, its own evaluation of
the held-out rows -- ``Trainer.predict`` -- and saving); and **end to end**, from
the call to a saved model and a score (imports excluded on both sides).

What adaptlab does differently is only how it runs the work: length buckets,
cached frozen computation (the linear probe's features; top_k's frozen blocks
from the second epoch) and no host sync per step.

    .venv/bin/python bench/trainer_vs_adaptlab.py                 # the demo sizes: ~11 min on 2 cores
    .venv/bin/python bench/trainer_vs_adaptlab.py --max-train 400 --strategies top_k,full

Writes bench/results/trainer_vs_adaptlab.{md,json}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from _fair import Clock, Side, adaptlab_side, table, write  # bench/ is on sys.path when this file runs
from gpu_vs_trainer import grouping

import adaptlab
from adaptlab.config import load_config
from adaptlab.strategies import Task, get_strategy
from adaptlab.strategies.base import hook, param_groups
from adaptlab.training.runner import make_setup, prepare_module, resolve_train


def demo_settings() -> tuple[dict, dict[str, dict]]:
    from importlib.resources import files

    recipe = yaml.safe_load((files("adaptlab.recipes") / "demo.yaml").read_text(encoding="utf-8"))
    return recipe, {s["name"]: s for s in recipe["strategies"]}


def ours(name: str, settings: dict, args, out: Path) -> tuple[Side, dict]:
    options = {k: v for k, v in settings.items() if k not in ("name", "train")}
    overrides = {"data.max_train": args.max_train, "data.max_eval": args.max_eval, "data.validation_fraction": 0, "train.dropout": 0.0,
                 "train.seed": args.seed, "train.progress": False, "train.checkpoint_every": None,
                 **{f"train.{k}": v for k, v in settings.get("train", {}).items()}, **{f"strategy.{k}": v for k, v in options.items()}}
    with Clock() as wall:
        run = adaptlab.train(strategy=name, backbone="minilm-l6", data="rotten-tomatoes", output=str(out / name), overrides=overrides)
    m = run.metrics
    side = adaptlab_side("adaptlab", m, wall.seconds, "examples", {"accuracy": m["eval"]["accuracy"]})
    return side, {"epochs": m["train_settings"]["epochs_run"], "lr": m["train_settings"]["lr"], "overrides": overrides}


def plain(name: str, mine: dict, args, out: Path) -> Side:
    """The same strategy's model, trained by transformers.Trainer with length-grouped batches."""
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

    from adaptlab.training.runner import fields_to_overrides

    cfg = load_config({"strategy": name, "backbone": "minilm-l6", "data": "rotten-tomatoes"},
                      fields_to_overrides({k.replace(".", "__"): v for k, v in mine["overrides"].items()}))
    fixed = {}
    with Clock() as wall:
        with Clock() as load:
            setup = make_setup(cfg)  # the same reading, loading and tokenising as adaptlab's
            strategy = get_strategy(name)(cfg.strategy)
            task = Task(setup.data.labels, setup.backbone, resolve_train(cfg), type=setup.task_type, run_config=cfg)
            module = prepare_module(strategy, task)
        fixed["load"] = load.seconds
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
        with Clock() as fit:
            targs = TrainingArguments(
                output_dir=str(out / f"trainer-{name}"), per_device_train_batch_size=cfg.train.batch_size, per_device_eval_batch_size=64,
                learning_rate=mine["lr"], num_train_epochs=mine["epochs"], lr_scheduler_type="linear", warmup_steps=cfg.train.warmup_ratio,
                weight_decay=cfg.train.weight_decay or 0.0, max_grad_norm=cfg.train.max_grad_norm or 0.0, seed=args.seed,
                report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no", dataloader_num_workers=0,
                use_cpu=not torch.cuda.is_available(), disable_tqdm=True, remove_unused_columns=False, label_names=["labels"],
                **grouping(True))
            trainer = Loss(model=module, args=targs, train_dataset=rows, data_collator=DataCollatorWithPadding(setup.backbone.tokenizer),
                           optimizers=(optimizer, None), callbacks=[Open()])
            with Clock() as steps:
                trainer.train()
        with Clock() as evaluation:
            held_out = [{k: r[k] for k in ("input_ids", "attention_mask", "labels") if k in r} for r in setup.eval_rows]
            predicted = trainer.predict(held_out)
            logits = predicted.predictions[0] if isinstance(predicted.predictions, tuple) else predicted.predictions
            accuracy = float((logits.argmax(-1) == predicted.label_ids).mean())
        fixed["evaluation"] = evaluation.seconds
        with Clock() as save:
            trainer.save_model(str(out / f"trainer-{name}" / "model"))
        fixed["save"] = save.seconds
    return Side("Trainer, group_by_length", fit.seconds, steps.seconds, len(rows) * mine["epochs"], wall.seconds, fixed,
                None, {"accuracy": accuracy})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-eval", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--strategies", default="linear_probe,top_k,gradual_unfreeze,full,lora")
    args = parser.parse_args()
    started = time.perf_counter()
    _, settings = demo_settings()
    lines = [f"# The demo sweep: adaptlab against the length-grouped Trainer (`bench/trainer_vs_adaptlab.py`)", "",
             f"MiniLM-L6, {args.max_train} Rotten Tomatoes examples (a fifth held out), dropout 0, the demo's per-strategy settings, "
             f"no validation split, torch {torch.__version__}, {torch.get_num_threads()} threads. Spans as in `bench/_fair.py`: *fit* "
             "from a loaded model and tokenised rows to a trained model in memory; *steps* the optimiser steps alone; *end to end* "
             "from the call to a saved model and its held-out accuracy.", ""]
    sides: dict[str, list[Side]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.strategies.split(","):
            mine, plan = ours(name, settings.get(name, {"name": name}), args, Path(tmp))
            sides[name] = [plain(name, plan, args, Path(tmp)), mine]
            lines += [f"## {name} ({plan['epochs']} epochs, lr {plan['lr']:.2e})", "", *table(sides[name], "examples"), ""]
            print("\n".join(lines[-5:]), flush=True)
    total = {path: Side(path, sum(s[i].fit_s for s in sides.values()), sum(s[i].steps_s for s in sides.values()),
                        sum(s[i].units for s in sides.values()), sum(s[i].end_to_end_s for s in sides.values()))
             for i, path in enumerate(("Trainer, group_by_length", "adaptlab"))}
    lines += ["## The whole sweep (sums)", "", *table(list(total.values()), "examples")]
    text = "\n".join(lines)
    print(text)
    write("trainer_vs_adaptlab", text, {"args": vars(args), "sides": sides, "sweep": total}, started)


if __name__ == "__main__":
    main()
