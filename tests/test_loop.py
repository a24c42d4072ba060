"""The training loop's shared behaviour: schedules, best weights, early stopping, zero-trainable runs."""

from __future__ import annotations

import json

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


def test_best_weights_copy_nothing_before_a_best_epoch_or_for_a_last_best_one(tiny_backbone, toy_csv, monkeypatch):
    from adaptlab.training.checkpoint import BestWeights

    s, module, setup, task = run(tiny_backbone, toy_csv)
    names = {n for n, p in module.named_parameters() if p.requires_grad}
    best = BestWeights()
    best.cover(module, names)
    assert best.tensors == {}  # no best epoch yet: nothing to keep (a full model's copy, held for the whole run)
    best.update(module, names)
    assert set(best.tensors) == names
    best.update(module, names, copy=False)  # the last epoch is the best: the weights as they are
    assert best.tensors == {} and best.recorded
    copies = []
    original = BestWeights.update
    monkeypatch.setattr(BestWeights, "update", lambda self, m, n, copy=True: (copies.append(copy), original(self, m, n, copy))[1])
    s, module, setup, task = run(tiny_backbone, toy_csv, epochs=1, lr=1e-3)
    fit(s, module, setup.train_rows, setup.eval_rows, task.train_config)
    assert copies == [False]  # one epoch, kept as it ended


def test_step_log_reads_losses_and_statistics_in_one_transfer(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from adaptlab.training.steplog import StepLog

    log = StepLog(tmp_path / "steps.jsonl", every=2)
    for step, (loss, acc) in enumerate([(1.0, 0.0), (3.0, 1.0), (2.0, 0.5)], start=1):
        log.add(torch.tensor(loss), 4, step, 0, 1e-3, {"reward_accuracy": torch.tensor(acc)})
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: (reads.append(t.shape), original(t))[1])
    assert log.step(SimpleNamespace(step=2), 0, 1e-3)
    assert len(reads) == 1 and reads[0] == (6,)  # three losses and three statistics, one read
    line = json.loads((tmp_path / "steps.jsonl").read_text())
    assert line["loss"] == 2.0 and line["reward_accuracy"] == 0.5
    summary = log.epoch_summary()
    assert summary == {"train_loss": 2.0, "train_reward_accuracy": 0.5} and log.epoch_summary()["train_loss"] == 0
