"""Prefix tuning through peft: trainable key/value prefixes in every attention layer.

Li & Liang 2021, §4: ``num_virtual_tokens`` key and value vectors are prepended
in every layer's attention (peft passes them as the past key/value cache), so
every position of every layer can attend to them, while all pretrained weights
stay frozen. Prefixes start as the keys and values the frozen model computes for
real words (§7.4: "initializing the prefix with activations of real words"):
peft's default, unit-Gaussian prefixes dwarf a small model's real keys, the
attention saturates on them and every input gets the same output.
``prefix_projection`` reparameterises the prefixes through a two-layer MLP
(§4.3), steadier, at the price of many more trainable parameters (and random
initialisation). The new classification head trains too, at ``head_lr``.
Works on encoders and on causal LMs (the classifier still sees the token ids,
so it finds the last real token). The artefact is a peft adapter folder.

Prefixes live in the attention's key/value cache, so a family whose forward takes no cache
(DeBERTa-v2, DistilBERT, MPNet, ALBERT, ModernBERT in transformers 5) has nowhere to put them:
such a backbone is refused in one line before anything loads, instead of training a head while
peft's prefixes are dropped on the way. The starting activations come from the model's own cache
for the init words (keys after rotary embeddings, grouped-query geometry, fused projections: as
the family computes them), and for encoders, which return no cache, from their key and value
projections (:mod:`adaptlab.models.placement`).

transformers 5.24 renamed the models' ``past_key_values`` argument to ``cache``
(the old name stays a deprecated alias until 5.40), while peft (0.21.2) still
looks for a parameter called ``past_key_values`` in ``forward``'s signature
before it hands the prefixes over, and refuses otherwise.
:func:`accept_past_key_values` gives the model a ``forward`` that takes the old
name and passes it on under the one the model uses, so prefix tuning works with
transformers releases before and after the rename.
"""

from __future__ import annotations

import inspect
import logging
import types
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from ..models.modeling import find_blocks
from ..models.placement import layout
from ..settings import StrategyConfig
from .base import Task, register
from .lora import peft_classifier, save_adapter
from .prompt_tuning import prompt_and_head_groups, refuse_packing

log = logging.getLogger("adaptlab")

class PrefixTuningConfig(StrategyConfig):
    name: Literal["prefix_tuning"] = "prefix_tuning"
    num_virtual_tokens: int = Field(10, ge=1)
    """Prefix length per layer (Li & Liang: 10 for classification-sized inputs, up to 200 for generation)."""
    prefix_projection: bool = False
    """Reparameterise the prefixes through an MLP (steadier, many more trainable parameters)."""
    encoder_hidden_size: int = Field(128, ge=1)
    """Hidden width of that MLP."""
    head_lr: float = Field(1e-2, gt=0)
    """Learning rate of the new classification head (the prefixes train at ``train.lr``)."""
    init: Literal["activations", "random"] = "activations"
    """Start from the keys/values of real words (``init_text``), or peft's random prefixes."""
    init_text: str | None = None
    """Words whose activations start the prefixes; ``null``: "Classify as" and the label names."""


