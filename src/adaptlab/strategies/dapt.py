"""Domain-adaptive pretraining: continue the backbone's own objective on in-domain text.

Gururangan et al. 2020 ("Don't Stop Pretraining"): a second phase of
pretraining on unlabelled in-domain text (DAPT, §3), or on the task's own
training texts (TAPT, §4), before fine-tuning improves the task. Encoders
continue masked-language modelling (Devlin et al. 2019 §3.1), causal LMs
next-word prediction. Which parameters train in the stage is any registered
strategy's ``prepare`` (``method``: full, lora, top_k, ...).

The stage's product is a backbone: the artefact is a whole ``save_pretrained``
LM folder (a peft method is merged first, Hu et al. 2021 §4.1), which a later
stage uses as ``backbone: "@<stage>"``, and which keeps the weights the LM class
lacks (BERT's pooler) from the original checkpoint so that the classifier built
on it starts where the original would. Perplexity on held-out in-domain blocks
is reported before and after the stage. A freshly initialised MLM head (the
bundled MiniLM checkpoints ship none) would make "before" meaningless, so the
head first trains alone on the frozen backbone for ``head_epochs``: "before" is
that general backbone with a fitted head, "after" the adapted one.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..eval.forgetting import lm_kind
from ..models.modeling import freeze, unfreeze
from ..settings import StrategyConfig
from ..tasks.language_modelling import Corpus, DomainLM, LMCollate, fixed_masks, lm_evaluate, pack, read_corpus, split_blocks
from ._policy import method_of
from .base import Task, decay_groups, get_strategy, register


class DaptConfig(StrategyConfig):
    name: Literal["dapt"] = "dapt"
    corpus: str | None = None
    """In-domain text: a bundled dataset, a .txt file (a document per line) or a data file; ``null``: the task's training texts (TAPT)."""
    text_column: str = "text"
    """Text column when ``corpus`` is a table."""
    max_documents: int | None = Field(None, ge=1)
    """Use at most this many corpus documents (a seeded sample), for quick runs."""
    block_size: int = Field(128, ge=16)
    """Tokens per packed training block."""
    holdout: float = Field(0.1, gt=0, lt=1)
    """Share of the blocks held out for perplexity."""
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    """Share of tokens masked (encoders)."""
    method: str | dict[str, Any] = "full"
    """Strategy deciding what trains in this stage: a name or ``{name: lora, r: 16}`` (its ``prepare`` only)."""
    head_epochs: int | None = Field(None, ge=0)
    """Epochs training a fresh LM head alone first; ``null``: 1 when the head is fresh, else 0."""


