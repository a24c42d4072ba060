"""Stacks of language and task adapters, and masked-language-model training of language adapters (for mad_x).

Kept to the minimum MAD-X needs: a named stack of the bottleneck adapters of
``bottleneck.py`` after the feed-forward sub-layer of every block of a
BERT-style encoder (Pfeiffer et al. 2020, §2.2), the active stack chosen by name, and the masked-language-modelling stage that trains a
language adapter (through the shared training loop) with a cache keyed by
backbone, text and settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.utils import ModelOutput

from ..errors import AdaptlabError
from ..models.bottleneck import Bottleneck
from ..models.modeling import find_blocks, freeze
from ..models.placement import layout

log = logging.getLogger("adaptlab")
LANGUAGES = ("source", "target")


class AdapterStack(nn.ModuleDict):
    """The adapters of one block, applied in the order of ``active``, each residual."""

    active: list[str] = []

    def apply_stack(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.active:
            x = x + self[name](x)
        return x


def _after_block(module: nn.Module, args: Any, output: Any) -> Any:
    if isinstance(output, tuple):  # (hidden states, attentions...) in some families
        return (module.adapters.apply_stack(output[0]), *output[1:])
    return module.adapters.apply_stack(output)


def attach_adapters(model: nn.Module, reductions: dict[str, int], names: list[str]) -> None:
    """Add adapters ``names`` at the output of every block (after its feed-forward sub-layer and norm)."""
    width = layout(model).hidden
    for block in find_blocks(model):
        block.adapters = AdapterStack({name: Bottleneck(width, max(1, width // reductions[name])) for name in names})
        block.register_forward_hook(_after_block)


def set_active(model: nn.Module, names: list[str]) -> None:
    for module in model.modules():
        if isinstance(module, AdapterStack):
            module.active = [n for n in names if n in module]


class MaskedLM(nn.Module):
    """Encoder + an MLM head whose decoder is the (frozen) input embedding matrix; logits only where masked."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        h, emb = encoder.config.hidden_size, encoder.get_input_embeddings()
        width = emb.embedding_dim  # narrower than h in ALBERT and ELECTRA: the decoder is the embedding matrix
        eps = next((v for k in ("layer_norm_eps", "norm_eps", "layer_norm_epsilon") if isinstance(v := getattr(encoder.config, k, None), float)), 1e-12)
        self.encoder = encoder
        self.transform = nn.Sequential(nn.Linear(h, width), nn.GELU(), nn.LayerNorm(width, eps=eps))
        self.bias = nn.Parameter(torch.zeros(emb.weight.shape[0]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> ModelOutput:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return ModelOutput(hidden=self.transform(states))

    def mlm_loss(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        masked = labels != -100
        logits = hidden[masked] @ self.encoder.get_input_embeddings().weight.T + self.bias
        if not masked.any():  # a batch of short texts can draw no mask: no loss, not nan
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), labels[masked])


class MLMStage:
    """The masked-language-modelling stage as a strategy of the shared loop (hooks: collate, loss, evaluate)."""

    name = "mad_x-mlm"

    def __init__(self, module: MaskedLM, tokenizer: Any, probability: float):
        self.module, self.tokenizer, self.probability = module, tokenizer, probability

    def collate(self, pad_token_id: int) -> Any:
        from transformers import DataCollatorForLanguageModeling

        return DataCollatorForLanguageModeling(self.tokenizer, mlm_probability=self.probability, return_tensors="pt")

    def loss(self, outputs: ModelOutput, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module.mlm_loss(outputs["hidden"], batch["labels"])

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, float]:
        model.eval()
        total = n = 0.0
        for batch in batches:
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])["hidden"]
            total += self.module.mlm_loss(hidden, batch["labels"]).item()
            n += 1
        model.train()
        return {"loss": total / max(n, 1)}


def read_texts(source: str, column: str, limit: int) -> list[str]:
    from ..data.task import load_table

    table = load_table(source)
    if column not in table.columns:
        raise AdaptlabError(f"column '{column}' not found in {table.source}; columns present: {', '.join(table.columns)}")
    texts = [str(r[column]).strip() for r in table.rows if r.get(column) and str(r[column]).strip()][:limit]
    if len(texts) < 10:
        raise AdaptlabError(f"{table.source} has {len(texts)} texts; a language adapter needs more unlabelled text")
    return texts