def _forward_with_past_key_values(self: nn.Module, *args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
    if past_key_values is not None:
        kwargs[self._adaptlab_cache_argument] = past_key_values
    return type(self).forward(self, *args, **kwargs)


def accept_past_key_values(model: nn.Module, task: Task | None = None) -> nn.Module:
    """Let ``model.forward`` take ``past_key_values`` when its transformers release calls the argument ``cache``.

    A no-op where ``forward`` already names ``past_key_values`` (transformers < 5.24), and for causal LMs:
    peft looks for the argument by name only for classifiers; its causal-LM path passes the prefixes as the
    cache, and ``generate`` must still see the model's own signature.
    """
    if task is not None and task.type.peft_task_type == "CAUSAL_LM":
        return model
    if "past_key_values" in inspect.signature(model.forward).parameters:
        return model
    inner = getattr(model, "base_model", model)  # transformers: the backbone under the task head
    names = set(inspect.signature(model.forward).parameters) | set(inspect.signature(inner.forward).parameters)
    model._adaptlab_cache_argument = "cache" if "cache" in names else "past_key_values"
    model.forward = types.MethodType(_forward_with_past_key_values, model)
    return model


def takes_cache(model_class: type) -> bool:
    """Whether a transformers model class's forward takes a key/value cache, where peft puts the prefixes."""
    names = inspect.signature(model_class.forward).parameters
    return "past_key_values" in names or "cache" in names


def check_cache(backbone: Any) -> None:
    """One line, before anything loads, when the backbone's attention takes no key/value cache."""
    from transformers import AutoModel

    from ..models.verbalizer import is_causal_lm

    if is_causal_lm(backbone.config):
        return
    try:
        model_class = AutoModel._model_mapping[type(backbone.config)]
    except KeyError:  # a class transformers does not map (remote code): peft will say
        return
    if not takes_cache(model_class):
        raise AdaptlabError(f"prefix_tuning: {backbone.family} models ({model_class.__name__}) take no key/value cache, which is "
                            f"where the prefixes go; use prompt_tuning or p_tuning (prompts in the input) on this backbone")


@torch.no_grad()
def init_from_activations(embedding: nn.Embedding, model: nn.Module, tokenizer: Any, text: str) -> bool:
    """Copy each layer's keys and values for ``text`` into the prefix (Li & Liang 2021, §7.4).

    peft lays a prefix row out as ``[layer 0 key, layer 0 value, layer 1 key, ...]``, each ``kv_heads x
    head_dim`` wide. Returns False (prefixes left as they are) when neither the cache nor the projections
    give rows of that shape.
    """
    n = embedding.weight.shape[0]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id or 0]
    ids = torch.tensor([(ids * (n // len(ids) + 1))[:n]], device=embedding.weight.device)
    rows = _from_cache(model, ids)
    if rows is None or rows.shape != embedding.weight.shape:
        rows = _from_projections(model, ids)
    if rows is None or rows.shape != embedding.weight.shape:
        return False
    embedding.weight.copy_(rows)
    return True


def _from_cache(model: nn.Module, ids: torch.Tensor) -> torch.Tensor | None:
    """Rows from the cache the model returns (decoders): ``(n, layers x 2 x kv_heads x head_dim)``."""
    cache = getattr(model(input_ids=ids, use_cache=True), "past_key_values", None)
    layers = getattr(cache, "layers", None)
    if not layers:
        return None
    parts = []
    for layer in layers:
        for t in (layer.keys, layer.values):  # (1, kv_heads, n, head_dim)
            parts.append(t[0].transpose(0, 1).reshape(t.shape[2], -1))
    return torch.cat(parts, dim=-1)


def _from_projections(model: nn.Module, ids: torch.Tensor) -> torch.Tensor | None:
    """Rows from the key and value projections of every block (encoders, which return no cache)."""
    sites = layout(model).key_value
    if sites is None:
        return None
    captured: dict[tuple[int, int], torch.Tensor] = {}
    hooks = [block.get_submodule(site).register_forward_hook(lambda m, i, out, at=(layer, j): captured.__setitem__(at, out[0]))
             for layer, block in enumerate(find_blocks(model)) for j, site in enumerate(sites)]
    try:
        model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat([captured[key] for key in sorted(captured)], dim=-1)


@register
class PrefixTuning:
    """Prefix tuning: trainable key/value prefixes in every layer, frozen model, through peft (Li & Liang 2021)."""

    Config = PrefixTuningConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 1e-2, "epochs": 5, "schedule": "linear"}
    step_cost = 3.0
    tasks = ("classification", "sft")
    caveat = ("prefixes on a small frozen model need many more steps than weight updates, and results swing with the "
              "learning rate and initialisation (Li & Liang 2021, §4.3, §7.4).")
    checkpointing = False
    checkpointing_why = "transformers drops the key/value cache, where the prefixes are, when it recomputes a block"
    """Gradient checkpointing stays off (``train.gradient_checkpointing: auto``); asked for, it is one error line."""

    def __init__(self, config: PrefixTuningConfig):
        self.config = config
        self.started_from = "random"

    def check(self, task: Task) -> None:
        refuse_packing(task, self.name)
        check_cache(task.backbone)

    def peft_config(self, task: Task):
        from peft import PrefixTuningConfig as PeftPrefixTuningConfig
        from peft import TaskType

        c = self.config
        return PeftPrefixTuningConfig(task_type=getattr(TaskType, task.type.peft_task_type), num_virtual_tokens=c.num_virtual_tokens,
                                      prefix_projection=c.prefix_projection, encoder_hidden_size=c.encoder_hidden_size)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        peft_model = peft_classifier(accept_past_key_values(model, task), self.peft_config(task))
        c = self.config
        self.started_from = "projection MLP" if c.prefix_projection else "random"
        if c.init == "activations" and not c.prefix_projection:
            text = c.init_text or ("Classify as " + " or ".join(task.labels) if task.labels else "Answer the request.")
            if init_from_activations(peft_model.prompt_encoder["default"].embedding, model, task.backbone.tokenizer, text):
                self.started_from = f"activations of {text!r}"
            else:
                log.warning("prefix_tuning: cannot read key/value activations of '%s' models; prefixes start at random", task.backbone.family)
        return peft_model

    def extra_metrics(self, module: nn.Module, history: list[dict], eval_rows: list[dict], device: Any) -> dict[str, Any]:
        """What the prefixes started from (metrics.json's ``prefix_init``): the init words' activations, or random."""
        return {"prefix_init": self.started_from}

    def param_groups(self, module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        return prompt_and_head_groups(module, lr, self.config.head_lr, weight_decay)

    def save(self, module: nn.Module, folder: Path, task: Task) -> None:
        save_adapter(module, folder, task)

    def load(self, folder: Path, task: Task) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(accept_past_key_values(task.type.build(task), task), folder)
