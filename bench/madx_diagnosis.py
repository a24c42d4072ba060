"""Why MAD-X stayed at the majority class on the cross-lingual recipe, shown rather than asserted (issue 17).

For one MAD-X setting at a time (multilingual-e5-small, 300 English training reviews, 200 held-out English
and 200 Chinese ones), trains the strategy as ``adaptlab compare crosslingual-madx`` does and then scores
the same task adapter and head under every adapter stack:

- ``task`` alone (no language adapter: plain zero-shot transfer through the task adapter),
- ``source + task`` (what it trained with, when a source adapter exists),
- ``target + task`` (MAD-X's inference stack),

with the cosine similarity between the sentence embeddings with and without the target language adapter
(how far the language adapter moves the representation the head was trained on). A language adapter that
moves the embeddings away from what the head learned shows as high ``task``-alone accuracy with a low
similarity and a ``target + task`` accuracy at the majority class.

    python bench/madx_diagnosis.py                                   # the recipe's settings, then the fixed ones
    python bench/madx_diagnosis.py --only recipe
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

SETTINGS = {
    # as the recipe had it: no source adapter, the task adapter on the bare backbone, zh adapter swapped in
    "recipe": {"target_text": "reviews-zh-unlabelled", "mlm_texts": 300},
    # MAD-X as the paper trains it (§2.3): the task adapter over an English language adapter
    "source-adapter": {"target_text": "reviews-zh-unlabelled", "source_text": "rotten-tomatoes", "mlm_texts": 300},
}


def run(name: str, options: dict, out: Path) -> dict:
    from adaptlab.config import load_config
    from adaptlab.eval.metrics import evaluate
    from adaptlab.strategies import Task, get_strategy
    from adaptlab.strategies._adapters import set_active
    from adaptlab.strategies._fewshot import encode
    from adaptlab.training.loop import fit
    from adaptlab.training.runner import make_setup, prepare_module, resolve_train

    cfg = load_config({"backbone": "multilingual-e5-small", "strategy": {"name": "mad_x", **options},
                       "data": {"train": "sentiment-en", "eval": "en=sentiment-en,zh=sentiment-zh", "max_train": 300, "max_eval": 200},
                       "train": {"dropout": 0.0, "epochs": 5, "lr": 3e-3, "batch_size": 16, "progress": False, "checkpoint_every": None,
                                 "keep_best": False}})
    setup = make_setup(cfg)
    strategy = get_strategy("mad_x")(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
    started = time.perf_counter()
    module = prepare_module(strategy, task)
    module, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config)
    seconds = time.perf_counter() - started
    sets = {"en": setup.eval_rows, **{k: v for k, v in setup.extra_eval_rows.items()}}
    from torch.utils.data import DataLoader

    from adaptlab.data.batching import Collate

    stacks = {"task": ["task"], "target+task": ["target", "task"]}
    if "source_text" in options:
        stacks["source+task"] = ["source", "task"]
    scores = {}
    module.eval()
    for stack, names in stacks.items():
        set_active(module, names)
        for lang, rows in sets.items():
            scores[f"{lang} {stack}"] = evaluate(module, DataLoader(rows, batch_size=64, collate_fn=Collate(0)))["accuracy"]
    similarity = {}
    with torch.inference_mode():
        for lang, rows in sets.items():
            batch = Collate(0)(rows[:64])
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            set_active(module, ["task"])
            plain = encode(module.encoder, inputs)
            set_active(module, ["target", "task"])
            swapped = encode(module.encoder, inputs)
            similarity[lang] = float(torch.nn.functional.cosine_similarity(plain, swapped).mean())
    majority = {lang: max(sum(int(r["labels"]) == y for r in rows) for y in (0, 1)) / len(rows) for lang, rows in sets.items()}
    result = {"setting": name, "scores": scores, "embedding_cosine_with_vs_without_target_adapter": similarity,
              "majority": majority, "task_loss_per_epoch": [round(h["train_loss"], 4) for h in state.history],
              "language_adapters": strategy.report, "seconds": round(seconds, 1)}
    (out / f"madx-{name}.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SETTINGS))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run(n, SETTINGS[n], args.out) for n in SETTINGS if args.only in (None, n)]
    lines = ["| setting | stack | en acc | zh acc |", "|---|---|---|---|"]
    for r in results:
        for stack in ("task", "source+task", "target+task"):
            if f"en {stack}" in r["scores"]:
                lines.append(f"| {r['setting']} | {stack} | {r['scores'][f'en {stack}']:.3f} | {r['scores'][f'zh {stack}']:.3f} |")
    lines += ["", "| setting | cosine(with, without target adapter) en / zh | majority en / zh | task loss per epoch | MLM losses | s |",
              "|---|---|---|---|---|---|"]
    for r in results:
        sim, maj = r["embedding_cosine_with_vs_without_target_adapter"], r["majority"]
        mlm = "; ".join(f"{k}: {v.get('mlm_loss')}" for k, v in r["language_adapters"].items())
        lines.append(f"| {r['setting']} | {sim['en']:.3f} / {sim['zh']:.3f} | {maj['en']:.3f} / {maj['zh']:.3f} | "
                     f"{r['task_loss_per_epoch']} | {mlm} | {r['seconds']} |")
    text = "\n".join(lines)
    print(text)
    (args.out / "madx_diagnosis.md").write_text("# MAD-X on multilingual-e5-small: accuracy per adapter stack\n\n" + text + "\n")


if __name__ == "__main__":
    main()
