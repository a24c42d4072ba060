"""Where things are inside a transformer, read from the model itself.

Strategies reach into a model's blocks: LoRA, DoRA and (IA)^3 adapt its projections,
bottleneck adapters (Houlsby, Pfeiffer, Compacter, MAD-X) follow the projection that ends
each sub-layer, top_k and gradual_unfreeze count its blocks, prefix tuning needs its
key/value geometry. Each transformers family names, fuses or transposes these differently
(Phi-3's fused ``qkv_proj`` and ``gate_up_proj``, GPT-2's ``Conv1D`` ``c_attn``, NeoX's
``query_key_value``, ModernBERT's ``Wqkv``, DeBERTa's ``query_proj``), so a table of names
per family is always behind; :func:`layout` reads the modules instead:

- the blocks: the ``ModuleList`` of ``num_hidden_layers`` modules of one type that hold an
  attention module (:func:`find_blocks`);
- in one block, its linear layers (``nn.Linear`` and subclasses, GPT-2's ``Conv1D``) in
  registration order; the attention sub-layer is the outermost submodule whose class is an
  ``...Attention``, the feed-forward sub-layer is every other linear layer of the block;
- in each sub-layer, the output projection is the last one that writes the model's width,
  the input projections the others that read it (separate q/k/v or one fused qkv);
- the key/value geometry: heads and head width from the config, key-value heads from the
  width of the key (or fused) projection, so grouped- and multi-query attention need no flag;
- the task head: the task model's children outside its base model (new weights).

:data:`OVERRIDES` (``architectures.py``) corrects a family where reading is ambiguous;
``tests/models/test_placement.py`` checks the reading on every family of the family matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from ..errors import AdaptlabError


class PlacementError(AdaptlabError):
    """The model's layout cannot be read; the message names what was found and the setting that fixes it."""


def linear_shape(module: nn.Module) -> tuple[int, int] | None:
    """``(in_features, out_features)`` of a linear layer (``nn.Linear`` or GPT-2's ``Conv1D``), also when a peft
    layer or a bottleneck adapter wraps it; else None."""
    if hasattr(module, "get_base_layer") and module.get_base_layer() is not module:  # peft's tuner layers
        return linear_shape(module.get_base_layer())
    if isinstance(getattr(module, "base", None), nn.Module) and isinstance(getattr(module, "adapter", None), nn.Module):
        return linear_shape(module.base)  # bottleneck.Adapted
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx"):
        return int(module.nx), int(module.nf)
    return None


@dataclass(frozen=True)
class Projection:
    name: str
    """Path relative to one block (``self_attn.q_proj``)."""
    in_features: int
    out_features: int
    transposed: bool = False
    """Weights stored (in, out), as GPT-2's ``Conv1D`` does."""


@dataclass(frozen=True)
class SubLayer:
    """The attention or the feed-forward part of a block."""

    path: str
    """The sub-layer's module relative to the block; ``""`` when its layers sit in the block itself."""
    inputs: tuple[Projection, ...]
    """Projections that read the sub-layer's input (q, k, v or a fused qkv; gate and up, or fc1)."""
    output: Projection
    """The projection that ends the sub-layer: what a bottleneck adapter follows."""

    @property
    def names(self) -> tuple[str, ...]:
        return (*(p.name for p in self.inputs), self.output.name)


@dataclass(frozen=True)
class Geometry:
    heads: int
    kv_heads: int
    """Key-value heads (fewer than ``heads`` with grouped- or multi-query attention)."""
    head_dim: int


