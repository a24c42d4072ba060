"""ULMFiT specifics: which group opens at which epoch, and discriminative learning rates."""

from __future__ import annotations

import pytest

from adaptlab.config import load_config
from adaptlab.strategies import Task, get_strategy
from adaptlab.training.runner import make_setup, prepare_module, resolve_train


def prepared(tiny_backbone, toy_csv, **options):
    cfg = load_config({"strategy": {"name": "gradual_unfreeze", **options}, "backbone": str(tiny_backbone),
                       "data": {"train": str(toy_csv)}})
    setup = make_setup(cfg)
    strategy = get_strategy("gradual_unfreeze")(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
    return strategy, prepare_module(strategy, task), task


def trainable(module):
    return {n for n, p in module.named_parameters() if p.requires_grad}


def test_one_more_group_per_epoch(tiny_backbone, toy_csv):
    strategy, module, task = prepared(tiny_backbone, toy_csv)
    assert task.train_config.schedule == "slanted_triangular"
    opened = []
    for epoch in range(5):
        strategy.on_epoch_start(epoch, module)
        opened.append(trainable(module))
    assert all(n.startswith(("classifier.", "bert.pooler.")) for n in opened[0])
    assert {n.split(".")[3] for n in opened[1] - opened[0]} == {"1"}  # encoder.layer.1
    assert {n.split(".")[3] for n in opened[2] - opened[1]} == {"0"}
    assert all(n.startswith("bert.embeddings.") for n in opened[3] - opened[2])
    assert opened[4] == opened[3] == set(dict(module.named_parameters()))


def test_discriminative_learning_rates(tiny_backbone, toy_csv):
    strategy, module, _ = prepared(tiny_backbone, toy_csv, lr_decay=2.0, unfreeze_every=2)
    groups = strategy.param_groups(module, lr=1e-3, weight_decay=0.01)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(module.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == pytest.approx(1e-3)
    assert lr_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    assert len(lr_of) == len(named)  # every parameter is in exactly one group
    strategy.on_epoch_start(1, module)
    assert not any("layer.1" in n for n in trainable(module))  # unfreeze_every=2: still the head only
