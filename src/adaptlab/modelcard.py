"""A short model card (README.md) for every run folder: what, how well, how to load."""

from __future__ import annotations

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


def model_card(metrics: dict[str, Any], cfg: RunConfig, artifact: str = "transformers", source: str = "") -> str:
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
    lines += ["", "The full configuration is in `config.yaml`; per-epoch scores in `metrics.json`."]
    return "\n".join(lines) + "\n"
