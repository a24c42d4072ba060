"""Log-probabilities of the labelled tokens only, in chunks: no (batch x length x vocabulary) logits.

A supervised or preference step needs ``log p(token)`` at the answer's positions and nothing else, yet a
causal LM's forward returns logits for every position over the whole vocabulary: for SmolLM2 (49,152
tokens) at batch 32 x 230 tokens that is 1.4 GB, kept for the backward pass with its log-softmax and its
gradient. :func:`install` wraps a model's ``forward`` the way TRL's ``add_fused_lm_head`` does (TRL is
not a dependency of adaptlab, and its function is bound to its trainer's outputs): called with
``answer_labels``, the wrapped forward runs the trunk, keeps the hidden states of the labelled positions
only, and projects them through the LM head in chunks of rows; each chunk is recomputed in the backward
pass (``torch.utils.checkpoint``), so at most one chunk's logits exist at a time. Without
``answer_labels`` (generation, prediction) the forward is the model's own.

The logits get the family's own scaling (Gemma's soft-capping, Granite's and Cohere's scales, read from
the config as TRL reads them); ``tests/models/test_lm_head.py`` checks the result against the model's
own full logits on every decoder family of the family matrix, so a family that scales another way fails
there by name.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.utils import ModelOutput

KEY = "answer_labels"
"""Batch key (a model input) of the labels whose log-probabilities the wrapped forward returns (-100: none)."""
IGNORE = -100
CHUNK_ELEMENTS = 2**24
"""Logits computed at once (rows x vocabulary): 64 MB in fp32."""


@dataclass
class AnswerOutput(ModelOutput):
    """What the wrapped forward returns for a batch with ``answer_labels``."""

    token_logps: torch.Tensor | None = None
    """``(batch, length - 1)``: position t's log-probability of token t + 1, 0 where that token is not labelled."""
    label_mask: torch.Tensor | None = None
    """``(batch, length - 1)``: which positions are labelled."""


def logit_transform(config: Any) -> tuple[float, float | None]:
    """``(scale, softcap)`` the family applies to ``lm_head``'s output (as TRL's ``add_fused_lm_head`` reads them)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    scale = getattr(text, "logit_scale", None)
    if scale is None:
        scale = getattr(text, "output_multiplier", None) or getattr(text, "lm_head_multiplier", None)
    if scale is None and getattr(text, "logits_scaling", None):
        scale = 1 / text.logits_scaling
    return float(1.0 if scale is None else scale), getattr(text, "final_logit_softcapping", None)


def _chunk(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, scale: float, softcap: float | None) -> torch.Tensor:
    logits = head(hidden).float()
    if scale != 1.0:
        logits = logits * scale
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return logits.gather(-1, targets[:, None]).squeeze(-1) - logits.logsumexp(-1)


def token_logps(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Module, scale: float = 1.0,
                softcap: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the labelled next tokens, computed only where labels are, in recomputed chunks.

    ``hidden`` may be longer than ``labels`` (prompt-learning models put virtual tokens in front): its last
    positions are the text's.
    """
    hidden = hidden[:, hidden.shape[1] - labels.shape[1]:]
    targets = labels[:, 1:]
    mask = targets != IGNORE
    rows, picked = hidden[:, :-1][mask], targets[mask]
    vocabulary = getattr(head, "out_features", None) or head.weight.shape[0]
    step = max(1, CHUNK_ELEMENTS // vocabulary)
    parts = []
    for start in range(0, rows.shape[0], step):
        piece = partial(_chunk, head=head, scale=scale, softcap=softcap)
        h, y = rows[start:start + step], picked[start:start + step]
        parts.append(checkpoint(piece, h, y, use_reentrant=False) if torch.is_grad_enabled() else piece(h, y))
    values = torch.cat(parts) if parts else rows.new_zeros(0, dtype=torch.float32) + 0 * rows.sum()
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values), mask


def _answer_forward(self: nn.Module, *args: Any, answer_labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
    if answer_labels is None:
        return type(self).forward(self, *args, **kwargs)
    kwargs.pop("logits_to_keep", None)
    trunk = self.base_model
    outputs = trunk(*args, **kwargs)
    hidden = outputs[0] if isinstance(outputs, tuple) else outputs.last_hidden_state
    scale, softcap = logit_transform(self.config)
    logps, mask = token_logps(hidden, answer_labels, self.get_output_embeddings(), scale, softcap)
    return AnswerOutput(token_logps=logps, label_mask=mask)


def install(model: nn.Module) -> nn.Module:
    """Give a transformers causal LM the ``answer_labels`` forward (idempotent); models without a separate trunk
    and output embeddings are left as they are (their losses read full logits)."""
    if getattr(model, "_adaptlab_answer_forward", False):
        return model
    trunk = getattr(model, "base_model", None)
    if trunk is None or trunk is model or model.get_output_embeddings() is None:
        return model
    # the model's own signature stays visible: generate checks its arguments against it
    model.forward = types.MethodType(functools.wraps(type(model).forward)(_answer_forward), model)
    model._adaptlab_answer_forward = True
    return model


def answer_logps(outputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(token_logps, mask)``, each ``(batch, length - 1)``: from the wrapped forward, or from full logits (a model
    :func:`install` could not wrap; a prompt-learning model's virtual positions in front are dropped)."""
    if getattr(outputs, "token_logps", None) is not None:
        return outputs.token_logps, outputs.label_mask
    logits = outputs.logits[:, outputs.logits.shape[1] - labels.shape[1]:]
    targets = labels[:, 1:]
    mask = targets != IGNORE
    logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    return logps.masked_fill(~mask, 0.0), mask
