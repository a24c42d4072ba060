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


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks: the longest ModuleList of one block type.

    Works for BERT (``encoder.layer``), Llama (``model.layers``), GPT-2
    (``transformer.h``), DistilBERT and others without a per-family table.
    """
    best: nn.ModuleList | None = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(m) for m in module}) == 1 and (best is None or len(module) > len(best)):
                best = module
    if best is None:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}")
    return best


def layer_groups(model: nn.Module) -> LayerGroups:
    """Split ``model``'s parameters into bottom, per-block and top groups.

    Parameters are ordered as modules are registered (embeddings, blocks, pooler,
    head), so whatever precedes the first block is the bottom and whatever
    follows the last block is the top.
    """
    blocks = find_blocks(model)
    block_of = {id(p): i for i, block in enumerate(blocks) for p in block.parameters()}
    groups = LayerGroups(bottom=[], layers=[[] for _ in blocks], top=[])
    seen_block = False
    for p in dict.fromkeys(model.parameters()):  # unique, in registration order
        if id(p) in block_of:
            groups.layers[block_of[id(p)]].append(p)
            seen_block = True
        else:
            (groups.top if seen_block else groups.bottom).append(p)
    return groups


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
