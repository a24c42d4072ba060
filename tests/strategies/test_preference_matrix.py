"""Every strategy of the preference task, with each of two methods deciding what trains, through the same
invariants: only what the method trains changes, the training loss falls, and the saved artefact loads
back to the same outputs. (Objective-specific checks: tests/tasks/test_preference.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.eval.metrics import model_inputs
from adaptlab.strategies import Task, discover, get_strategy
from adaptlab.strategies.base import hook, load_pretrained, save_pretrained
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train

from ..conftest import make_tiny_chat_llama, write_csv
from ..tasks.test_preference import toy_pairs

TRAINS = {"lora": lambda n: "lora_" in n or "modules_to_save" in n, "full": lambda n: True}
CASES = {(name, method): TRAINS[method] for name in ("dpo", "orpo", "simpo", "kto", "reward_model") for method in ("lora", "full")}


def test_every_preference_strategy_has_rows():
    declared = {name for name, cls in discover().items() if "preference" in getattr(cls, "tasks", ())}
    assert declared == {name for name, _ in CASES} | {"zero_shot"}  # zero_shot trains nothing: tests/tasks/test_preference.py


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("preference-matrix")
    return make_tiny_chat_llama(root / "chat"), write_csv(root / "pairs.csv", toy_pairs(96, seed=2))


@pytest.fixture(scope="module")
def trained(chat):
    cache: dict[tuple, dict[str, Any]] = {}

    def get(key: tuple) -> dict[str, Any]:
        if key not in cache:
            name, method = key
            cfg = load_config({"strategy": {"name": name, "method": method}, "backbone": str(chat[0]),
                               "data": {"train": str(chat[1]), "max_length": 32, "validation_fraction": 0},
                               "generation": {"max_new_tokens": 4},
                               "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3 if method == "lora" else 3e-4, "progress": False,
                                         "keep_best": False, "checkpoint_every": None}})
            setup = make_setup(cfg)
            strategy = get_strategy(name)(cfg.strategy)
            task = Task([], setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
            module = prepare_module(strategy, task)
            before = {n: p.detach().clone() for n, p in module.named_parameters()}
            module, state = fit(strategy, module, setup.train_rows, setup.eval_rows[:16], task.train_config, task_type=task.type)
            cache[key] = dict(strategy=strategy, task=task, module=module, state=state, before=before, setup=setup)
        return cache[key]

    return get


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_only_what_the_method_trains_changes_and_the_loss_falls(trained, key):
    t = trained(key)
    after = dict(t["module"].named_parameters())
    expected = {n for n in after if CASES[key](n)}
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), t["before"][n])}
    assert expected and changed <= expected, f"frozen parameters changed: {sorted(changed - expected)[:5]}"
    assert len(changed) >= len(expected) * 0.9  # (a few can stay put: an embedding row no pair uses)
    history = t["state"].history
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_save_load_gives_the_same_outputs(trained, key, tmp_path):
    t = trained(key)
    strategy, task, module = t["strategy"], t["task"], t["module"]
    hook(strategy, "save", save_pretrained)(module, tmp_path, task)
    loaded = get_strategy(key[0])(strategy.config)
    loaded = hook(loaded, "load", load_pretrained)(tmp_path, task)
    batch = model_inputs(task.type.collate(task.backbone.tokenizer.pad_token_id)(t["setup"].eval_rows[:8]))
    batch.pop("answer_labels", None)  # the full logits, not the answers' log-probabilities alone
    module.eval(), loaded.eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**batch).logits, module(**batch).logits, rtol=0, atol=1e-5)
