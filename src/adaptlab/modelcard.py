"""A short model card (README.md) for every run folder: what, how well, how to load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import RunConfig

LOADING = {
    "peft": """```python
from transformers import AutoModelForSequenceClassification
from peft import PeftModel
base = AutoModelForSequenceClassification.from_pretrained("{source}", num_labels={num_labels})
model = PeftModel.from_pretrained(base, "model")  # adapter and classification head
```""",
    "transformers": """```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("model")
tokenizer = AutoTokenizer.from_pretrained("model")
```""",
}


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
    ev = metrics["eval"]
    labels = metrics["task"]["labels"]
    lines = [
        f"# {metrics['strategy']} on {metrics['task']['source']}",
        "",
        f"Adapted from `{metrics['backbone']}` with adaptlab's `{metrics['strategy']}` strategy.",
        "",
        "| metric | value |",
        "|---|---|",
        *([f"| accuracy | {ev['accuracy']:.4f} |", f"| macro-F1 | {ev['macro_f1']:.4f} |"] if ev["accuracy"] is not None
          else [f"| held-out LM loss | {ev['loss']:.4f} |"]),
        f"| majority-class baseline | {metrics['majority_baseline']:.4f} |",
        f"| trainable parameters | {metrics['trainable_params']:,} of {metrics['total_params']:,} |",
        f"| train / eval examples | {metrics['train_examples']} / {metrics['eval_examples']} |",
        f"| training time | {metrics['train_seconds']:.1f} s |",
        "",
        f"Labels: {', '.join(f'{i}={name}' for i, name in enumerate(labels))}.",
        "",
        "## Use",
        "",
        "```python",
        "import adaptlab",
        "model = adaptlab.load(\"<this folder>\")",
        "model.predict([\"some text\"])",
        "```",
        "",
        "or `adaptlab predict <this folder> --input texts.csv`.",
    ]
    if artifact in LOADING:
        lines += ["", "Without adaptlab (from this folder):", "", LOADING[artifact].format(source=source, num_labels=len(labels))]
    else:
        lines += ["", f"`model/` holds only what trained, not a whole model: adaptlab rebuilds `{metrics['backbone']}` "
                  "and puts these tensors on it (safetensors files; the `.json` beside them has the options)."]
    lines += ["", "The full configuration is in `config.yaml`; per-epoch scores in `metrics.json`."]
    return "\n".join(lines) + "\n"