@dataclass(frozen=True)
class Layout:
    """Where things are in one model, as strategies need them."""

    family: str
    blocks: str
    """Path of the block list in the model (``model.layers``, ``bert.encoder.layer``)."""
    num_blocks: int
    hidden: int
    attention: SubLayer
    feed_forward: SubLayer
    geometry: Geometry
    key_value: tuple[str, str] | None
    """The separate key and value projections (relative to a block); None when fused with the query."""
    fused_qkv: str | None
    """The one projection that computes queries, keys and values together, when the family fuses them."""
    shared: bool = False
    """One block's weights serve every layer (ALBERT): there are no separate top layers."""
    layers: int = 0
    """Layers the model computes (``num_hidden_layers``; more than ``num_blocks`` when blocks are shared)."""
    pooler: tuple[str, ...] = ()
    """Linear layers of the base model after its blocks (BERT's and ALBERT's pooler), full names: what a
    classification head reads."""

    @property
    def projections(self) -> tuple[str, ...]:
        """Every attention and feed-forward projection of a block (what LoRA adapts)."""
        return (*self.attention.names, *self.feed_forward.names)

    def full_names(self, names: tuple[str, ...] | list[str], blocks: range | list[int] | None = None) -> list[str]:
        chosen = range(self.num_blocks) if blocks is None else blocks
        return [f"{self.blocks}.{i}.{name}" for i in chosen for name in names]

    def pattern(self, names: tuple[str, ...] | list[str], prefix: str = "") -> str:
        """A regular expression (peft's ``target_modules`` as a string: a full match) for ``names`` in every block."""
        alternatives = "|".join(re.escape(n) for n in names)
        return rf"{re.escape(prefix)}{re.escape(self.blocks)}\.\d+\.(?:{alternatives})"

    def describe(self) -> dict[str, Any]:
        """The layout in metrics.json and ``adaptlab plan-memory``."""
        return {"family": self.family, "blocks": f"{self.blocks}.0-{self.num_blocks - 1}", "layers": self.layers,
                "attention": list(self.attention.names), "feed_forward": list(self.feed_forward.names),
                "attention_output": self.attention.output.name, "feed_forward_output": self.feed_forward.output.name,
                "fused_qkv": self.fused_qkv, "key_value": list(self.key_value) if self.key_value else None,
                "heads": self.geometry.heads, "kv_heads": self.geometry.kv_heads, "head_dim": self.geometry.head_dim,
                "shared_blocks": self.shared, "pooler": list(self.pooler)}


def require_separate_blocks(found: Layout, strategy: str) -> None:
    """One line for strategies that train some layers apart from others, on a model whose layers share weights."""
    if found.shared:
        raise PlacementError(f"{strategy}: {found.family} models share one block's weights across their {found.layers} layers, "
                             f"so no layer can train apart from the others; use full, lora or adapter")


# -- reading a model ------------------------------------------------------------------------------


def _is_attention(module: nn.Module) -> bool:
    return "Attention" in type(module).__name__


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks.

    Among the ``ModuleList`` s whose members are all of one type, the one with ``num_hidden_layers``
    members that hold attention modules (a mixture-of-experts' expert list can be longer than the
    block list); failing that, the longest list holding attention; failing that, the longest list.
    """
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(x) for x in m}) == 1]
    if not lists:
        raise PlacementError(f"cannot find the transformer blocks of {type(model).__name__}: it has no list of layers")
    with_attention = [m for m in lists if any(_is_attention(x) for x in m[0].modules())]
    exact = [m for m in with_attention if len(m) == layers]
    pool = exact or with_attention or lists
    return max(pool, key=len)  # max keeps the first (outermost) of equal lengths


def _path_of(model: nn.Module, target: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is target:
            return name
    raise PlacementError(f"{type(target).__name__} is not part of {type(model).__name__}")


def _linears(module: nn.Module, skip: str | None = None) -> list[Projection]:
    """The linear layers under ``module`` in registration order; a wrapped one (peft, adapter) counts once."""
    out: list[Projection] = []
    for name, child in module.named_modules():
        if skip is not None and (name == skip or name.startswith(skip + ".")):
            continue
        if any(name.startswith(p.name + ".") for p in out[-1:]):
            continue  # inside a layer already counted (a peft layer's base_layer and lora_A)
        shape = linear_shape(child)
        if shape is not None and name:
            out.append(Projection(name, shape[0], shape[1], type(child).__name__ == "Conv1D"))
    return out


def _sub_layer(kind: str, path: str, linears: list[Projection], hidden: int, family: str) -> SubLayer:
    ends = [p for p in linears if p.out_features == hidden]
    if not ends:
        found = ", ".join(f"{p.name} ({p.in_features}->{p.out_features})" for p in linears) or "no linear layers"
        raise PlacementError(f"cannot tell where the {kind} of a '{family}' block ends: no projection writes its width "
                             f"{hidden} (found {found}); set strategy.target_modules to the module names to adapt")
    output = ends[-1]
    inputs = tuple(p for p in linears if p is not output and p.in_features == hidden)
    return SubLayer(path, inputs, output)


ROLE = {"key": re.compile(r"^(k|key|k_lin)(_proj)?$"), "value": re.compile(r"^(v|value|v_lin)(_proj)?$")}


def _role(inputs: tuple[Projection, ...], role: str) -> Projection | None:
    found = [p for p in inputs if ROLE[role].match(p.name.rsplit(".", 1)[-1])]
    return found[0] if len(found) == 1 else None


def _geometry(config: Any, attention: SubLayer, hidden: int) -> tuple[Geometry, tuple[str, str] | None, str | None]:
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    if heads <= 0:
        raise PlacementError(f"the '{config.model_type}' config names no attention heads (num_attention_heads)")
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    key, value = _role(attention.inputs, "key"), _role(attention.inputs, "value")
    if key is not None and value is not None:
        return Geometry(heads, key.out_features // head_dim, head_dim), (key.name, value.name), None
    fused = [p for p in attention.inputs if p.out_features > heads * head_dim and (p.out_features // head_dim - heads) % 2 == 0]
    if len(fused) == 1 and len(attention.inputs) == 1:
        kv = (fused[0].out_features // head_dim - heads) // 2
        return Geometry(heads, kv, head_dim), None, fused[0].name
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    return Geometry(heads, kv, head_dim), None, None


def transformers_model(model: nn.Module) -> nn.Module:
    """The transformers model inside ``model``: itself, the model a peft model wraps, or the first module with a
    config inside a wrapper of adaptlab's own (a label scorer, an adapter classifier)."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    if hasattr(model, "config"):
        return model
    for module in model.modules():
        if hasattr(module, "config"):
            return module.get_base_model() if hasattr(module, "get_base_model") else module
    raise PlacementError(f"{type(model).__name__} holds no transformers model")


