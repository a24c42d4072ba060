"""The training loop's shared behaviour: schedules, best weights, early stopping, zero-trainable runs."""

from __future__ import annotations

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.models.modeling import freeze
from adaptlab.strategies import Task, get_strategy
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train
from adaptlab.training.schedules import lr_multiplier


def test_schedules():
    linear = lr_multiplier("linear", 100, 10)
    assert linear(0) == pytest.approx(1 / 11) and linear(10) == 1.0 and linear(99) < 0.02
    cosine = lr_multiplier("cosine", 100, 0)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5, abs=0.01)
    stlr = lr_multiplier("slanted_triangular", 100, 10, ratio=32)
    assert stlr(0) == pytest.approx(1 / 32) and stlr(10) == 1.0 and stlr(100) == pytest.approx(1 / 32)
    assert stlr(5) > stlr(1) and stlr(50) > stlr(90)  # short climb, long decay (ULMFiT eq. 3)
    with pytest.raises(ValueError):
        lr_multiplier("nope", 10, 1)


def run(tiny_backbone, toy_csv, strategy="full", **train):
    cfg = load_config({"strategy": strategy, "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)},
                       "train": {"progress": False, "checkpoint_every": None, "seed": 0, **train}})
    setup = make_setup(cfg)
    s = get_strategy(strategy)(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
    return s, prepare_module(s, task), setup, task


def test_early_stopping_and_best_weights(tiny_backbone, toy_csv):
    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=6, lr=0.5, patience=1, precision="fp32")  # lr far too high
    module, state = fit(s, module, setup.train_rows, setup.eval_rows, task.train_config)
    assert len(state.history) < 6 and state.stale_epochs == 1
    from torch.utils.data import DataLoader

    from adaptlab.data.batching import Collate
    from adaptlab.eval.metrics import evaluate

    loader = DataLoader(setup.eval_rows, batch_size=64, collate_fn=Collate(0))
    assert evaluate(module, loader)["accuracy"] == pytest.approx(state.best_score)  # the best epoch's weights came back


def test_nothing_trainable_scores_once(tiny_backbone, toy_csv):
    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=3)
    freeze(module)
    before = {n: p.detach().cpu().clone() for n, p in module.named_parameters()}
    module, state = fit(s, module, setup.train_rows, setup.eval_rows, task.train_config)
    assert len(state.history) == 1 and state.history[0]["epoch"] == 0 and state.best_epoch == 1
    assert all(torch.equal(p.detach().cpu(), before[n]) for n, p in module.named_parameters())


def test_gradient_accumulation_takes_fewer_steps(tiny_backbone, toy_csv):
    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=1, batch_size=8, grad_accum=4)
    _, state = fit(s, module, setup.train_rows, setup.eval_rows, task.train_config)
    batches = -(-len(setup.train_rows) // 8)
    assert state.step == -(-batches // 4) and state.batch == 0 and state.examples == len(setup.train_rows)  # 4 batches a step
