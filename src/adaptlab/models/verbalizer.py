"""Classifying without a trained head: label texts scored by a frozen model.

Two scorers turn a pretrained model into a classifier whose "weights" are the
names (or short descriptions) of the classes:

- :class:`EmbeddingScorer` (encoders): the text and each label description are
  embedded (mean pooling, L2 norm: the sentence-transformers embedding) and the
  cosine similarity is the label's score -- the embedding-similarity zero-shot
  baseline of Veeranna et al. 2016 / Yin et al. 2019 §4.
- :class:`LMScorer` (causal LMs): the text is put into a prompt template and
  each label's verbalisation is scored by its mean (or total) log-probability as
  the continuation (Brown et al. 2020, §2; Schick & Schütze 2021 "verbalizers").
  Wrapping a prompt-tuned peft model, the same scorer gives Lester et al.'s
  (2021) setup: a frozen LM, only the soft prompt trains, no new head.

Both take the batch the runner already tokenised (``input_ids``,
``attention_mask``) and return ``logits`` (batch x labels), so the loop,
evaluation and ``adaptlab predict`` use them like any classifier.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import field_validator
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..errors import AdaptlabError
from ..settings import StrategyConfig


class VerbalizerOptions(StrategyConfig):
    """Options shared by strategies that score label texts (zero-shot, prompt tuning on causal LMs)."""

    label_texts: dict[str, str] | None = None
    """Text standing for each label (keys: label names): a short description for encoders, the answer word(s) for causal LMs; ``null`` uses the label names."""
    template: str = "{text}\nAnswer: {label}"
    """Prompt for causal LMs: ``{text}`` is the input, ``{label}`` (at the end) where each label's text is scored."""
    score: Literal["mean", "sum"] = "mean"
    """Causal LMs: a label's score is the mean (or total) log-probability of its tokens."""

    @field_validator("template")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if "{text}" not in value:
            raise ValueError("the template needs a {text} placeholder")
        return value


def is_causal_lm(config: Any) -> bool:
    """Whether a backbone is a causal language model (by its saved architecture)."""
    names = getattr(config, "architectures", None) or []
    return any(n.endswith(("ForCausalLM", "LMHeadModel")) for n in names)


def label_texts(options: VerbalizerOptions, labels: list[str]) -> list[str]:
    """The text of each label, in label order; unknown or missing names are input errors."""
    given = options.label_texts or {}
    unknown = sorted(set(given) - set(labels))
    if unknown:
        raise AdaptlabError(f"label_texts names labels the data does not have: {', '.join(unknown)} (labels: {', '.join(labels)})")
    return [given.get(name, name) for name in labels]


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class EmbeddingScorer(nn.Module):
    """Cosine similarity between the text's embedding and each label description's, times ``scale``."""

    def __init__(self, encoder: nn.Module, tokenizer: Any, texts: list[str], scale: float = 20.0, prefix: str = ""):
        super().__init__()
        self.encoder, self.scale = encoder, scale
        encoder.eval()
        enc = tokenizer([prefix + t for t in texts], padding=True, return_tensors="pt")
        with torch.no_grad():
            self.register_buffer("label_embeddings", self.embed(**enc), persistent=False)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        return nn.functional.normalize(mean_pool(states, attention_mask).float(), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.scale * self.embed(input_ids, attention_mask, **inputs) @ self.label_embeddings.T)


class LMScorer(nn.Module):
    """Log-probability of each label's verbalisation after the prompt, by a causal LM (or a peft model of one)."""

    def __init__(self, lm: nn.Module, tokenizer: Any, texts: list[str], template: str, score: str = "mean", chunk: int = 16):
        super().__init__()
        self.lm, self.score, self.chunk = lm, score, chunk
        before, after = template.split("{text}", 1)
        suffix = after.split("{label}", 1)[0]
        lead = suffix[len(suffix.rstrip(" ")):]  # "Answer: {label}": the space belongs to the label's first token
        suffix = suffix[: len(suffix) - len(lead)]
        adds_bos = tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        self.prefix = ([tokenizer.bos_token_id] if adds_bos else []) + tokenizer(before, add_special_tokens=False)["input_ids"]
        self.suffix = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
        self.labels = [tokenizer(lead + t, add_special_tokens=False)["input_ids"] for t in texts]
        if any(not ids for ids in self.labels):
            raise AdaptlabError("a label text is empty after tokenisation; set strategy.label_texts")
        self.special = set(tokenizer.all_special_ids)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def sequences(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[list[list[int]], list[int]]:
        """Prompt + text + label tokens for every (example, label), and where each label starts."""
        rows, starts = [], []
        for b in range(input_ids.shape[0]):
            ids = input_ids[b][attention_mask[b].bool()] if attention_mask is not None else input_ids[b]
            context = self.prefix + [i for i in ids.tolist() if i not in self.special] + self.suffix
            for label in self.labels:
                rows.append(context + label)
                starts.append(len(context))
        return rows, starts

    def label_scores(self, logits: torch.Tensor, rows: list[list[int]], starts: list[int], width: int) -> torch.Tensor:
        """Mean (or summed) log-probability of each row's label tokens, predicted one position earlier."""
        offset = logits.shape[1] - width  # soft-prompt positions a peft model put in front
        longest = max(len(r) - s for r, s in zip(rows, starts))
        steps = torch.arange(longest, device=logits.device)
        start = torch.tensor(starts, device=logits.device)[:, None]
        length = torch.tensor([len(r) - s for r, s in zip(rows, starts)], device=logits.device)[:, None]
        valid = steps[None] < length
        positions = (start - 1 + steps[None]).clamp(max=width - 1) + offset
        targets = torch.tensor([r[s:] + [0] * (longest - len(r) + s) for r, s in zip(rows, starts)], device=logits.device)
        picked = logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1])).float().log_softmax(-1)
        logp = picked.gather(-1, targets[..., None]).squeeze(-1) * valid
        return logp.sum(1) / (length.squeeze(1) if self.score == "mean" else 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **ignored: Any) -> SequenceClassifierOutput:
        rows, starts = self.sequences(input_ids, attention_mask)
        device = input_ids.device
        scores = []
        for first in range(0, len(rows), self.chunk):
            part, begin = rows[first : first + self.chunk], starts[first : first + self.chunk]
            width = max(map(len, part))
            ids = torch.tensor([r + [self.pad] * (width - len(r)) for r in part], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in part], device=device)
            logits = self.lm(input_ids=ids, attention_mask=mask).logits
            scores.append(self.label_scores(logits, part, begin, width))
        return SequenceClassifierOutput(logits=torch.cat(scores).view(input_ids.shape[0], len(self.labels)))