def dapt_section(runs: list[dict[str, Any]]) -> list[str]:
    """Domain-adaptive pretraining: the stage's perplexity, and the task with vs without it."""
    stages = {r.get("run"): r for r in runs if r.get("dapt")}
    if not stages:
        return []
    lines = [
        "## Domain-adaptive pretraining",
        "",
        "| stage | backbone | objective | method | corpus | documents / blocks | held-out perplexity before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in stages.items():
        d = r["dapt"]
        before = "–" if d["perplexity_before"] is None else f"{d['perplexity_before']:.2f}"
        lines.append(f"| {name} | {r['backbone']} | {d['objective']} | {d['method']} | {d['corpus']} | "
                     f"{d['documents']:,} / {d['train_blocks']:,}+{d['eval_blocks']:,} | "
                     f"{before} → {d['perplexity_after']:.2f} |")
    pairs = []
    for r in runs:
        stage = stages.get(str(r.get("backbone", "")).lstrip("@")) if str(r.get("backbone", "")).startswith("@") else None
        if stage and r["eval"].get("accuracy") is not None:
            twin = next((o for o in runs if o["strategy"] == r["strategy"] and o["backbone"] == stage["backbone"]
                         and o.get("run") != r.get("run") and o["eval"].get("accuracy") is not None), None)
            if twin:
                pairs.append((twin, r))
    if pairs:
        lines += ["", "| strategy | accuracy without the stage | with it | difference |", "|---|---|---|---|"]
        for plain, adapted in pairs:
            a, b = plain["eval"]["accuracy"], adapted["eval"]["accuracy"]
            lines.append(f"| {plain['strategy']} ({plain.get('run')} vs {adapted.get('run')}) | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    return ["", *lines, "", "Before: the general backbone (with a fresh MLM head trained alone first when the "
            "checkpoint ships none); after: the adapted one, on the same held-out blocks and masks."]


@register
class Dapt:
    """Domain-adaptive pretraining (MLM or next-word) on in-domain text; a backbone for a later stage."""

    report_section = staticmethod(dapt_section)  # the report's section for the "dapt" block of metrics.json

    Config = DaptConfig
    train_defaults = {"lr": 1e-4, "epochs": 2, "schedule": "linear"}
    auto = ("epochs",)  # a fresh MLM head trains alone first: a range test would measure the head, not the stage
    tasks = ("classification", "language_modelling")  # the texts it reads: a task's training texts (TAPT) or a corpus
    task = "language_modelling"  # what its runs are, whatever the data: their product is a backbone

    def __init__(self, config: DaptConfig):
        self.config = config
        self.before: dict[str, float] | None = None
        self.info: dict[str, Any] = {}

    def _objective(self, task: Task) -> str:
        kind = lm_kind(task.backbone.config)
        if kind is None:
            raise AdaptlabError(f"dapt supports masked and causal language models, not '{task.backbone.family}'")
        return kind

    def dataset(self, data: Any, task: Task) -> tuple[list[dict], list[dict]]:
        """The corpus (never an evaluation text of the task), packed, with a held-out share."""
        c, seed = self.config, task.train_config.seed
        own = list(data.train.texts) + (list(data.validation.texts) if data.validation else [])  # TAPT: every training text
        texts = read_corpus(c.corpus, c.text_column) if c.corpus else own
        held_out = set(data.eval.texts)
        texts = [t for t in dict.fromkeys(texts) if t not in held_out]
        if c.max_documents and len(texts) > c.max_documents:
            texts = random.Random(seed).sample(texts, c.max_documents)
        causal = self._objective(task) == "causal"
        tok = task.backbone.tokenizer
        if isinstance(data, Corpus) and not c.corpus:  # language-modelling data: its held-out documents are the held-out part
            train, held = (pack(split.texts, tok, c.block_size, causal) for split in (data.train, data.eval))
            if len(train) < 2 or not held:
                raise AdaptlabError(f"the corpus makes {len(train)} training and {len(held)} held-out blocks of {c.block_size} "
                                    "tokens; give more text or a smaller strategy.block_size")
        else:
            train, held = split_blocks(pack(texts, tok, c.block_size, causal), c.holdout, seed)
        self.tokenizer, self.causal = tok, causal
        self.train_rows = [{"input_ids": b} for b in train]
        self.eval_rows = fixed_masks(held, tok, causal, c.mlm_probability, seed)
        self.info = {"corpus": c.corpus or f"{data.source} (training texts: TAPT)", "documents": len(texts),
                     "train_blocks": len(train), "eval_blocks": len(held), "block_size": c.block_size}
        return self.train_rows, self.eval_rows

    def build(self, task: Task) -> nn.Module:
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

        cls = AutoModelForCausalLM if self._objective(task) == "causal" else AutoModelForMaskedLM
        model, info = cls.from_pretrained(task.backbone.source, output_loading_info=True, dtype=torch.float32)
        prefix = model.base_model_prefix + "."
        self.fresh_head = any(not k.startswith(prefix) for k in info.get("missing_keys", []))
        model.config.pad_token_id = task.backbone.tokenizer.pad_token_id
        return model

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        c = self.config
        inner = method_of(c.method)
        prepared = inner.prepare(model, Task([], task.backbone, task.train_config))
        module = DomainLM(prepared, self._objective(task) == "causal")
        embedding = id(model.get_input_embeddings().weight)
        head = {id(q) for h in module.heads for q in h.parameters()}
        self.head_names = {n for n, p in module.named_parameters() if id(p) in head and id(p) != embedding}
        if self.fresh_head:
            unfreeze(p for n, p in module.named_parameters() if n in self.head_names)
        self.stage_names = {n for n, p in module.named_parameters() if p.requires_grad}
        self.head_epochs = c.head_epochs if c.head_epochs is not None else int(self.fresh_head)
        self.keep_best = task.train_config.keep_best if task.train_config else True
        if self.head_epochs:
            freeze(module)
            unfreeze(p for n, p in module.named_parameters() if n in self.head_names)
        self.source = task.backbone.source
        return module

    def on_epoch_start(self, epoch: int, module: nn.Module) -> None:
        """After the head-only epochs, open what the stage's method trains (idempotent)."""
        if epoch >= self.head_epochs:
            unfreeze(p for n, p in module.named_parameters() if n in self.stage_names)

    def param_groups(self, module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return decay_groups(((n, p) for n, p in module.named_parameters() if n in self.stage_names), lr, weight_decay)

    def precompute(self, module: DomainLM, rows: list[dict], batch_size: int, device: torch.device) -> list[dict]:
        """With a pretrained head, measure held-out perplexity once before any update."""
        if rows is self.train_rows and not self.fresh_head:
            from torch.utils.data import DataLoader

            loader = DataLoader(self.eval_rows, batch_size=batch_size, collate_fn=self.collate(0))
            self.before = lm_evaluate(module, ({k: v.to(device) for k, v in b.items()} for b in loader))
        return rows

    def collate(self, pad_token_id: int) -> LMCollate:
        return LMCollate(self.tokenizer, self.causal, self.config.mlm_probability)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs.loss

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, float]:
        return lm_evaluate(model, batches, accelerator)

    def extra_metrics(self, module: DomainLM, history: list[dict], rows: list[dict], device: torch.device) -> dict[str, Any]:
        before = self.before or (history[self.head_epochs - 1] if self.head_epochs and history else None)
        after = min(history, key=lambda h: h["loss"]) if self.keep_best else history[-1]
        objective = "next-token" if self.causal else "masked-lm"
        method = self.config.method if isinstance(self.config.method, str) else self.config.method.get("name")
        return {"dapt": {**self.info, "objective": objective, "method": method,
                         "head": "fresh (trained alone first)" if self.fresh_head else "pretrained", "head_epochs": self.head_epochs,
                         "loss_before": before and before["loss"], "perplexity_before": before and before["perplexity"],
                         "loss_after": after["loss"], "perplexity_after": after["perplexity"]}}

    @staticmethod
    def describe(metrics: dict[str, Any]) -> str:
        """The run's summary line: what adapting to the domain did to the held-out perplexity."""
        d = metrics.get("dapt") or {}
        return f"held-out perplexity {d.get('perplexity_before') or float('nan'):.2f} -> {d.get('perplexity_after') or float('nan'):.2f}"

    def save(self, module: DomainLM, folder: Path, task: Task) -> None:
        """A whole backbone folder: merged LM, plus the original weights the LM class lacks."""
        model = module.model
        if hasattr(model, "merge_and_unload"):  # on a copy: the trained module stays as it is
            model = copy.deepcopy(model).merge_and_unload()
        state = {**carried_over(self.source, model), **model.state_dict()}
        model.save_pretrained(folder, state_dict=state)
        task.backbone.tokenizer.save_pretrained(folder)

    def load(self, folder: Path, task: Task) -> nn.Module:
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

        causal = self._objective(task) == "causal"
        cls = AutoModelForCausalLM if causal else AutoModelForMaskedLM
        return DomainLM(cls.from_pretrained(folder, dtype=torch.float32), causal)


def carried_over(source: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Checkpoint tensors the LM class does not hold (e.g. BERT's pooler), under the LM's key names."""
    from safetensors import safe_open

    files = sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else []
    have, prefix = set(model.state_dict()), model.base_model_prefix + "."
    out = {}
    for file in files:
        with safe_open(str(file), "pt") as f:
            keys = list(f.keys())
            bare = not any(k.startswith(prefix) for k in keys)  # a base-model checkpoint (no "bert." prefix)
            for key in keys:
                name = prefix + key if bare else key
                if name.startswith(prefix) and name not in have:
                    out[name] = f.get_tensor(key)
    return out
