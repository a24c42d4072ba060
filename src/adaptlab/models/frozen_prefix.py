"""Compute a model's frozen lower blocks once per example, and train the blocks above on the cache.

When only the top ``k`` of ``L`` blocks train (``top_k``), every step would otherwise run the ``L - k``
frozen blocks again on the same inputs to the same result. :func:`cache_prefix` runs them once (eval
mode, no gradient) and keeps, per example, the hidden states that enter block ``L - k``;
:func:`install` makes the model skip those blocks whenever a batch carries such states
(``prefix_hidden``): the block list is cut to the trained blocks for that call, and the cached states
replace what reaches the first of them. The embeddings still run (a lookup: they make the attention
mask and the positions the blocks need, the same for every architecture) and their output is dropped.
A batch without ``prefix_hidden`` (prediction, the forgetting probe, a saved model) runs the whole model
as usual: nothing in the weights or the saved artefact changes.

No library does this for transformers models (feature caching in PEFT/SetFit stops at the pooled
output); it is hooks on the model's own modules, not a copy of its forward pass, so it works for every
family :func:`find_blocks` finds. Frozen blocks see no dropout (they run in eval mode), as when a
linear probe caches features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.batching import BucketBatchSampler, lengths_of
from ..eval.metrics import model_inputs
from .modeling import find_blocks

KEY = "prefix_hidden"


class _Stop(Exception):
    """Raised by the capture hook: nothing above the cached block needs to run."""

    def __init__(self, hidden: torch.Tensor):
        self.hidden = hidden


def _hidden_of(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _parent_of(model: nn.Module, blocks: nn.ModuleList) -> tuple[nn.Module, str]:
    for module in model.modules():
        for name, child in module.named_children():
            if child is blocks:
                return module, name
    raise ValueError("the block list has no parent module")


def install(model: nn.Module, frozen: int) -> None:
    """Let ``model`` take ``prefix_hidden`` (the input of block ``frozen``) in place of blocks below it."""
    blocks = find_blocks(model)
    parent, attr = _parent_of(model, blocks)
    top = nn.ModuleList(list(blocks)[frozen:])
    pending: list[torch.Tensor] = []

    def enter(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        hidden = kwargs.pop(KEY, None)
        if hidden is None:
            return None
        pending.append(hidden)
        setattr(parent, attr, top)  # this call runs only the trained blocks
        return args, kwargs

    def leave(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if pending:
            pending.clear()
            setattr(parent, attr, blocks)

    def swap(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if not pending:
            return None
        hidden = pending[-1].to(_hidden_of(args, kwargs).dtype)
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    model.register_forward_pre_hook(enter, with_kwargs=True)
    model.register_forward_hook(leave, with_kwargs=True, always_call=True)
    blocks[frozen].register_forward_pre_hook(swap, with_kwargs=True)


@torch.inference_mode()
def cache_prefix(model: nn.Module, frozen: int, rows: list[dict], collate: Any, batch_size: int,
                 device: torch.device) -> list[dict]:
    """Each row with ``prefix_hidden``: its (length, width) hidden states entering block ``frozen``."""
    block = find_blocks(model)[frozen]

    def capture(module: nn.Module, args: tuple, kwargs: dict) -> None:
        raise _Stop(_hidden_of(args, kwargs))

    handle = block.register_forward_pre_hook(capture, with_kwargs=True)
    was_training = model.training
    model.eval()
    out: list[dict] = list(rows)
    try:
        for ids in tqdm(BucketBatchSampler(lengths_of(rows), batch_size, shuffle=False), desc="caching frozen layers",
                        unit="batch", leave=False, disable=None):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                     for k, v in model_inputs(collate([rows[i] for i in ids])).items()}
            try:
                model(**batch)
                raise RuntimeError("the frozen prefix was never reached")
            except _Stop as stop:
                hidden = stop.hidden.float().cpu()
            for j, i in enumerate(ids):
                out[i] = {**rows[i], KEY: hidden[j, : len(rows[i]["input_ids"])].clone()}
    finally:
        handle.remove()
        model.train(was_training)
    return out


def pad_prefix(rows: list[dict], batch: dict[str, Any]) -> dict[str, Any]:
    """Add the rows' cached states to their batch, zero-padded to the batch's sequence width."""
    width = batch["input_ids"].shape[1]
    hidden = torch.zeros(len(rows), width, rows[0][KEY].shape[-1])
    for j, r in enumerate(rows):
        n = min(len(r[KEY]), width)
        hidden[j, :n] = r[KEY][:n]
    return {**batch, KEY: hidden}


def cache_bytes(rows: list[dict], width: int) -> int:
    return sum(len(r["input_ids"]) for r in rows) * width * 4
