"""Bottleneck adapters and Compacter layers, inserted into a transformers model.

Written here rather than taken from a library: peft (0.21) implements neither
bottleneck adapters nor Compacter, and AdapterHub's ``adapters`` package, which
does, pins ``transformers~=4.57`` and patches model classes of that version
(adaptlab runs on transformers 5). What is needed is small: a residual bottleneck
module, a parameterised-hypercomplex (Kronecker) linear layer, and a wrapper that
puts one behind an existing output projection.

Placement (Houlsby et al. 2019, §2.1, Fig. 2): an adapter sits right after the
projection that ends a sub-layer -- the attention output projection and the
feed-forward output projection -- before the residual connection and layer norm.
``pfeiffer`` keeps only the one after the feed-forward block (Pfeiffer et al.
2021, AdapterFusion §3). Wrapping the projection puts the adapter before the
sub-layer's dropout rather than after it; with dropout off (evaluation, and
adaptlab's CPU recipes) the two are the same function. The two projections are
read from the model (:mod:`adaptlab.models.placement`), ``nn.Linear`` or GPT-2's
``Conv1D`` alike, so every family has its sites.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..errors import AdaptlabError
from .placement import find_blocks, layout, linear_shape

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU, "tanh": nn.Tanh, "identity": nn.Identity,
}


class Bottleneck(nn.Module):
    """``up(act(down(h)))``, added to ``h`` by :class:`Adapted` (Houlsby et al. 2019, §2.1).

    ``up`` starts at zero, so an untrained adapter is exactly the identity and
    training starts from the pretrained function.
    """

    def __init__(self, width: int, size: int, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(width, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, width)
        nn.init.normal_(self.down.weight, std=1e-2)  # Houlsby §3.6: small Gaussian, near-identity start
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(h)))

    def linear_maps(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(W_down, b_down, W_up, b_up)`` as ``nn.Linear`` stores them (out x in)."""
        return self.down.weight, self.down.bias, self.up.weight, self.up.bias


class KroneckerRules(nn.Module):
    """The shared "slow" factors ``A_i`` (n x n each) of every Compacter layer of a model.

    Karimi Mahabadi et al. 2021, §3.3: one set of rules is shared by all adapter
    layers; separate sets for the down- and up-projections.
    """

    def __init__(self, n: int):
        super().__init__()
        self.n = n
        # var(A) = 1/n keeps var(W) = var(B) for W = sum_i A_i (x) B_i.
        self.down = nn.Parameter(torch.randn(n, n, n) / math.sqrt(n))
        self.up = nn.Parameter(torch.randn(n, n, n) / math.sqrt(n))


