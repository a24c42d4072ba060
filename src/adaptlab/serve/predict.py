"""Loading a finished run folder and predicting with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import RunConfig, load_config, read_yaml
from ..data.batching import BucketBatchSampler, Collate, encode
from ..data.task import Examples
from ..errors import AdaptlabError
from ..eval.metrics import model_inputs
from ..models.backbones import Backbone, load_backbone
from ..strategies.base import Task, get_strategy, hook, load_pretrained


@dataclass
class Prediction:
    label: str
    probs: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probs": self.probs}


def read_run(run_dir: str | Path) -> tuple[Path, RunConfig, list[str]]:
    """Validate a run folder; return it with its config and label names."""
    run = Path(run_dir)
    if not run.is_dir():
        raise AdaptlabError(f"run folder not found: {run}")
    if not (run / "metrics.json").is_file():
        raise AdaptlabError(f"{run} is not a finished adaptlab run folder (no metrics.json)")
    from ..tasks import task_of

    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    task, task_type = metrics.get("task", {}), task_of(metrics)
    if not task_type.serves:
        raise AdaptlabError(f"{run} is a {task_type.name} run: its product is a backbone, not a model to predict with; "
                            f"use it as one (--backbone {run})")
    if task.get("labels") and not (run / "labels.json").is_file():
        raise AdaptlabError(f"{run} is not a finished adaptlab run folder (no labels.json)")
    cfg = load_config(read_yaml(run / "config.yaml"))
    if not (run / "labels.json").is_file():
        return run, cfg, []
    id2label = json.loads((run / "labels.json").read_text(encoding="utf-8"))["id2label"]
    return run, cfg, [id2label[str(i)] for i in range(len(id2label))]


class Predictor:
    """A trained run, ready to classify texts -- ``adaptlab.load(run_dir).predict(texts)`` -- or, for a
    generative (sft) run, to answer prompts: ``adaptlab.load(run_dir).generate(prompts)``."""

    def __init__(self, run_dir: str | Path, device: str | None = None, backbone: Backbone | None = None):
        from ..models.backbones import resolve_ref
        from ..tasks import get_task_type

        self.run_dir, self.config, self.labels = read_run(run_dir)
        self.backbone = backbone or load_backbone(resolve_ref(self.config.backbone, self.run_dir.parent))
        self.task_type = get_task_type(self.config.data.task or "classification").configure(self.config, self.backbone)
        self.strategy = get_strategy(self.config.strategy.name)(self.config.strategy)
        task = Task(self.labels, self.backbone, self.config.train, root=self.run_dir.parent, type=self.task_type, run_config=self.config)
        self.module = hook(self.strategy, "load", load_pretrained)(self.run_dir / "model", task)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module.to(self.device).eval()

    @property
    def generative(self) -> bool:
        return self.task_type.generative

    @property
    def kind(self) -> str:
        """What the run answers: ``chat`` (a generative policy), ``score`` (a reward model) or ``classify``."""
        if self.strategy.serves == "score":
            return "score"
        return "chat" if self.generative else "classify"

    def generate(self, prompts: list[str], batch_size: int | None = None, progress: bool = False) -> list[str]:
        """Answers to ``prompts`` with the run's template and generation settings (greedy unless set)."""
        if not self.generative:
            raise AdaptlabError(f"{self.run_dir} is a {self.task_type.name} run: use predict(), not generate()")
        if self.strategy.serves == "score":
            raise AdaptlabError(f"{self.run_dir} is a {self.strategy.name} run: it scores answers, use score(prompts, responses)")
        return self.task_type.generate(self.module, list(prompts), batch_size, progress)

    def score(self, prompts: list[str], responses: list[str], batch_size: int = 16, progress: bool = False) -> list[float]:
        """The reward of each response to its prompt, from a reward-model run (``adaptlab score``)."""
        scorer = hook(self.strategy, "score", None)
        if scorer is None:
            raise AdaptlabError(f"{self.run_dir} is a {self.strategy.name} run, not a reward model: score() needs a reward_model run")
        return scorer(self.module, self.task_type, list(prompts), list(responses), batch_size, progress)

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """Class probabilities, one row per text, in input order."""
        if not texts:
            return torch.empty(0, len(self.labels))
        from ..training.runner import input_length

        rows = encode(Examples(list(texts), [0] * len(texts), pairs), self.backbone.tokenizer,
                      input_length(self.config.data, self.backbone), self.backbone.input_prefix)
        collate = Collate(self.backbone.tokenizer.pad_token_id or 0)
        probs = torch.empty(len(rows), len(self.labels))
        batches = BucketBatchSampler([len(r["input_ids"]) for r in rows], batch_size, shuffle=False)
        for ids in tqdm(batches, desc="predicting", unit="batch", leave=False, disable=None if progress else True):
            batch = collate([rows[i] for i in ids])
            logits = self.module(**{k: v.to(self.device) for k, v in model_inputs(batch).items()}).logits
            probs[ids] = logits.float().softmax(-1).cpu()
        return probs

    def predict(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64, progress: bool = False) -> list[Prediction]:
        if self.generative:
            raise AdaptlabError(f"{self.run_dir} is a generative ({self.task_type.name}) run: use generate(prompts)")
        probs = self.predict_proba(texts, pairs, batch_size, progress)
        return [
            Prediction(self.labels[int(row.argmax())], {name: round(float(p), 6) for name, p in zip(self.labels, row)})
            for row in probs
        ]


def load(run_dir: str | Path, device: str | None = None) -> Predictor:
    """Load a finished run folder for prediction."""
    return Predictor(run_dir, device)


# -- command-line input and output -------------------------------------------------------


def read_inputs(path: Path | None, text_column: str | None = None, encoding: str = "utf-8") -> list[str]:
    """Texts to classify: a column of a data file, or stdin with one text per line."""
    import sys

    from ..data.files import read_table

    if path is None:
        texts = [line.rstrip("\n") for line in sys.stdin if line.strip()]
        if not texts:
            raise AdaptlabError("no input: pass --input FILE or pipe texts on stdin, one per line")
        return texts
    table = read_table(path, encoding)
    default = next((c for c in ("text", "prompt") if c in table.columns), "text")
    column = text_column or (default if default in table.columns or len(table.columns) != 1 else table.columns[0])
    if column not in table.columns:
        present = ", ".join(table.columns)
        raise AdaptlabError(f"column '{column}' not found in {path}; columns present: {present} (choose with --text-column)")
    return [str(row.get(column) or "") for row in table.rows]


def write_rows(rows: list[dict[str, Any]], path: Path | None) -> None:
    """JSONL to stdout or a file; CSV (one probability column per class) for ``.csv``."""
    import csv
    import io
    import sys

    buffer = io.StringIO()
    if path is not None and path.suffix.lower() == ".csv":
        classes = list(rows[0].get("probs", {})) if rows else []
        fields = [k for k in rows[0] if k != "probs"] + [f"p_{c}" for c in classes] if rows else ["text", "label"]
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: v for k, v in r.items() if k != "probs"}, **{f"p_{c}": r["probs"][c] for c in classes}})  # noqa: E501
    else:
        for r in rows:
            buffer.write(json.dumps(r, ensure_ascii=False) + "\n")
    if path is None:
        sys.stdout.write(buffer.getvalue())
    else:
        from ..training.checkpoint import write_atomic

        write_atomic(path, buffer.getvalue())
