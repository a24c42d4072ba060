"""Language modelling: continue a backbone's own objective on text (the ``language_modelling`` task type).

What domain-adaptive pretraining (``strategies/dapt.py``) runs: its runs are of
this task type whatever data they read, and their product is a backbone for a
later stage, not a model to predict with (``serves = False``).

The corpus becomes packed blocks of ``block_size`` tokens (texts joined by the
separator and cut, as transformers' ``run_mlm.py`` / ``run_clm.py`` group
texts), masked on the fly for training with transformers'
``DataCollatorForLanguageModeling`` (15 %, 80/10/10; Devlin et al. 2019 §3.1)
and once, with a fixed seed, for the held-out blocks, so every perplexity is
measured on the same masks. The model computes the head only where a token is
predicted (MLM: the masked 15 %), which keeps the 30k-word softmax cheap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..errors import AdaptlabError
from .base import register_task

MLM_PROBABILITY = 0.15
"""Share of tokens masked for masked-LM training and held-out scoring (Devlin et al. 2019 §3.1)."""


def read_corpus(source: str, text_column: str = "text") -> list[str]:
    """Texts of a bundled dataset, a ``.txt`` file (one document per line) or a data file's column."""
    from ..data.task import load_table

    path = Path(source)
    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise AdaptlabError(f"corpus file not found: {path}")
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        table = load_table(source)
        if text_column not in table.columns:
            raise AdaptlabError(f"column '{text_column}' not found in {table.source}; set strategy.text_column")
        texts = [str(row.get(text_column) or "").strip() for row in table.rows]
    texts = [t for t in texts if t]
    if not texts:
        raise AdaptlabError(f"corpus {source} holds no text")
    return texts


def pack(texts: list[str], tokenizer: Any, block_size: int, causal: bool) -> list[list[int]]:
    """Token blocks of ``block_size`` (special tokens included), documents separated."""
    sep = tokenizer.eos_token_id if causal else tokenizer.sep_token_id
    if sep is None:
        sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.pad_token_id
    head, tail = special_tokens(tokenizer)
    size = block_size - len(head) - len(tail)
    if size < 8:
        raise AdaptlabError(f"strategy.block_size={block_size} is too small")
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += ids + [sep]
    return [head + stream[i : i + size] + tail for i in range(0, len(stream), size) if len(stream[i : i + size]) >= size // 4]


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (BERT: [CLS] / [SEP])."""
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def split_blocks(blocks: list[list[int]], holdout: float, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    n_eval = max(2, round(len(blocks) * holdout))
    if len(blocks) - n_eval < 2:
        raise AdaptlabError(f"the corpus makes only {len(blocks)} blocks; give more text or a smaller block_size")
    return [blocks[i] for i in order[n_eval:]], [blocks[i] for i in order[:n_eval]]


class LMCollate:
    """Training rows: masked on the fly (MLM) or shifted targets (causal). Held-out rows carry fixed labels."""

    def __init__(self, tokenizer: Any, causal: bool, probability: float):
        from transformers import DataCollatorForLanguageModeling

        self.pad = tokenizer.pad_token_id or 0
        self.causal = causal
        self.mlm = None if causal else DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=probability)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.tensor([r["input_ids"] + [self.pad] * (width - len(r["input_ids"])) for r in rows])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows])
        if "lm_labels" in rows[0]:
            labels = torch.tensor([r["lm_labels"] + [-100] * (width - len(r["lm_labels"])) for r in rows])
        elif self.causal:
            labels = ids.masked_fill(mask == 0, -100)
        else:
            out = self.mlm([{"input_ids": r["input_ids"]} for r in rows])
            ids, labels = out["input_ids"], out["labels"]
        return {"input_ids": ids, "attention_mask": mask, "lm_labels": labels, "labels": labels}


def fixed_masks(blocks: list[list[int]], tokenizer: Any, causal: bool, probability: float, seed: int) -> list[dict]:
    """Held-out rows with their labels decided once (the same masks for every evaluation)."""
    collate = LMCollate(tokenizer, causal, probability)
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for block in blocks:
            b = collate([{"input_ids": block}])
            rows.append({"input_ids": b["input_ids"][0].tolist(), "lm_labels": b["lm_labels"][0].tolist()})
    return rows


@dataclass
class LMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    tokens: torch.Tensor | None = None


class DomainLM(nn.Module):
    """An LM (possibly peft-wrapped) whose head runs only on predicted positions.

    The head is the task model's one module outside its base model (BERT's ``cls``, a causal LM's ``lm_head``).
    Families whose masked-LM head is several modules that the model's forward strings together (DistilBERT's
    transform, norm and projector; ELECTRA's generator head; ModernBERT's head and decoder) run their own
    forward and the predicted positions are picked from its logits: the same loss, more memory.
    """

    def __init__(self, model: nn.Module, causal: bool):
        from ..eval.forgetting import find_backbone

        super().__init__()
        self.model, self.causal = model, causal
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        head = [m for n, m in inner.named_children() if n != inner.base_model_prefix and any(True for _ in m.parameters())]
        self.heads = tuple(head)  # the LM head's modules (a tuple: not registered twice)
        self._parts = (find_backbone(inner), head[0]) if len(head) == 1 else None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, lm_labels: torch.Tensor | None = None, **_: Any) -> LMOutput:
        if self._parts is None:  # the model's own head (several modules): its logits, then the predicted positions
            states = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            head = nn.Identity()
        else:
            trunk, head = self._parts
            states = trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if lm_labels is None:
            return LMOutput(logits=head(states))
        if self.causal:  # position t predicts token t + 1
            states, lm_labels = states[:, :-1], lm_labels[:, 1:]
        keep = lm_labels != -100
        logits = head(states[keep]).float()
        loss = F.cross_entropy(logits, lm_labels[keep]) if keep.any() else logits.sum() * 0
        return LMOutput(loss=loss, tokens=keep.sum())


@torch.inference_mode()
def lm_evaluate(model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, float]:
    """Mean loss per predicted token on held-out blocks, and its perplexity."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    for batch in batches:
        out = model(**{k: v for k, v in batch.items() if k != "labels"})
        part = torch.stack([out.loss.double() * out.tokens, out.tokens.double()])
        if accelerator is not None:
            part = accelerator.reduce(part.to(accelerator.device), reduction="sum")
        total += part.cpu()
    model.train(was_training)
    loss = float(total[0] / total[1].clamp(min=1))
    return {"loss": loss, "perplexity": float(torch.exp(torch.tensor(min(loss, 50.0)))), "tokens": int(total[1])}


