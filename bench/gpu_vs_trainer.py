"""adaptlab against the length-grouped Hugging Face Trainer (and TRL's SFTTrainer) on one GPU, side by side, one process.

Model shapes come from configs with random weights (throughput only: no download),
the text is real (Rotten Tomatoes reviews for classification, French -> English
verses for generative fine-tuning, both from the bundled datasets). Each pair runs
one after the other in the same process on the same device, with the same weights,
rows, batch size, learning rate, schedule, epochs, max length, dropout 0 and
precision (bf16 autocast on a GPU that has it, as Accelerate and the Trainer both
do). The Trainer runs with its recommended length-grouped batches; TRL at its
current defaults (gradient checkpointing, fused chunked LM head).

Timed by one rule on both sides (``_fair.py``): **fit** from a loaded model and
tokenised rows to a trained model in memory (adaptlab: its ``fit`` span, no
validation split; the Trainer: its construction plus ``train()``), the optimiser
steps alone for the per-step throughput, each side's fixed costs, and **end to
end** from the call to a saved model and its score. Peak GPU memory over the
whole call on both sides.

    make bench-setup
    .venv/bin/python bench/gpu_vs_trainer.py                       # on a CUDA machine
    .venv/bin/python bench/gpu_vs_trainer.py --tiny --train 64     # a CPU smoke test of the script

On a machine without the bundled asset packages: ``--export DIR`` here writes the
tokenizers and texts it needs into DIR; ``--assets DIR`` there reads them.
Writes a markdown table to stdout and to bench/results/gpu_vs_trainer.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import torch
from _fair import Clock, Side, adaptlab_side, table, write  # bench/ is on sys.path when this file runs

SHAPES = {  # random-weight configs: the shape is what costs, not the values
    "bert-base": ("bert", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)),
    "llama-135m": ("llama", dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                 intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True)),  # SmolLM2-135M
    "llama-1b": ("llama", dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                               intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True)),  # Llama-3.2-1B
}
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128)
SYSTEM = "You translate French into English."
LR = {"full": 5e-5, "lora": 1e-3}


def export(folder: Path) -> Path:
    """The tokenizers and texts the benchmark needs, written from the bundled packages."""
    from adaptlab.data.bundled import load_bundled
    from adaptlab.models.backbones import load_backbone

    folder.mkdir(parents=True, exist_ok=True)
    load_backbone("minilm-l6").tokenizer.save_pretrained(folder / "bert-tokenizer")
    load_backbone("smollm2-135m").tokenizer.save_pretrained(folder / "llama-tokenizer")
    with open(folder / "reviews.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(load_bundled("rotten-tomatoes").rows)
    with open(folder / "verses.jsonl", "w", encoding="utf-8") as f:
        for row in load_bundled("verses-fr-en").rows[:8000]:
            f.write(json.dumps({"prompt": row["prompt"], "response": row["response"]}, ensure_ascii=False) + "\n")
    return folder


def make_model(name: str, assets: Path, out: Path, tiny: bool, seed: int) -> Path:
    """A backbone folder: the shape's config with random weights (dropout 0), and a real tokenizer."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    family, shape = SHAPES[name]
    tokenizer = AutoTokenizer.from_pretrained(assets / f"{family}-tokenizer")
    shape = {**shape, **TINY} if tiny else shape
    extra = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0} if family == "bert" else {"attention_dropout": 0.0}
    config = AutoConfig.for_model(family, **shape, **extra, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    config.vocab_size = max(config.vocab_size, len(tokenizer))
    torch.manual_seed(seed)
    folder = out / name
    (AutoModel if family == "bert" else AutoModelForCausalLM).from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def reviews(assets: Path, n: int) -> list[dict]:
    with open(assets / "reviews.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))[:n]


def trainer_args(out: Path, args, lr: float, **extra):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, learning_rate=lr, num_train_epochs=1,
        lr_scheduler_type="linear", warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0, seed=args.seed,
        report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True,
        bf16=args.bf16, use_cpu=not torch.cuda.is_available(), **extra)


def hf_classifier(folder: Path, strategy: str, rows: list[dict], held_out: list[dict], args) -> Side:
    """The plain path: AutoModelForSequenceClassification (+ get_peft_model) and transformers.Trainer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer

    labels = sorted({r["label"] for r in rows})
    with Clock(peak=True) as wall:
        with Clock() as load:
            tok = AutoTokenizer.from_pretrained(folder)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token

            def encode(part: list[dict]) -> list[dict]:
                enc = tok([r["text"] for r in part], truncation=True, max_length=args.max_length)
                return [{"input_ids": ids, "attention_mask": m, "labels": labels.index(r["label"])}
                        for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], part)]

            data, test = encode(rows), encode(held_out)
            model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(labels), dtype=torch.float32)
            model.config.pad_token_id = tok.pad_token_id
            if strategy == "lora":
                model = peft_lora(model, folder)
        with tempfile.TemporaryDirectory() as out:
            with Clock() as fit:
                trainer = Trainer(model=model, args=trainer_args(Path(out), args, LR[strategy], **grouping(True)),
                                  train_dataset=data, data_collator=DataCollatorWithPadding(tok))
                with Clock() as steps:
                    trainer.train()
            with Clock() as evaluation:
                predicted = trainer.predict(test)
            with Clock() as save:
                trainer.save_model(str(Path(out) / "model"))
    accuracy = float((predicted.predictions.argmax(-1) == predicted.label_ids).mean())
    return Side("Trainer, group_by_length", fit.seconds, steps.seconds, sum(len(r["input_ids"]) for r in data), wall.seconds,
                {"load": load.seconds, "evaluation": evaluation.seconds, "save": save.seconds}, wall.peak_mb, {"accuracy": accuracy})


def grouping(grouped: bool) -> dict:
    """Length-grouped batches: ``train_sampling_strategy`` since transformers 5.20, ``group_by_length`` before."""
    import dataclasses

    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in fields:
        return {"train_sampling_strategy": "group_by_length" if grouped else "random"}
    return {"group_by_length": grouped}


def peft_lora(model, folder: Path):
    """The same LoRA settings adaptlab's ``lora`` strategy uses on this architecture."""
    from types import SimpleNamespace

    from peft import get_peft_model

    from adaptlab.models.backbones import load_backbone
    from adaptlab.strategies.lora import LoRA
    from adaptlab.tasks import get_task_type

    task = SimpleNamespace(backbone=load_backbone(str(folder)), type=get_task_type("classification"))
    return get_peft_model(model, LoRA(LoRA.Config()).peft_config(task, model))


def ours(folder: Path, strategy: str, data: Path, args, out: Path, **more) -> Side:
    import adaptlab

    with Clock(peak=True) as wall:
        run = adaptlab.train(strategy=strategy, backbone=str(folder), data=str(data), output=str(out),
                             overrides={"data.max_train": args.train, "data.max_eval": args.eval, "data.validation_fraction": 0,
                                        "data.max_length": args.max_length, "train.epochs": 1, "train.lr": LR[strategy],
                                        "train.batch_size": args.batch_size, "train.warmup_ratio": 0.1, "train.dropout": 0.0,
                                        "train.schedule": "linear", "train.weight_decay": 0.01, "train.seed": args.seed,
                                        "train.progress": False, "train.checkpoint_every": None, **more})
    m = run.metrics
    side = adaptlab_side("adaptlab", m, wall.seconds, "tokens", {k: m["eval"][k] for k in ("accuracy", "loss") if k in m["eval"]})
    side.peak_mb = wall.peak_mb
    return side


def trl_sft(folder: Path, rows: list[dict], args) -> Side:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    convo = [{"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["prompt"]}],
              "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows]
    with Clock(peak=True) as wall:
        with Clock() as load:
            tok = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        with tempfile.TemporaryDirectory() as out:
            with Clock() as fit:
                base = trainer_args(Path(out), args, LR["full"]).to_dict()
                base = {k: v for k, v in base.items() if k in SFTConfig.__dataclass_fields__ and not k.startswith("_")}
                config = SFTConfig(**{**base, "output_dir": out, "max_length": args.max_length, "completion_only_loss": True})
                trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(convo), processing_class=tok)
                with Clock() as steps:
                    trainer.train()
            with Clock() as save:
                trainer.save_model(str(Path(out) / "model"))
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return Side("TRL SFTTrainer (defaults)", fit.seconds, steps.seconds, tokens, wall.seconds,
                {"load": load.seconds, "save": save.seconds}, wall.peak_mb, {})


def verses(assets: Path, n: int) -> list[dict]:
    with open(assets / "verses.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line, _ in zip(f, range(n))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bert-base,llama-135m,llama-1b")
    parser.add_argument("--strategies", default="full,lora")
    parser.add_argument("--train", type=int, default=4000, help="training reviews (llama-1b: a third)")
    parser.add_argument("--eval", type=int, default=256)
    parser.add_argument("--sft", type=int, default=2000, help="verses for the SFT vs TRL rows (0: none)")
    parser.add_argument("--sft-max-length", type=int, default=384, help="tokens per conversation (no verse is cut at 384)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: check the script on a CPU")
    parser.add_argument("--assets", type=Path, help="a folder --export wrote (default: export from the bundled packages)")
    parser.add_argument("--export", type=Path, help="write the assets to this folder and stop")
    args = parser.parse_args()
    if args.export:
        print(f"assets written to {export(args.export)}")
        return
    args.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    started = time.perf_counter()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    lines = [f"# adaptlab vs the length-grouped Trainer on {device} (torch {torch.__version__}, {'bf16' if args.bf16 else 'fp32'}, "
             f"batch {args.batch_size}, max length {args.max_length}, 1 epoch, random weights: throughput only)", "",
             "Spans as in `bench/_fair.py`; peak memory is the GPU's over each whole call.", ""]
    results: dict[str, list[Side]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        assets = args.assets or export(tmp / "assets")
        for name in [m for m in args.models.split(",") if m]:
            folder = make_model(name, assets, tmp, args.tiny, args.seed)
            n = args.train // 3 if name == "llama-1b" else args.train
            data = reviews(assets, n + args.eval)
            with open(tmp / "data.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, ["text", "label"])
                writer.writeheader()
                writer.writerows(data)
            for strategy in args.strategies.split(","):
                base = hf_classifier(folder, strategy, data[:n], data[n:], args)
                args_n = argparse.Namespace(**{**vars(args), "train": n})
                mine = ours(folder, strategy, tmp / "data.csv", args_n, tmp / f"run-{name}-{strategy}")
                results[f"{name} {strategy}"] = [base, mine]
                lines += [f"## {name}, {strategy} ({n} reviews)", "", *table([base, mine], "tokens"), ""]
                print("\n".join(lines[-5:]), flush=True)
        if args.sft:
            folder = tmp / "llama-135m" if (tmp / "llama-135m").exists() else make_model("llama-135m", assets, tmp, args.tiny, args.seed)
            rows = verses(assets, args.sft)
            with open(tmp / "verses.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows + rows[:8])
            sft_args = argparse.Namespace(**{**vars(args), "max_length": args.sft_max_length, "batch_size": args.batch_size // 2})
            base = trl_sft(folder, rows, sft_args)
            args_n = argparse.Namespace(**{**vars(sft_args), "train": len(rows), "eval": 8})
            mine = ours(folder, "full", tmp / "verses.jsonl", args_n, tmp / "run-sft", **{"data.system": SYSTEM, "generation.max_new_tokens": 8})
            results["llama-135m sft full"] = [base, mine]
            lines += [f"## llama-135m, SFT full ({len(rows)} verses, batch {sft_args.batch_size}, max length {args.sft_max_length})", "",
                      *table([base, mine], "tokens"), ""]
            print("\n".join(lines[-5:]), flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.tiny:  # a smoke test's numbers are not results
        write("gpu_vs_trainer", text, {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, started)


if __name__ == "__main__":
    main()