def cache_key(task: Any, text: str, config: Any) -> str:
    keys = ("language_reduction", "mlm_texts", "mlm_epochs", "mlm_head_epochs", "mlm_lr", "mlm_probability", "text_column")
    settings = {k: getattr(config, k) for k in keys}
    raw = json.dumps([task.backbone.source, str(Path(text).resolve()) if Path(text).exists() else text, settings,
                      getattr(task.train_config, "seed", 0), "adapters at the block output"], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def train_language_adapter(model: nn.Module, language: str, text: str, config: Any, task: Any) -> dict[str, Any]:
    """Train (or load from the cache) the ``language`` adapter of ``model`` by masked language modelling."""
    from ..models.backbones import cache_dir

    names = {n: p for n, p in model.named_parameters() if f".adapters.{language}." in n}
    path = cache_dir() / "language-adapters" / f"{cache_key(task, text, config)}.safetensors"
    if config.cache and path.is_file():
        stored = load_file(path)
        with torch.no_grad():
            for n, p in names.items():
                p.copy_(stored[n.replace(f".adapters.{language}.", ".adapters.LANG.")])
        log.info("language adapter (%s) for %s loaded from %s", language, text, path)
        return {**json.loads(path.with_suffix(".json").read_text()), "cached": True}
    report = fit_language_adapter(model, language, text, config, task)
    if config.cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({n.replace(f".adapters.{language}.", ".adapters.LANG."): p.detach().contiguous().cpu() for n, p in names.items()}, path)
        path.with_suffix(".json").write_text(json.dumps(report), encoding="utf-8")
    return {**report, "cached": False}


def fit_language_adapter(model: nn.Module, language: str, text: str, config: Any, task: Any) -> dict[str, Any]:
    from ..settings import TrainConfig
    from ..training.loop import fit

    tokenizer, prefix = task.backbone.tokenizer, task.backbone.input_prefix
    texts = read_texts(text, config.text_column, config.mlm_texts)
    enc = tokenizer([prefix + t for t in texts], truncation=True, max_length=128)
    rows = [{"input_ids": ids, "attention_mask": mask} for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    n_eval = max(4, len(rows) // 20)
    set_active(model, [language])
    mlm = MaskedLM(model)
    train = task.train_config or TrainConfig()
    started, losses = time.perf_counter(), []
    device = next(model.parameters()).device  # fit trains on the accelerator's device; prepare hands back where it got
    # the MLM head is new when the backbone has none (e5): it first learns alone, so that the
    # language adapter then gets gradients through a meaningful head
    for stage, epochs in (("head", config.mlm_head_epochs), ("adapter", config.mlm_epochs)):
        if not epochs:
            continue
        for n, p in model.named_parameters():
            p.requires_grad_(stage == "adapter" and f".adapters.{language}." in n)
        cfg = TrainConfig(epochs=epochs, lr=config.mlm_lr, batch_size=train.batch_size, eval_batch_size=train.eval_batch_size,
                          schedule="linear", weight_decay=0.0, seed=train.seed, keep_best=False, checkpoint_every=None,
                          progress=train.progress, precision=train.precision, log_every=10**6)
        _, state = fit(MLMStage(mlm, tokenizer, config.mlm_probability), mlm, rows[n_eval:], rows[:n_eval], cfg,
                       pad_token_id=tokenizer.pad_token_id or 0)
        losses += [round(h["loss"], 4) for h in state.history]
    model.to(device)
    freeze(model)
    params = sum(p.numel() for n, p in model.named_parameters() if f".adapters.{language}." in n)
    report = {"text": text, "texts": len(rows) - n_eval, "params": params, "seconds": round(time.perf_counter() - started, 3),
              "mlm_loss": losses}
    log.info("language adapter (%s): %d params, MLM loss %s, %.0fs", language, params, report["mlm_loss"], report["seconds"])
    return report

