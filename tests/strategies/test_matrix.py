"""Every registered strategy through the same invariants, on a tiny in-process BERT.

- only the intended parameters train, and every frozen one stays bit-identical;
- the trainable count in metrics.json is exactly the intended parameters;
- the loss falls on a learnable toy set;
- save -> load gives identical predictions.

A new strategy needs one row in CASES; the first test fails until it has one.
A strategy that needs another run first (a distillation teacher) names it in
``prerequisite``; one that is not a classifier (domain-adaptive pretraining)
sets ``kind`` and is held to a falling held-out loss instead of accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.loop import fit
from adaptlab.runner import make_setup, prepare_module, resolve_train, run_one, train
from adaptlab.strategies import Task, discover, get_strategy
from adaptlab.strategies.base import hook, load_pretrained, save_pretrained


@dataclass
class Case:
    trains: Callable[[str], bool]
    """Which parameter names of the prepared module must train."""
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    prerequisite: Callable[[Path, Path, Path], dict[str, Any]] | None = None
    """Builds what the strategy needs first (backbone, data, scratch folder) -> extra options."""
    kind: str = "classification"
    """``language-modelling``: no accuracy; the held-out loss must fall instead."""


def trained_teacher(backbone: Path, data: Path, folder: Path) -> dict[str, Any]:
    """A full fine-tuned teacher run on a wider tiny BERT (so projections are exercised)."""
    from conftest import make_tiny_bert

    wide = make_tiny_bert(folder / "teacher-backbone", layers=2, hidden=48, seed=3)
    if not (folder / "teacher" / "metrics.json").is_file():
        train({"strategy": "full", "backbone": str(wide), "data": {"train": str(data), "eval_fraction": 0.25},
               "train": {**DEFAULT_TRAIN, "epochs": 4}, "output": str(folder / "teacher")})
    return {"teacher": str(folder / "teacher")}


CASES: dict[str, Case] = {
    "linear_probe": Case(lambda n: n.startswith("head."), train={"epochs": 20, "lr": 5e-2}),
    "top_k": Case(lambda n: n.startswith(("classifier.", "bert.pooler.", "bert.encoder.layer.1.")), {"k": 1}),
    "gradual_unfreeze": Case(  # top, then layer 1, then layer 0; embeddings never
        lambda n: not n.startswith("bert.embeddings."), {"layers_per_group": 1, "embeddings": False}, {"epochs": 5, "lr": 1e-2},
    ),
    "full": Case(lambda n: True),
    "lora": Case(lambda n: "lora_" in n or "modules_to_save" in n, train={"lr": 1e-2}),
    "distill": Case(lambda n: True, {"hidden_weight": 1.0, "attention_weight": 1.0}, prerequisite=trained_teacher),
    "dapt": Case(lambda n: True, {"block_size": 32}, {"lr": 1e-2}, kind="language-modelling"),  # fresh MLM head first
}
DEFAULT_TRAIN = {"keep_best": False, "epochs": 6, "lr": 3e-3, "batch_size": 16, "progress": False, "checkpoint_every": None, "seed": 0}


def test_every_strategy_has_a_case():
    assert set(discover()) <= set(CASES), f"add a row to CASES for {set(discover()) - set(CASES)}"


def case_config(name: str, backbone, data, scratch: Path | None = None) -> Any:
    case = CASES[name]
    extra = case.prerequisite(Path(backbone), Path(data), scratch) if case.prerequisite else {}
    return load_config({
        "strategy": {"name": name, **case.options, **extra},
        "backbone": str(backbone),
        "data": {"train": str(data), "eval_fraction": 0.25},
        "train": {**DEFAULT_TRAIN, **case.train},
    })


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prerequisites")


@pytest.fixture(scope="module")
def trained(tiny_backbone, toy_csv, scratch):
    """Train each strategy once; tests below inspect the result."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cfg = case_config(name, tiny_backbone, toy_csv, scratch)
            setup = make_setup(cfg)
            strategy = get_strategy(name)(cfg.strategy)
            task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
            rows = hook(strategy, "dataset", lambda data, task: (setup.train_rows, setup.eval_rows))(setup.data, task)
            module = prepare_module(strategy, task)
            before = {n: p.detach().clone() for n, p in module.named_parameters()}
            module, state = fit(strategy, module, *rows, task.train_config)
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
    if CASES[name].kind == "classification":
        assert max(h["accuracy"] for h in history) > 0.75
    else:
        assert min(h["loss"] for h in history[1:]) < history[0]["loss"]


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
def test_reported_counts(tiny_backbone, toy_csv, tmp_path, scratch, name):
    cfg = case_config(name, tiny_backbone, toy_csv, scratch)
    result = run_one(cfg, make_setup(cfg), tmp_path / "run")
    strategy = get_strategy(name)(cfg.strategy)
    fresh = prepare_module(strategy, Task(result.metrics["task"]["labels"], make_setup(cfg).backbone, resolve_train(cfg)))
    named = dict(fresh.named_parameters())
    expected = sum(p.numel() for n, p in named.items() if CASES[name].trains(n))
    assert result.metrics["trainable_params"] == expected
    assert result.metrics["total_params"] == sum(p.numel() for p in {id(p): p for p in named.values()}.values())
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run.partial").exists()
