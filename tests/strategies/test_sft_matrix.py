"""The task axis of the strategy matrix: every strategy that supports ``sft`` on a tiny chat Llama.

The same invariants as ``test_matrix.py`` holds for classifiers: only the intended
parameters train (every frozen one stays bit-identical), the reported count is
exactly those, the loss falls, and save -> load gives identical greedy generations.
A strategy that declares ``sft`` needs a row here; the first test fails until it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.strategies import Task, discover, get_strategy
from adaptlab.strategies.base import hook, load_pretrained, save_pretrained
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train, run_one
from tests.conftest import make_tiny_chat_llama, toy_translations, write_csv


@dataclass
class Case:
    trains: Callable[[str], bool]
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    learns: bool = True
    cuda: bool = False  # qlora: 4-bit kernels need CUDA; skipped elsewhere


CASES = {
    "full": Case(lambda n: True, train={"lr": 3e-3}),
    "top_k": Case(lambda n: n.startswith(("model.layers.1.", "model.norm.")), {"k": 1}, {"lr": 3e-3}),
    "gradual_unfreeze": Case(lambda n: True, {"layers_per_group": 1, "unfreeze_every": 1}, {"lr": 3e-3, "epochs": 4}),
    "lora": Case(lambda n: "lora_" in n, train={"lr": 1e-2}),
    "dora": Case(lambda n: "lora_" in n, train={"lr": 1e-2}),
    "qlora": Case(lambda n: "lora_" in n, train={"lr": 1e-2}, cuda=True),
    "ia3": Case(lambda n: "ia3_l" in n, train={"lr": 3e-2}),
    "prompt_tuning": Case(lambda n: "prompt_encoder" in n, train={"lr": 3e-1}),
    "p_tuning": Case(lambda n: "prompt_encoder" in n, train={"lr": 3e-2}),
    "prefix_tuning": Case(lambda n: "prompt_encoder" in n, {"init": "random"}, {"lr": 3e-2}),
    "zero_shot": Case(lambda n: False, learns=False),
}
PROMPTS = ["translate : good film", "translate : the plot was dull", "translate : superb"]


def test_every_sft_strategy_has_a_row():
    declared = {name for name, cls in discover().items() if "sft" in getattr(cls, "tasks", ())
                and not getattr(cls, "score_before", False)}  # online objectives: tests/objectives/test_online.py
    assert declared == set(CASES)


@pytest.fixture(autouse=True)
def _cuda_only(request):
    """Cases marked ``cuda`` (qlora) are skipped where no CUDA device is."""
    name = getattr(getattr(request.node, "callspec", None), "params", {}).get("name")
    if name in CASES and CASES[name].cuda and not torch.cuda.is_available():
        pytest.skip(f"{name} needs a CUDA GPU (bitsandbytes' 4-bit kernels)")


@pytest.fixture(scope="module")
def chat(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sft-matrix")
    return make_tiny_chat_llama(root / "chat"), write_csv(root / "pairs.csv", toy_translations(160, seed=1))


def config(name: str, chat: tuple[Path, Path]) -> Any:
    case = CASES[name]
    return load_config({"strategy": {"name": name, **case.options}, "backbone": str(chat[0]),
                        "data": {"train": str(chat[1]), "max_length": 64},
                        "train": {"epochs": 3, "batch_size": 16, "progress": False, "keep_best": False, **case.train},
                        "generation": {"max_new_tokens": 8}})


@pytest.fixture(scope="module")
def trained(chat):
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cfg = config(name, chat)
            setup = make_setup(cfg)
            strategy = get_strategy(name)(cfg.strategy)
            task = Task([], setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
            rows = hook(strategy, "dataset", lambda data, task: (setup.train_rows, setup.val_rows))(setup.data, task)
            module = prepare_module(strategy, task)
            before = {n: p.detach().cpu().clone() for n, p in module.named_parameters()}
            module, state = fit(strategy, module, *rows, task.train_config, task_type=setup.task_type)
            cache[name] = dict(strategy=strategy, task=task, module=module, state=state, before=before, setup=setup, cfg=cfg)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_only_intended_parameters_train(trained, name):
    t = trained(name)
    after = dict(t["module"].named_parameters())
    expected = {n for n in after if CASES[name].trains(n)}
    assert bool(expected) == CASES[name].learns
    assert set(t["state"].ever_trainable) == expected
    changed = {n for n, p in after.items() if not torch.equal(p.detach().cpu(), t["before"][n])}
    assert not (changed - expected), f"frozen parameters changed: {sorted(changed - expected)[:5]}"
    assert changed == expected, f"trainable parameters that never changed: {sorted(expected - changed)[:5]}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_falls(trained, name):
    history = trained(name)["state"].history
    if not CASES[name].learns:  # scored once, untrained, with generation metrics
        assert [h["epoch"] for h in history] == [0] and history[0]["train_loss"] is None
        assert {"chrf", "bleu", "rouge_l", "exact_match", "loss"} <= set(history[0])
        return
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["loss"] < history[0]["loss"]  # the validation split's response loss


@pytest.mark.parametrize("name", sorted(CASES))
def test_save_load_gives_the_same_generations(trained, name, tmp_path):
    t = trained(name)
    strategy, task, module = t["strategy"], t["task"], t["module"]
    hook(strategy, "save", save_pretrained)(module, tmp_path, task)
    loaded = hook(strategy, "load", load_pretrained)(tmp_path, task).to(next(module.parameters()).device)
    assert task.type.generate(loaded, PROMPTS, progress=False) == task.type.generate(module, PROMPTS, progress=False)
    from adaptlab.eval.metrics import model_inputs

    batch = model_inputs(task.type.collate(task.backbone.tokenizer.pad_token_id)(t["setup"].eval_rows[:8]))
    batch.pop("answer_labels", None)  # the full logits, not the answers' log-probabilities alone
    batch = {k: v.to(next(module.parameters()).device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    module.eval(), loaded.eval()
    with torch.inference_mode():  # generations can agree by luck (both stop at once): the logits cannot
        torch.testing.assert_close(loaded(**batch).logits, module(**batch).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["lora", "full", "zero_shot"])
def test_reported_counts(chat, tmp_path, name):
    cfg = config(name, chat)
    setup = make_setup(cfg)
    result = run_one(cfg, setup, tmp_path / "run")
    task = Task([], setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
    fresh = prepare_module(get_strategy(name)(cfg.strategy), task)
    assert result.metrics["trainable_params"] == sum(p.numel() for n, p in fresh.named_parameters() if CASES[name].trains(n))
    assert result.metrics["task"]["type"] == "sft" and result.metrics["samples"]
    assert set(result.metrics["eval"]) == {"chrf", "bleu", "rouge_l", "exact_match", "loss", "perplexity"}
