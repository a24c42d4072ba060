"""MAML's inner loop: only the fast weights change, and the meta-gradient is right."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptlab.config import load_config
from adaptlab.data.batching import Collate
from adaptlab.eval.metrics import model_inputs
from adaptlab.strategies import Task, get_strategy
from adaptlab.training.runner import make_setup, prepare_module, resolve_train


@pytest.fixture(scope="module")
def maml(tiny_backbone, toy_csv):
    def make(**options):
        cfg = load_config({"strategy": {"name": "maml", "inner_layers": 1, "inner_lr": 0.05, "inner_steps": 2, **options},
                           "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": {"dropout": 0.0}})
        setup = make_setup(cfg)
        strategy = get_strategy("maml")(cfg.strategy)
        module = prepare_module(strategy, Task(setup.data.labels, setup.backbone, resolve_train(cfg)))
        batch = Collate(0)(setup.train_rows[:16])
        inputs, y = model_inputs(batch), batch["labels"]
        episode = ({k: v[:8] for k, v in inputs.items()}, y[:8], {k: v[8:] for k, v in inputs.items()}, y[8:])
        return strategy, module.eval(), episode

    return make


def test_inner_loop_changes_only_the_fast_weights(maml):
    strategy, module, (support, support_y, _, _) = maml()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    fast = strategy.adapt(module, support, support_y, 2, create_graph=True)
    top = {n for n in dict(module.encoder.named_parameters()) if n.startswith("encoder.layer.1.")}
    assert set(fast) == top | {"head.weight", "head.bias"}
    assert set(module.fast_names) == top
    slow = dict(module.encoder.named_parameters())
    moved = {n for n in top if not torch.equal(fast[n], slow[n])}
    assert top - moved <= {n for n in top if "key.bias" in n}  # softmax ignores a shift of the keys
    for n, p in module.named_parameters():  # the module itself is untouched: adaptation is functional
        assert torch.equal(p, before[n]), n
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {f"encoder.{n}" for n in top}


def test_more_inner_steps_fit_the_support_set_better(maml):
    losses = []
    for steps in (1, 5):
        strategy, module, (support, support_y, _, _) = maml(inner_steps=steps)
        fast = strategy.adapt(module, support, support_y, 2, create_graph=False)
        losses.append(F.cross_entropy(module.logits(support, fast), support_y).item())
    assert losses[1] < losses[0]


def meta_gradient(strategy, module, episode, create_graph: bool) -> dict[str, torch.Tensor]:
    support, support_y, query, query_y = episode
    module.zero_grad()
    fast = strategy.adapt(module, support, support_y, 2, create_graph=create_graph)
    F.cross_entropy(module.logits(query, fast), query_y).backward()
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def test_second_order_meta_gradient_matches_finite_differences(maml):
    strategy, module, episode = maml()
    second, first = meta_gradient(strategy, module, episode, True), meta_gradient(strategy, module, episode, False)
    params = dict(module.named_parameters())
    torch.manual_seed(0)
    direction = {n: torch.randn_like(params[n]) for n in second}

    def meta_loss(scale: float) -> float:
        with torch.no_grad():
            for n, d in direction.items():
                params[n].add_(scale * d)
        support, support_y, query, query_y = episode
        fast = strategy.adapt(module, support, support_y, 2, create_graph=False)
        value = F.cross_entropy(module.logits(query, fast), query_y).item()
        with torch.no_grad():
            for n, d in direction.items():
                params[n].sub_(scale * d)
        return value

    eps = 3e-3
    numeric = (meta_loss(eps) - meta_loss(-eps)) / (2 * eps)
    dot = lambda g: sum((g[n] * direction[n]).sum().item() for n in direction)  # noqa: E731
    assert dot(second) == pytest.approx(numeric, rel=5e-3)
    assert abs(dot(first) - numeric) > 10 * abs(dot(second) - numeric), "first-order should be a coarser approximation"
