"""Every registered strategy through the same invariants, on a tiny in-process BERT.

- only the intended parameters train, and every frozen one stays bit-identical;
- the trainable count in metrics.json is exactly the intended parameters;
- the loss falls on a learnable toy set;
- save -> load gives identical predictions.

A new strategy needs one row in CASES; the first test fails until it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.loop import fit
from adaptlab.runner import make_setup, prepare_module, resolve_train, run_one
from adaptlab.strategies import Task, discover, get_strategy
from adaptlab.strategies.base import hook, load_pretrained, save_pretrained


@dataclass
class Case:
    trains: Callable[[str], bool]
    """Which parameter names of the prepared module must train."""
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


TRAIN_DATA = "<the case's training file>"
"""An option value replaced by the path of the toy training data (e.g. unlabelled text for mad_x)."""

CASES: dict[str, Case] = {
    "linear_probe": Case(lambda n: n.startswith("head."), train={"epochs": 20, "lr": 5e-2}),
    "top_k": Case(lambda n: n.startswith(("classifier.", "bert.pooler.", "bert.encoder.layer.1.")), {"k": 1}),
    "gradual_unfreeze": Case(  # top, then layer 1, then layer 0; embeddings never
        lambda n: not n.startswith("bert.embeddings."), {"layers_per_group": 1, "embeddings": False}, {"epochs": 5, "lr": 1e-2},
    ),
    "full": Case(lambda n: True),
    "lora": Case(lambda n: "lora_" in n or "modules_to_save" in n, train={"lr": 1e-2}),
    "protonet": Case(lambda n: ".pooler." not in n, {"episodes": 5}),  # mean pooling never reads the pooler
    "maml": Case(lambda n: n.startswith("encoder.encoder.layer.1."), {"inner_layers": 1, "inner_lr": 0.01, "episodes": 5}, {"lr": 3e-2}),
    "contrastive": Case(lambda n: ".pooler." not in n, train={"epochs": 6, "batch_size": 16}),
    "mad_x": Case(  # the language adapter trains by MLM inside prepare(); then only the task adapter and head
        lambda n: ".adapters.task." in n or n.startswith("head."),
        {"target_text": TRAIN_DATA, "mlm_texts": 100, "cache": False}, {"lr": 1e-2},
    ),
}
DEFAULT_TRAIN = {"keep_best": False, "epochs": 6, "lr": 3e-3, "batch_size": 16, "progress": False, "checkpoint_every": None, "seed": 0}


def test_every_strategy_has_a_case():
    assert set(discover()) <= set(CASES), f"add a row to CASES for {set(discover()) - set(CASES)}"


def case_config(name: str, backbone, data) -> Any:
    case = CASES[name]
    options = {k: str(data) if v == TRAIN_DATA else v for k, v in case.options.items()}
    return load_config({
        "strategy": {"name": name, **options},
        "backbone": str(backbone),
        "data": {"train": str(data), "eval_fraction": 0.25},
        "train": {**DEFAULT_TRAIN, **case.train},
    })


@pytest.fixture(scope="module")
def trained(tiny_backbone, toy_csv):
    """Train each strategy once; tests below inspect the result."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cfg = case_config(name, tiny_backbone, toy_csv)
            setup = make_setup(cfg)
            strategy = get_strategy(name)(cfg.strategy)
            task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
            module = prepare_module(strategy, task)
            before = {n: p.detach().clone() for n, p in module.named_parameters()}
            module, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config)
            cache[name] = dict(strategy=strategy, task=task, module=module, state=state, before=before, setup=setup, cfg=cfg)
        return cache[name]

    return get


STRATEGIES = sorted(CASES)


@pytest.mark.parametrize("name", STRATEGIES)
def test_only_intended_parameters_train(trained, name):
    t = trained(name)
    after = dict(t["module"].named_parameters())
    expected = {n for n in after if CASES[name].trains(n)}
    assert expected, "the case must expect some parameters to train"
    assert set(t["state"].ever_trainable) == expected
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), t["before"][n])}
    frozen = set(after) - expected
    assert not (changed & frozen), f"frozen parameters changed: {sorted(changed & frozen)[:5]}"
    assert changed == expected, f"trainable parameters that never changed: {sorted(expected - changed)[:5]}"


@pytest.mark.parametrize("name", STRATEGIES)
def test_loss_falls_and_beats_chance(trained, name):
    history = trained(name)["state"].history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["accuracy"] for h in history) > 0.75


@pytest.mark.parametrize("name", STRATEGIES)
def test_save_load_round_trip(trained, name, tmp_path):
    t = trained(name)
    strategy, task, module = t["strategy"], t["task"], t["module"]
    hook(strategy, "save", save_pretrained)(module, tmp_path, task)
    loaded = hook(strategy, "load", load_pretrained)(tmp_path, task)
    module.eval(), loaded.eval()
    from adaptlab.data.batching import Collate
    from adaptlab.evaluation import model_inputs

    batch = model_inputs(Collate(0)(t["setup"].eval_rows[:16]))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**batch).logits, module(**batch).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", STRATEGIES)
def test_reported_counts(tiny_backbone, toy_csv, tmp_path, name):
    cfg = case_config(name, tiny_backbone, toy_csv)
    result = run_one(cfg, make_setup(cfg), tmp_path / "run")
    strategy = get_strategy(name)(cfg.strategy)
    fresh = prepare_module(strategy, Task(result.metrics["task"]["labels"], make_setup(cfg).backbone, resolve_train(cfg)))
    named = dict(fresh.named_parameters())
    expected = sum(p.numel() for n, p in named.items() if CASES[name].trains(n))
    assert result.metrics["trainable_params"] == expected
    assert result.metrics["total_params"] == sum(p.numel() for p in {id(p): p for p in named.values()}.values())
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run.partial").exists()