class PHMLinear(nn.Module):
    """A linear layer whose weight is ``sum_i A_i (x) (s_i t_i^T)`` (Compacter, §3.2-3.3).

    ``A_i`` are the shared rules; the "fast" factors ``B_i = s_i t_i^T`` are
    rank-``rank`` and belong to this layer, so it holds ``n * rank * (in + out) / n``
    weights instead of ``in * out``.
    """

    def __init__(self, rules: KroneckerRules, which: str, in_features: int, out_features: int, rank: int, zero: bool):
        super().__init__()
        n = rules.n
        if in_features % n or out_features % n:
            raise AdaptlabError(f"compacter: n={n} must divide the widths {in_features} and {out_features}")
        self._rules = (rules, which)  # a tuple: the rules are registered once, on the model, not here
        self.in_features, self.out_features = in_features, out_features
        std = (2 / (in_features + out_features) / rank) ** 0.25  # Glorot variance for s t^T
        self.s = nn.Parameter(torch.randn(n, in_features // n, rank) * std)
        self.t = nn.Parameter(torch.zeros(n, rank, out_features // n) if zero else torch.randn(n, rank, out_features // n) * std)
        self.bias = nn.Parameter(torch.zeros(out_features))

    @property
    def weight(self) -> torch.Tensor:
        """The full (out x in) matrix, as ``nn.Linear`` stores it."""
        rules, which = self._rules
        a = getattr(rules, which)
        b = self.s @ self.t  # (n, in/n, out/n)
        w = torch.einsum("kab,kij->aibj", a, b).reshape(self.in_features, self.out_features)
        return w.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


class CompacterBottleneck(Bottleneck):
    """A bottleneck adapter whose projections are :class:`PHMLinear` layers."""

    def __init__(self, width: int, size: int, activation: str, rules: KroneckerRules, rank: int):
        nn.Module.__init__(self)
        self.down = PHMLinear(rules, "down", width, size, rank, zero=False)
        self.act = ACTIVATIONS[activation]()
        self.up = PHMLinear(rules, "up", size, width, rank, zero=True)


class Adapted(nn.Module):
    """An output projection followed by its adapter: ``h = base(x); h + adapter(h)``."""

    def __init__(self, base: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base(x)
        return h + self.adapter(h)


def adapter_sites(model: nn.Module, placement: str, layers: Iterable[int] | None = None) -> list[tuple[nn.Module, str]]:
    """``(block, relative name)`` of every projection that gets an adapter: the feed-forward output projection
    of each chosen block, and with ``houlsby`` the attention output projection before it."""
    found = layout(model)
    attention, feed_forward = found.attention.output.name, found.feed_forward.output.name
    names = [attention, feed_forward] if placement == "houlsby" else [feed_forward]
    blocks = find_blocks(model)
    chosen = sorted(set(layers)) if layers is not None else range(len(blocks))
    bad = [i for i in chosen if not 0 <= i < len(blocks)]
    if bad:
        raise AdaptlabError(f"adapter layers {bad} do not exist: the model has layers 0-{len(blocks) - 1}")
    return [(blocks[i], name) for i in chosen for name in names]


def insert_adapters(model: nn.Module, make: Callable[[int], Bottleneck], placement: str, layers: Iterable[int] | None = None) -> int:
    """Put ``make(width)`` behind each chosen projection of ``model``; return how many."""
    sites = adapter_sites(model, placement, layers)
    for block, name in sites:
        parent_name, _, child = name.rpartition(".")
        parent = block.get_submodule(parent_name) if parent_name else block
        base = getattr(parent, child)
        shape = linear_shape(base)
        if shape is None:
            raise AdaptlabError(f"expected a linear layer at {name}, found {type(base).__name__}")
        setattr(parent, child, Adapted(base, make(shape[1])))
    return len(sites)


@torch.no_grad()
def fold_adapters(model: nn.Module) -> nn.Module:
    """Fold every linear adapter into its projection and remove it; exact when ``act`` is the identity.

    ``h' = h + U(D h + b_d) + b_u`` with ``h = W x + b`` is ``W' x + b'`` with
    ``W' = (I + U D) W`` and ``b' = (I + U D) b + U b_d + b_u``.
    """
    for name, module in list(model.named_modules()):
        if not isinstance(module, Adapted):
            continue
        if not isinstance(module.adapter.act, nn.Identity):
            raise AdaptlabError("adapters with a non-linearity cannot be folded into the weights exactly; train with strategy.activation=identity to merge")
        w_d, b_d, w_u, b_u = (t.detach().double() for t in module.adapter.linear_maps())
        base = module.base
        out = linear_shape(base)[1]
        m = torch.eye(out, dtype=torch.float64) + w_u @ w_d
        bias = base.bias.double() if base.bias is not None else torch.zeros(out, dtype=torch.float64)
        if isinstance(base, nn.Linear):  # weight (out, in): W' = M W
            base.weight.copy_((m @ base.weight.double()).to(base.weight.dtype))
        else:  # Conv1D, weight (in, out): W' = W M^T
            base.weight.copy_((base.weight.double() @ m.T).to(base.weight.dtype))
        new_bias = (m @ bias + w_u @ b_d + b_u).to(base.weight.dtype)
        if base.bias is None:
            base.bias = nn.Parameter(new_bias)
        else:
            base.bias.copy_(new_bias)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, base)
    for attr in ("adapter_rules",):
        if hasattr(model, attr):
            delattr(model, attr)
    return model
