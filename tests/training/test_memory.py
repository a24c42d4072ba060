"""Memory levers for large models: gradient checkpointing, the load dtype, no optimiser state for frozen
weights, and ``adaptlab plan-memory``'s plan from the config alone."""

from __future__ import annotations

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.errors import AdaptlabError
from adaptlab.strategies import Task, get_strategy
from adaptlab.training.loop import fit, make_optimizer
from adaptlab.training.runner import make_setup, prepare_module, resolve_train

SFT = {"epochs": 1, "lr": 1e-2, "batch_size": 8, "progress": False, "checkpoint_every": None, "keep_best": False, "seed": 0}


def prepared(name: str, backbone, data, **train) -> tuple:
    cfg = load_config({"strategy": {"name": name}, "backbone": str(backbone), "data": {"train": str(data), "max_length": 64,
                                                                                      "validation_fraction": 0},
                       "train": {**SFT, **train}, "generation": {"max_new_tokens": 4}})
    setup = make_setup(cfg)
    strategy = get_strategy(name)(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
    return strategy, prepare_module(strategy, task), setup, task


def test_checkpointing_changes_memory_not_the_result(tiny_chat, translations_csv):
    """Recomputing activations gives the same weights after the same steps (no dropout: deterministic)."""
    runs = {}
    for on in (False, True):
        strategy, module, setup, task = prepared("lora", tiny_chat, translations_csv, gradient_checkpointing=on, dropout=0.0)
        module, state = fit(strategy, module, setup.train_rows[:32], [], task.train_config, task_type=setup.task_type)
        assert state.gradient_checkpointing is on
        assert not any(getattr(m, "gradient_checkpointing", False) for m in module.modules())  # switched off again after training
        runs[on] = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    for name, weight in runs[False].items():
        torch.testing.assert_close(runs[True][name], weight, rtol=1e-4, atol=1e-6)


def test_auto_checkpointing_is_on_for_generative_tasks_and_off_for_classifiers(tiny_chat, translations_csv, tiny_backbone, toy_csv):
    strategy, module, setup, task = prepared("lora", tiny_chat, translations_csv)
    assert fit(strategy, module, setup.train_rows[:8], [], task.train_config, task_type=setup.task_type)[1].gradient_checkpointing
    strategy, module, setup, task = prepared("lora", tiny_backbone, toy_csv)
    assert not fit(strategy, module, setup.train_rows[:8], [], task.train_config, task_type=setup.task_type)[1].gradient_checkpointing


def test_prefix_tuning_refuses_checkpointing_asked_for_and_skips_it_under_auto(tiny_chat, translations_csv):
    strategy, module, setup, task = prepared("prefix_tuning", tiny_chat, translations_csv, gradient_checkpointing=True)
    with pytest.raises(AdaptlabError, match="prefix_tuning cannot train with it .*cache"):
        fit(strategy, module, setup.train_rows[:8], [], task.train_config, task_type=setup.task_type)
    strategy, module, setup, task = prepared("prefix_tuning", tiny_chat, translations_csv)
    assert not fit(strategy, module, setup.train_rows[:8], [], task.train_config, task_type=setup.task_type)[1].gradient_checkpointing


def test_frozen_weights_get_no_optimiser_state(tiny_chat, translations_csv):
    from adaptlab.eval.metrics import model_inputs
    from adaptlab.strategies.base import param_groups

    strategy, module, setup, task = prepared("lora", tiny_chat, translations_csv)
    optimizer = make_optimizer(param_groups(module, 1e-3, 0.01), 1e-3, torch.device("cpu"))
    batch = setup.task_type.collate(setup.backbone.tokenizer.pad_token_id)(setup.train_rows[:4])
    setup.task_type.loss(module(**model_inputs(batch)), batch).backward()
    optimizer.step()
    with_state = {id(p) for p in optimizer.state}
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    frozen = [p for p in module.parameters() if not p.requires_grad]
    assert with_state == trainable and frozen and not any(id(p) in with_state for p in frozen)


def test_a_base_loaded_in_bf16_trains_its_adapters_in_fp32(tiny_backbone, toy_csv):
    """train.precision bf16 (what auto is on a bf16 GPU): the frozen base is loaded in bf16, what trains is held in
    fp32 by the loop (its upcast, before the optimiser exists), and a mixed-precision step runs."""
    from adaptlab.eval.metrics import model_inputs
    from adaptlab.models.modeling import upcast
    from adaptlab.strategies.base import param_groups

    strategy, module, setup, task = prepared("lora", tiny_backbone, toy_csv, precision="bf16")
    assert next(p for n, p in module.named_parameters() if "query.base_layer" in n).dtype == torch.bfloat16
    assert upcast(p for g in param_groups(module, 1.0, 0.0) for p in g["params"]) > 0
    assert {p.dtype for p in module.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in module.parameters() if not p.requires_grad} == {torch.bfloat16}
    batch = setup.task_type.collate(0)(setup.train_rows[:8])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = setup.task_type.loss(module(**model_inputs(batch)), batch)
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in module.parameters() if p.requires_grad)


def test_plan_counts_what_the_strategy_trains_without_loading_weights(tiny_chat, monkeypatch):
    from transformers import PreTrainedModel

    from adaptlab.training.plan_memory import plan_memory

    def refuse(*args, **kwargs):
        raise AssertionError("plan-memory loaded weights")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))
    plans = {}
    for name, options in (("full", {}), ("lora", {}), ("top_k", {"k": 1})):
        cfg = load_config({"strategy": {"name": name, **options}, "backbone": str(tiny_chat), "data": {"task": "sft", "max_length": 64},
                           "train": {"batch_size": 4, "gradient_checkpointing": False}})
        plans[name] = plan_memory(cfg, device="cpu")["plan"]
    monkeypatch.undo()
    assert plans["full"]["trainable_params"] == plans["full"]["total_params"]
    real = prepared("lora", tiny_chat, write_pairs(tiny_chat))[1]
    assert plans["lora"]["trainable_params"] == sum(p.numel() for p in real.parameters() if p.requires_grad)
    assert (plans["full"]["blocks_with_gradients"], plans["top_k"]["blocks_with_gradients"]) == (2, 1)
    assert plans["top_k"]["activations"] < plans["lora"]["activations"] == plans["full"]["activations"]
    assert plans["lora"]["optimizer"] < plans["full"]["optimizer"] / 2


def write_pairs(folder):
    from tests.conftest import toy_translations, write_csv

    return write_csv(folder.parent / "plan-pairs.csv", toy_translations(16))


def test_plan_memory_command_says_what_does_not_fit_and_what_to_change(cli, tiny_chat):
    code, out, err = cli("plan-memory", "-s", "full", "-b", tiny_chat, "--task", "sft", "--max-memory-gb", "0.45",
                         "--batch-size", "64", "--max-length", "128", "--set", "train.gradient_checkpointing=false")
    assert code == 0, err
    assert "does not fit" in out and "to fit: --set train.gradient_checkpointing=true (saves about" in out, out
    code, out, err = cli("plan-memory", "-s", "lora", "-b", tiny_chat, "--task", "sft", "--max-memory-gb", "8")
    assert code == 0 and ": fits" in out and "to fit" not in out
    code, out, err = cli("plan-memory", "-b", tiny_chat, "--device", "tpu")
    assert code == 2 and "error: --device must be cpu or cuda" in err
