"""MAD-X: the language adapter trains by masked language modelling, alone; it is cached; the stack swaps."""

from __future__ import annotations

import json

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.strategies import Task, get_strategy
from adaptlab.strategies._adapters import AdapterStack
from adaptlab.training.runner import make_setup, prepare_module, resolve_train


@pytest.fixture
def make(tiny_backbone, toy_csv, monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path / "cache"))

    def build(**options):
        cfg = load_config({"strategy": {"name": "mad_x", "target_text": str(toy_csv), "mlm_texts": 60, **options},
                           "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)},
                           "train": {"progress": False, "batch_size": 16, "dropout": 0.0}})
        setup = make_setup(cfg)
        strategy = get_strategy("mad_x")(cfg.strategy)
        task = Task(setup.data.labels, setup.backbone, resolve_train(cfg))
        return strategy, prepare_module(strategy, task), task

    return build


def test_language_adapter_trains_alone_and_is_cached(make, tiny_backbone, tmp_path):
    from transformers import AutoModel

    strategy, module, _ = make(mlm_lr=1e-2)
    original = dict(AutoModel.from_pretrained(tiny_backbone).named_parameters())
    for name, p in module.encoder.named_parameters():
        if ".adapters." not in name:
            assert torch.equal(p, original[name]), f"MLM changed the backbone: {name}"
    language = {n: p for n, p in module.named_parameters() if ".adapters.target." in n}
    assert any(p.abs().sum() > 0 for n, p in language.items() if ".up." in n), "the language adapter did not train"
    assert all(p.abs().sum() == 0 for n, p in module.named_parameters() if ".adapters.task.up." in n)
    assert strategy.report["target"]["cached"] is False and len(strategy.report["target"]["mlm_loss"]) == 2  # head, then adapter
    assert len(list((tmp_path / "cache" / "language-adapters").glob("*.safetensors"))) == 1

    again, module2, _ = make(mlm_lr=1e-2)
    assert again.report["target"]["cached"] is True
    for n, p in module2.named_parameters():
        if ".adapters.target." in n:
            assert torch.equal(p, language[n])


def test_stacks_train_on_source_and_predict_with_target(make, toy_csv, tmp_path):
    strategy, module, task = make(source_text=str(toy_csv), cache=False)
    stacks = {tuple(m.active) for m in module.modules() if isinstance(m, AdapterStack)}
    assert stacks == {("source", "task")}
    strategy.save(module, tmp_path, task)
    assert {tuple(m.active) for m in module.modules() if isinstance(m, AdapterStack)} == {("target", "task")}
    meta = json.loads((tmp_path / "mad_x.json").read_text())
    assert meta["inference_stack"] == ["target", "task"] and set(meta["language_adapters"]) == {"source", "target"}
    loaded = strategy.load(tmp_path, task)
    assert {tuple(m.active) for m in loaded.modules() if isinstance(m, AdapterStack)} == {("target", "task")}


def test_missing_language_text_fails_before_any_run_folder(cli, tiny_backbone, toy_csv, tmp_path):
    code, _, err = cli("train", "-s", "mad_x", "-b", tiny_backbone, "-d", toy_csv, "--set", "strategy.target_text=none.txt", "-o", "run")
    assert code == 2 and "no bundled dataset or file named 'none.txt'" in err
    assert not list(tmp_path.glob("run*"))


def test_the_language_adapters_training_counts_in_train_seconds(tiny_backbone, toy_csv, monkeypatch, tmp_path):
    import adaptlab

    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path / "cache"))
    run = adaptlab.train(strategy="mad_x", backbone=str(tiny_backbone), data=str(toy_csv), output=str(tmp_path / "run"),
                         overrides={"strategy.target_text": str(toy_csv), "strategy.mlm_texts": 60, "train.epochs": 1,
                                    "train.progress": False})
    m = run.metrics
    before = m["train_seconds_before_fit"]["language adapter (target)"]
    assert before > 0 and m["train_seconds"] >= before + 0.001  # the MLM stage is part of the cost, beside the task adapter's
    assert before == pytest.approx(json.loads((tmp_path / "run" / "model" / "mad_x.json").read_text())
                                   ["language_adapters"]["target"]["seconds"])