@dataclass
class Texts:
    """Documents of a corpus split (``.texts``, as classification examples have)."""

    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Corpus:
    """A corpus split into training and held-out documents, as the runner expects of any task's data."""

    train: Texts
    eval: Texts
    source: str
    eval_name: str = "eval"
    extra_evals: dict[str, Texts] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    validation: Texts | None = None
    labels: list[str] = field(default_factory=list)


@register_task
class LanguageModelling:
    """Unlabelled text -> the backbone's own objective continued (masked-LM or next-word); held-out perplexity."""

    summary = "unlabelled text -> the backbone's own objective continued (held-out perplexity); a backbone for later stages"
    metrics = ("loss",)
    default_metric = "loss"  # the held-out loss per predicted token: lower is better
    columns = (("perplexity", "held-out perplexity", "{:.2f}"), ("loss", "held-out loss", "{:.4f}"))
    tolerance = 0.0
    peft_task_type = "SEQ_CLS"  # peft has no masked-LM type; the prepared model is wrapped in DomainLM anyway
    generative = False
    serves = False
    auto_class = "AutoModel"
    train_defaults: dict[str, Any] = {}

    def __init__(self, tokenizer: Any = None, causal: bool = False, seed: int = 0):
        self.tokenizer, self.causal, self.seed = tokenizer, causal, seed

    def detect(self, columns: list[str], data: Any) -> bool:
        return False  # chosen by --task or by a strategy (dapt), never guessed from a text column

    def configure(self, run_config: Any, backbone: Any) -> LanguageModelling:
        from ..eval.forgetting import lm_kind

        kind = lm_kind(backbone.config)
        if kind is None:
            raise AdaptlabError(f"language modelling needs a masked or causal language model, not '{backbone.family}'")
        return LanguageModelling(backbone.tokenizer, kind == "causal", run_config.train.seed)

    def load(self, cfg: Any, seed: int, table: Any = None) -> Corpus:
        """``data.train`` as a corpus (bundled dataset, ``.txt`` file or a table's ``text_column``); an
        ``eval_fraction`` of its documents held out."""
        texts = list(dict.fromkeys(read_corpus(cfg.train, cfg.text_column)))
        order = list(range(len(texts)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(texts) * cfg.eval_fraction))
        if len(texts) - n_eval < 1:
            raise AdaptlabError(f"corpus {cfg.train} has too few documents ({len(texts)}) to hold some out")
        held, kept = sorted(order[:n_eval]), sorted(order[n_eval:])
        return Corpus(Texts([texts[i] for i in kept]), Texts([texts[i] for i in held]), str(cfg.train))

    def encode(self, split: Any, backbone: Any, cfg: Any, max_length: int) -> list[dict[str, Any]]:
        """Packed blocks of ``max_length`` tokens with masks fixed once (seeded), so every score sees the same."""
        return fixed_masks(pack(split.texts, self.tokenizer, max_length, self.causal), self.tokenizer, self.causal, MLM_PROBABILITY, self.seed)

    def training_rows(self, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        return [{"input_ids": r["input_ids"]} for r in rows]  # training blocks are masked afresh every time

    def build(self, task: Any, **load: Any) -> nn.Module:
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

        cls = AutoModelForCausalLM if self.causal else AutoModelForMaskedLM
        return DomainLM(cls.from_pretrained(task.backbone.source, dtype=torch.float32), self.causal)

    def load_model(self, folder: Any, task: Any) -> nn.Module:
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

        cls = AutoModelForCausalLM if self.causal else AutoModelForMaskedLM
        return DomainLM(cls.from_pretrained(folder, dtype=torch.float32), self.causal)

    def collate(self, pad_token_id: int) -> LMCollate:
        return LMCollate(self.tokenizer, self.causal, MLM_PROBABILITY)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs.loss

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, Any]:
        return lm_evaluate(model, batches, accelerator)

    def headline(self, scores: dict[str, Any]) -> dict[str, Any]:
        return {k: scores.get(k) for k in ("loss", "perplexity")}

    def outcome(self, final: dict[str, Any], data: Any, history: list[dict], lr: float | None, trained: bool) -> dict[str, Any]:
        return {}

    def describe(self, scores: dict[str, Any]) -> str:
        return f"held-out perplexity {scores.get('perplexity') or float('nan'):.2f} (loss {scores.get('loss') or float('nan'):.4f})"

    def files(self, data: Any, scores: dict[str, Any]) -> dict[str, str]:
        return {}
