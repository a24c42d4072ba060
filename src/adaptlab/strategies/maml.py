"""Model-agnostic meta-learning over episodes, first- or second-order.

Finn et al. 2017, Algorithm 2: for each N-way K-shot episode drawn from the
training classes, the *fast weights* take ``inner_steps`` gradient steps on the
support set (eq. 1); the loss of the adapted model on the query set is the
meta-objective, and its gradient updates the *slow* weights that every episode
starts from (eq. 3). Second-order MAML differentiates through the inner steps;
first-order MAML (§5.2) treats the inner gradients as constants.

The fast weights are the top ``inner_layers`` transformer blocks and a linear
head; lower blocks stay frozen (adapting only the top is what makes MAML
affordable on a transformer, cf. ANIL, Raghu et al. 2020). Classes are
relabelled in every episode, so the head cannot be a meta-learned N-way layer;
as in Proto-MAML (Triantafillou et al. 2020, §3.3) it starts each episode from
the support prototypes (``W_c = 2 c_c``, ``b_c = -|c_c|^2``, which scores like
a prototypical network) and is then adapted with the blocks. The inner loop
uses ``torch.func``: the encoder is called with the fast weights through
``functional_call``, so the module's own parameters are never modified by
adaptation. Their gradient is ``torch.autograd.grad(create_graph=True)``, not
``torch.func.grad``: nested in the outer backward pass, the latter gave BERT
meta-gradients ~2 % off finite differences (torch 2.13), the former matches them.

For a task with fixed classes, the model adapts on (up to ``eval_support`` per
class of) the training examples before predicting; the artefact holds those
adapted weights. In training mode ``forward`` only hands the episode on: the
``loss`` hook runs both inner and outer passes, on the unwrapped module. Under DDP
this is still synchronised: the wrapped ``forward`` runs every step (it prepares the
reducer), and DDP all-reduces from hooks on the parameters' gradients, whichever
path the gradients took; every meta-trained parameter gets one each step (the lower
blocks are frozen). tests/test_distributed.py checks that two processes drawing
different episodes end with the same weights.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import AdaptlabError
from ..eval.metrics import evaluate
from ..models.modeling import freeze, layer_groups, unfreeze
from ..models.placement import require_separate_blocks
from ._fewshot import (
    EmbeddingOutput,
    EpisodeOptions,
    build_encoder,
    class_means,
    encode,
    episode_sampler,
    freeze_unused,
    split_episode,
    unwrap,
)
from .base import Task, register

HEAD = ("head.weight", "head.bias")


class MAMLConfig(EpisodeOptions):
    name: Literal["maml"] = "maml"
    inner_layers: int = Field(2, ge=1)
    """Top transformer blocks adapted in the inner loop and meta-trained (the head always adapts)."""
    inner_steps: int = Field(5, ge=1)
    """Gradient steps on the support set per episode."""
    inner_lr: float = Field(1e-3, gt=0)
    """Step size of the inner (SGD) updates."""
    first_order: bool = False
    """First-order MAML: no gradient through the inner steps (Finn et al. 2017, §5.2)."""
    eval_support: int = Field(32, ge=1)
    """At most this many training examples per class form the support set the model adapts on to predict."""


class MetaModel(nn.Module):
    """Encoder (slow weights) + the fast weights adapted to the task (``adapted``), used to predict."""

    def __init__(self, encoder: nn.Module, fast_names: list[str]):
        super().__init__()
        self.encoder = encoder
        self.fast_names = fast_names
        self.adapted: dict[str, torch.Tensor] = {}

    def logits(self, inputs: dict[str, torch.Tensor], fast: dict[str, torch.Tensor]) -> torch.Tensor:
        device = inputs["input_ids"].device
        params = {k: v.to(device) for k, v in fast.items() if k not in HEAD}
        emb = encode(self.encoder, inputs, params)
        return emb @ fast["head.weight"].to(device).T + fast["head.bias"].to(device)

    def forward(self, **inputs: torch.Tensor) -> EmbeddingOutput:
        if self.training or not self.adapted:  # episodes are handled by the loss hook
            return EmbeddingOutput()
        return EmbeddingOutput(logits=self.logits(inputs, self.adapted))


@register
class MAML:
    """MAML: meta-learned top layers, adapted to each task by a few inner gradient steps (Finn et al. 2017)."""

    Config = MAMLConfig
    train_defaults = {"lr": 2e-5, "epochs": 5, "schedule": "linear", "weight_decay": 0.0}
    auto = ()

    def __init__(self, config: MAMLConfig):
        self.config = config
        self.module: MetaModel | None = None
        self.support: list[dict] | None = None
        self.episodes = None
        self.seed = 0

    def check(self, task: Task) -> None:
        found = task.backbone.layout()
        require_separate_blocks(found, self.name)
        if self.config.inner_layers > found.num_blocks:
            raise AdaptlabError(f"strategy.inner_layers={self.config.inner_layers} but the backbone has only {found.num_blocks} layers")

    def build(self, task: Task) -> nn.Module:
        # PyTorch has no second derivative of its fused CPU attention kernels: second-order MAML
        # differentiates through the inner steps, so it runs the plain ("eager") attention.
        return build_encoder(task, **({} if self.config.first_order else {"attn_implementation": "eager"}))

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        k = self.config.inner_layers
        blocks = layer_groups(model).layers
        if k > len(blocks):
            raise AdaptlabError(f"strategy.inner_layers={k} but the backbone has only {len(blocks)} layers")
        freeze(model)
        top = {id(p) for block in blocks[len(blocks) - k :] for p in block}
        unfreeze(p for p in model.parameters() if id(p) in top)
        freeze_unused(model)
        self.seed = getattr(task.train_config, "seed", 0)
        self.module = MetaModel(model, [n for n, p in model.named_parameters() if p.requires_grad])
        return self.module

    def batch_sampler(self, rows: list[dict], cfg: Any) -> Any:
        self.support = rows
        self.episodes = episode_sampler(self.config, rows, cfg)
        return self.episodes

    def adapt(self, module: MetaModel, support: dict, labels: torch.Tensor, n: int, create_graph: bool) -> dict[str, torch.Tensor]:
        """The inner loop: fast weights after ``inner_steps`` SGD steps on the support set (eq. 1)."""
        slow = dict(module.encoder.named_parameters())
        fast = {name: slow[name] for name in module.fast_names}
        prototypes = class_means(encode(module.encoder, support), labels, n)  # Proto-MAML head initialisation
        fast.update({"head.weight": 2 * prototypes, "head.bias": -prototypes.pow(2).sum(-1)})
        if not create_graph:
            fast["head.weight"], fast["head.bias"] = fast["head.weight"].detach(), fast["head.bias"].detach()
        for _ in range(self.config.inner_steps):
            params = fast if create_graph else {k: v.detach().requires_grad_() for k, v in fast.items()}
            grads = torch.autograd.grad(support_loss(module, support, labels, params), list(params.values()), create_graph=create_graph)
            fast = {k: w - self.config.inner_lr * g for (k, w), g in zip(fast.items(), grads)}
        return fast

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The meta-objective: query loss of the weights adapted on the episode's support set (eq. 3)."""
        support, support_y, query, query_y, n = split_episode(batch, self.episodes.n_support)
        fast = self.adapt(self.module, support, support_y, n, create_graph=not self.config.first_order)
        return F.cross_entropy(self.module.logits(query, fast), query_y)

    def refresh(self, model: nn.Module) -> None:
        """Adapt to the task: inner steps on up to ``eval_support`` training examples per class."""
        module = unwrap(model)
        if self.support is None:
            return
        from ..data.batching import Collate
        from ..eval.metrics import model_inputs

        labels = [int(r["labels"]) for r in self.support]
        k = min(self.config.eval_support, min(labels.count(y) for y in set(labels)))
        rows = [self.support[i] for i in support_subset(labels, k, self.seed)]
        batch = {key: v.to(next(module.parameters()).device) for key, v in Collate(0)(rows).items()}
        was_training = module.training
        module.eval()
        with torch.enable_grad():
            fast = self.adapt(module, model_inputs(batch), batch["labels"], int(batch["labels"].max()) + 1, create_graph=False)
        module.adapted = {name: w.detach() for name, w in fast.items()}
        module.train(was_training)

    def evaluate(self, model: nn.Module, batches: Any, accelerator: Any = None) -> dict[str, float]:
        self.refresh(model)
        return evaluate(model, batches, accelerator)

    def adapt_episode(self, module: MetaModel, support: dict, support_y: torch.Tensor, query: dict, n_way: int) -> torch.Tensor:
        with torch.enable_grad():
            fast = self.adapt(module, support, support_y, n_way, create_graph=False)
        return module.logits(query, {k: v.detach() for k, v in fast.items()})

    def save(self, module: MetaModel, folder: Path, task: Task) -> None:
        self.refresh(module)  # adapt the kept (best) slow weights
        save_file({k: v.contiguous().cpu() for k, v in module.adapted.items()}, folder / "adapted.safetensors")
        meta = {"fast_names": module.fast_names, **self.config.model_dump()}
        (folder / "maml.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    def load(self, folder: Path, task: Task) -> nn.Module:
        meta = json.loads((folder / "maml.json").read_text(encoding="utf-8"))
        module = MetaModel(freeze(build_encoder(task)), meta["fast_names"])
        module.adapted = load_file(folder / "adapted.safetensors")
        return module


def support_loss(module: MetaModel, inputs: dict, labels: torch.Tensor, fast: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(module.logits(inputs, fast), labels)


def support_subset(labels: list[int], k: int, seed: int) -> list[int]:
    """Indices of ``k`` rows per class (seeded): the support set the task adapts on."""
    rng = random.Random(seed)
    chosen = []
    for y in sorted(set(labels)):
        chosen += rng.sample([i for i, label in enumerate(labels) if label == y], k)
    return sorted(chosen)