def layout(model: nn.Module) -> Layout:
    """Read the layout of ``model`` (a transformers model, a task model, a peft model or adaptlab wrapper of one)."""
    from .architectures import OVERRIDES

    inner = transformers_model(model)
    config = inner.config
    family = getattr(config, "model_type", type(inner).__name__)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    blocks = find_blocks(inner)
    block = blocks[0]
    attention_modules = [(n, m) for n, m in block.named_modules() if n and _is_attention(m)]
    if not attention_modules:
        raise PlacementError(f"a '{family}' block ({type(block).__name__}) has no attention module; set strategy.target_modules "
                             f"to the module names to adapt (found: {', '.join(p.name for p in _linears(block)) or 'none'})")
    attention_path = min(attention_modules, key=lambda item: item[0].count("."))[0]
    attention_linears = [replace(p, name=f"{attention_path}.{p.name}") for p in _linears(block.get_submodule(attention_path))]
    ffn_linears = _linears(block, skip=attention_path)
    attention = _sub_layer("attention", attention_path, attention_linears, hidden, family)
    ffn_path = _common_prefix([p.name for p in ffn_linears])
    feed_forward = _sub_layer("feed-forward", ffn_path, ffn_linears, hidden, family)
    geometry, key_value, fused = _geometry(config, attention, hidden)
    layers = int(getattr(config, "num_hidden_layers", len(blocks)) or len(blocks))
    found = Layout(family, _path_of(inner, blocks), len(blocks), hidden, attention, feed_forward, geometry, key_value, fused,
                   shared=len(blocks) < layers, layers=layers, pooler=_after_blocks(inner, blocks))
    return OVERRIDES[family](found) if family in OVERRIDES else found


def _after_blocks(model: nn.Module, blocks: nn.ModuleList) -> tuple[str, ...]:
    """Full names of the base model's linear layers registered after its blocks (a pooler), not the task head."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if base is None or base is model:
        base, prefix = model, ""
    else:
        prefix = model.base_model_prefix + "."
    names, seen = [], False
    for name, module in base.named_modules():
        if module is blocks:
            seen = True
        elif seen and linear_shape(module) is not None and not any(module is m for m in blocks.modules()):
            if not any(name.startswith(n + ".") for n in names):  # not a part of a wrapped layer (peft's lora_A)
                names.append(name)
    return tuple(prefix + n for n in names)


def _common_prefix(names: list[str]) -> str:
    parts = [n.split(".")[:-1] for n in names]
    if not parts:
        return ""
    prefix = []
    for column in zip(*parts):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    return ".".join(prefix)


def linear_names(model: nn.Module) -> list[str]:
    """The model's linear layers, block indices written ``*`` (``model.layers.*.self_attn.q_proj``): what an error
    shows when ``target_modules`` names nothing."""
    names = (re.sub(r"\.\d+\.", ".*.", n) for n, m in model.named_modules() if linear_shape(m) is not None)
    return list(dict.fromkeys(names))


def head_names(model: nn.Module) -> list[str]:
    """The task head: the task model's children with parameters outside its base model (``classifier``,
    ``score``; DistilBERT's ``pre_classifier`` and ModernBERT's ``head`` too), which start untrained."""
    if not hasattr(model, "config") and not hasattr(model, "get_base_model"):
        return []  # a wrapper of adaptlab's own (its head is its own module)
    inner = transformers_model(model)
    prefix = getattr(inner, "base_model_prefix", "")
    base = getattr(inner, prefix, None) if prefix else None
    if base is None or base is inner:
        return []
    return [name for name, child in inner.named_children() if child is not base and any(True for _ in child.parameters())]


def skeleton(config: Any, auto_class: str) -> nn.Module:
    """The model ``config`` describes, on the meta device: every module and shape, no memory, no weights."""
    import torch
    import transformers

    with torch.device("meta"):
        return getattr(transformers, auto_class).from_config(config)
