"""Plain functions that strategies share: freezing, finding layers, counting.

``requires_grad`` is the single source of truth for what trains: strategies only
flip it, the training loop only optimises parameters that have it set, and the
counts in ``metrics.json`` are read from it after the strategy prepared the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .placement import PlacementError, find_blocks  # noqa: F401 (strategies import them from here)


def freeze(module: nn.Module) -> nn.Module:
    """Stop every parameter of ``module`` from training."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(params: Iterable[nn.Parameter]) -> None:
    for p in params:
        p.requires_grad_(True)


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """Return ``(trainable, total)``, each shared tensor counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


@dataclass
class LayerGroups:
    """A transformer split bottom to top, as layer-wise strategies see it.

    ``bottom``: everything before the first block (embeddings); ``layers``: one
    list of parameters per block; ``top``: everything after the last block
    (pooler, final norm, classification head).
    """

    bottom: list[nn.Parameter]
    layers: list[list[nn.Parameter]]
    top: list[nn.Parameter]


def layer_groups(model: nn.Module) -> LayerGroups:
    """Split ``model``'s parameters into bottom, per-block and top groups.

    The bottom is what runs before the first block (embeddings, their norm and projection), found by
    running the model on two tokens up to its first block; the top is everything else outside the
    blocks (final norm, pooler, head). Registration order is not enough: OPT registers its final norm
    before its blocks, Bloom its embedding norm after its embeddings. A model that cannot run without
    other inputs falls back to registration order.
    """
    blocks = find_blocks(model)
    block_of = {id(p): i for i, block in enumerate(blocks) for p in block.parameters()}
    groups = LayerGroups(bottom=[], layers=[[] for _ in blocks], top=[])
    early = _run_before_blocks(model, blocks)
    seen_block = False
    for p in dict.fromkeys(model.parameters()):  # unique, in registration order
        if id(p) in block_of:
            groups.layers[block_of[id(p)]].append(p)
            seen_block = True
        elif early is not None:
            (groups.bottom if id(p) in early else groups.top).append(p)
        else:
            (groups.top if seen_block else groups.bottom).append(p)
    return groups


class _FirstBlock(Exception):
    """Raised when the first block is reached: nothing after it needs to run."""


@torch.no_grad()
def _run_before_blocks(model: nn.Module, blocks: nn.ModuleList) -> set[int] | None:
    """Ids of the parameters used before the first block runs, or None when the model cannot be run here."""
    used: set[int] = set()

    def record(module: nn.Module, args: tuple) -> None:
        used.update(id(p) for p in module.parameters(recurse=False))

    def stop(module: nn.Module, args: tuple) -> None:
        raise _FirstBlock

    hooks = [m.register_forward_pre_hook(record) for m in model.modules()]
    hooks.append(blocks[0].register_forward_pre_hook(stop))
    device = next(model.parameters()).device
    ids = torch.zeros(1, 2, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    except _FirstBlock:
        return used
    except Exception:  # another kind of model (other inputs): registration order decides
        return None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return None


def load_dtype(train_config: object | None) -> torch.dtype:
    """The dtype a backbone is loaded in: the one its matrix multiplications run in (``train.precision``; ``auto``:
    bf16 on GPUs that have it, fp32 elsewhere -- bf16 is ~20x slower on a CPU), so a frozen base takes half the
    memory on a GPU. What trains is held in fp32 by the training loop (:func:`upcast`). Engines that shard the
    model (FSDP, DeepSpeed) manage their own precision: fp32 there."""
    precision = getattr(train_config, "precision", "auto")
    if getattr(train_config, "distributed", "ddp") != "ddp":
        return torch.float32
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def upcast(params: Iterable[nn.Parameter]) -> int:
    """Hold ``params`` in fp32 (AdamW's master weights under mixed precision); returns how many were cast."""
    cast = 0
    for p in params:
        if p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    return cast


def set_dropout(config, p: float) -> None:
    """Set every dropout probability in a transformers config to ``p``.

    Dropout costs 1.3-1.6x per step on CPU; short fine-tuning runs rarely need it.
    """
    for key, value in list(vars(config).items()):
        if "dropout" in key and isinstance(value, float):
            setattr(config, key, p)


def snapshot(params: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Detached CPU copies, e.g. to keep the best weights seen so far."""
    return {name: t.detach().to("cpu", copy=True) for name, t in params}
