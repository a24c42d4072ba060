"""A short model card (README.md) for every run folder: what, how well, how to load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..tasks import task_of

LOADING = {
    "peft": """```python
from transformers import {auto}
from peft import PeftModel
base = {auto}.from_pretrained("{source}"{head})
model = PeftModel.from_pretrained(base, "model")  # the adapter{and_head}
```""",
    "transformers": """```python
from transformers import {auto}, AutoTokenizer
model = {auto}.from_pretrained("model")
tokenizer = AutoTokenizer.from_pretrained("model")
```""",
}
NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "chrf": "chrF", "bleu": "BLEU", "rouge_l": "ROUGE-L",
         "exact_match": "exact match", "loss": "eval loss", "perplexity": "perplexity"}


def artifact_kind(folder: Path) -> str:
    """What a run's ``model/`` folder holds, read from the files the strategy wrote (not from its name):
    ``peft`` (an adapter folder), ``transformers`` (a whole ``save_pretrained`` model) or ``adaptlab``
    (only the trained tensors -- a head, bottleneck adapters -- which adaptlab puts back on the backbone)."""
    if (folder / "adapter_config.json").is_file():
        return "peft"
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    if (folder / "config.json").is_file() and any((folder / w).is_file() for w in weights):
        return "transformers"
    return "adaptlab"


def model_card(metrics: dict[str, Any], cfg: RunConfig, artifact: str = "transformers", source: str = "") -> str:
    """The card's text; ``artifact`` (see :func:`artifact_kind`) picks the loading snippet, ``source`` is the backbone's."""
    ev = {k: v for k, v in metrics["eval"].items() if v is not None}
    labels = metrics["task"]["labels"]
    task_type = task_of(metrics)
    lines = [
        f"# {metrics['strategy']} on {metrics['task']['source']}",
        "",
        f"Adapted from `{metrics['backbone']}` with adaptlab's `{metrics['strategy']}` strategy.",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {NAMES.get(k, k)} | {v:.4f} |" for k, v in ev.items()],
        *([f"| majority-class baseline | {metrics['majority_baseline']:.4f} |"] if "majority_baseline" in metrics else []),
        f"| trainable parameters | {metrics['trainable_params']:,} of {metrics['total_params']:,} |",
        f"| train / eval examples | {metrics['train_examples']} / {metrics['eval_examples']} |",
        f"| training time | {metrics['train_seconds']:.1f} s |",
        "",
        *adapted_lines(metrics.get("adapted_modules")),
        *([f"Labels: {', '.join(f'{i}={name}' for i, name in enumerate(labels))}.", ""] if labels else []),
        *use(task_type, metrics),
    ]
    if artifact in LOADING:
        head = "" if not labels else f", num_labels={len(labels)}"
        text = LOADING[artifact].format(auto=task_type.auto_class, source=source, head=head, and_head=" and classification head" if labels else "")
        lines += ["", "Without adaptlab (from this folder):", "", text]
    else:
        lines += ["", f"`model/` holds only what trained, not a whole model: adaptlab rebuilds `{metrics['backbone']}` "
                  "and puts these tensors on it (safetensors files; the `.json` beside them has the options)."]
    lines += ["", "The full configuration is in `config.yaml`; per-epoch scores in `metrics.json`."]
    return "\n".join(lines) + "\n"


def adapted_lines(adapted: dict[str, Any] | None) -> list[str]:
    """What trained, layer by layer, as metrics.json's ``adapted_modules`` records it (read from the model)."""
    if not adapted:
        return []
    rows = [f"| {adapted['blocks']}.*.{r['module']} | {r['blocks']} | {r['how']} |" for r in adapted["in_blocks"]]
    rows += [f"| {r['module']} | | {r['how']} |" for r in adapted["outside_blocks"]]
    if not rows:
        return ["Nothing trained: the backbone is used as it is.", ""]
    return ["What trained (read from the model after the strategy prepared it):", "", "| module | blocks | how |", "|---|---|---|",
            *rows, ""]


def use(task_type: Any, metrics: dict[str, Any]) -> list[str]:
    """How to use the run: predict, generate, or (a backbone for later stages) train on it."""
    generative = task_type.generative
    if not task_type.serves:
        return ["## Use", "", f"A backbone for a later stage: `adaptlab train --backbone <this folder> ...`, or "
                f"`backbone: \"@{metrics.get('run', '<this stage>')}\"` in a recipe with stages."]
    return [
        "## Use",
        "",
        "```python",
        "import adaptlab",
        "model = adaptlab.load(\"<this folder>\")",
        "model.generate([\"a prompt\"])" if generative else "model.predict([\"some text\"])",
        "```",
        "",
        "or `adaptlab generate <this folder> --input prompts.jsonl`." if generative else "or `adaptlab predict <this folder> --input texts.csv`.",
    ]
