"""GRPO and RLOO (online objectives) through every method row, on a tiny chat Llama with a verifiable reward.

The reward is the user's own function in a file, with TRL's signature (``f(prompts, completions, **columns)``):
shorter answers score higher. A run that did nothing -- advantages of the wrong sign, no gradient reaching
the policy, rewards not read -- leaves the held-out reward where it started; these runs must raise it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from adaptlab.config import load_config
from adaptlab.errors import AdaptlabError
from adaptlab.objectives import discover as objectives
from adaptlab.objectives.grpo import clipped_loss, group_advantages
from adaptlab.objectives.rloo import leave_one_out
from adaptlab.strategies import Task, get_strategy
from adaptlab.strategies.base import hook, load_pretrained, save_pretrained
from adaptlab.training.loop import fit, score
from adaptlab.training.runner import make_setup, prepare_module, resolve_train, run_one
from tests.conftest import make_tiny_chat_llama, toy_translations, write_csv

TRAINS = {"lora": lambda n: "lora_" in n, "full": lambda n: True}
CASES = {(name, method): TRAINS[method] for name in ("grpo", "rloo") for method in ("lora", "full")}
LR = {"lora": 2e-2, "full": 2e-3}
BREVITY = '''
def brevity(prompts, completions, **columns):
    assert len(columns["reference"]) == len(completions)
    return [1.0 - min(len(c.split()), 8) / 8 for c in completions]
'''


def test_every_online_objective_has_rows():
    online = {name for name, cls in objectives().items() if cls.online}
    assert online == {name for name, _ in CASES}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("online")
    reward = root / "rewards.py"
    reward.write_text(BREVITY)
    return make_tiny_chat_llama(root / "chat"), write_csv(root / "tr.csv", toy_translations(96, seed=1)), reward


def config(files: tuple[Path, Path, Path], name: str, method: str, **strategy: Any) -> Any:
    chat, data, reward = files
    return load_config({"strategy": {"name": name, "method": method, "group_size": 8, "max_new_tokens": 8,
                                     "reward": f"{reward}:brevity", **strategy},
                        "backbone": str(chat), "data": {"task": "sft", "train": str(data), "max_length": 48, "validation_fraction": 0},
                        "generation": {"max_new_tokens": 8},
                        "train": {"epochs": 2, "batch_size": 4, "lr": LR.get(method, 1e-3), "progress": False, "keep_best": False,
                                  "checkpoint_every": None}})


@pytest.fixture(scope="module")
def trained(files):
    cache: dict[tuple, dict[str, Any]] = {}

    def get(key: tuple) -> dict[str, Any]:
        if key not in cache:
            cfg = config(files, *key)
            setup = make_setup(cfg)
            strategy = get_strategy(key[0])(cfg.strategy)
            task = Task([], setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
            module = prepare_module(strategy, task)
            before = {n: p.detach().clone() for n, p in module.named_parameters()}
            start = score(strategy, module, setup.eval_rows[:16], task.train_config, task_type=task.type)
            module, state = fit(strategy, module, setup.train_rows, setup.eval_rows[:16], task.train_config, task_type=task.type)
            cache[key] = dict(strategy=strategy, task=task, module=module, state=state, before=before, setup=setup, start=start)
        return cache[key]

    return get


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_the_held_out_reward_rises_and_only_the_method_trains(trained, key):
    t = trained(key)
    after = dict(t["module"].named_parameters())
    expected = {n for n in after if CASES[key](n)}
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), t["before"][n])}
    assert expected and changed <= expected, f"frozen parameters changed: {sorted(changed - expected)[:5]}"
    state = t["state"]
    start, end = t["start"]["reward"], state.history[-1]["reward"]
    assert end > start + 0.1, f"held-out reward {start:.3f} -> {end:.3f}"
    first, last = state.history[0], state.history[-1]
    assert 0 < last["train_answer_length"] <= 8  # sampled answer tokens, at most max_new_tokens
    if key[1] == "full":  # the sampled answers follow the reward too; LoRA's greedy answer turns first (sampled: ~6 -> ~6 tokens)
        assert last["train_answer_length"] < first["train_answer_length"] - 1, (first, last)
    assert {"train_reward", "train_reward_std", "train_truncated"} <= set(first)
    assert ("train_kl" in first) and first["train_kl"] >= 0


@pytest.mark.parametrize("key", [("grpo", "lora")], ids=lambda k: f"{k[0]}-{k[1]}")
def test_save_load_gives_the_same_outputs(trained, key, tmp_path):
    t = trained(key)
    strategy, task, module = t["strategy"], t["task"], t["module"]
    hook(strategy, "save", save_pretrained)(module, tmp_path, task)
    loaded = hook(get_strategy(key[0])(strategy.config), "load", load_pretrained)(tmp_path, task)
    ids = torch.tensor([t["setup"].eval_rows[0]["input_ids"]])
    module.eval(), loaded.eval()
    with torch.inference_mode():
        torch.testing.assert_close(loaded(input_ids=ids).logits, module(input_ids=ids).logits, rtol=0, atol=1e-5)


def test_group_advantages_and_leave_one_out():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    a = group_advantages(r, 4, scale=True)
    torch.testing.assert_close(a[:4], (r[:4] - 0.5) / (r[:4].std() + 1e-4))
    assert torch.all(a[4:] == 0)  # a group whose answers all score alike teaches nothing
    loo = leave_one_out(r, 4)
    torch.testing.assert_close(loo[0], r[0] - r[1:4].mean())


def test_the_clip_bounds_the_ratio_like_ppo():
    logps = torch.zeros(1, 3, requires_grad=True)
    per_token, clipped = clipped_loss(logps, torch.ones(1, 3, dtype=torch.bool), torch.tensor([2.0]), 0.2)
    torch.testing.assert_close(per_token.detach(), torch.full((1, 3), -2.0))  # rho = 1 at the sampling policy
    per_token.sum().backward()
    torch.testing.assert_close(logps.grad, torch.full((1, 3), -2.0))  # the policy gradient: -A d log pi
    assert float(clipped) == 0.0


def test_a_reward_that_does_not_resolve_is_one_error(files, tmp_path):
    with pytest.raises(AdaptlabError, match="has no function"):
        get_strategy("grpo")(config(files, "grpo", "lora", reward=f"{files[2]}:missing").strategy)
    with pytest.raises(AdaptlabError, match="unknown reward"):
        get_strategy("grpo")(config(files, "grpo", "lora", reward="bleurt").strategy)
    with pytest.raises(AdaptlabError, match="must be a method"):
        get_strategy("grpo")(config(files, "grpo", "linear_probe").strategy)


def test_prompts_alone_are_enough_and_a_run_folder_records_the_reward_before_and_after(files, tmp_path):
    prompts = write_csv(tmp_path / "prompts.csv", [{"prompt": r["prompt"]} for r in toy_translations(40, seed=3)])
    cfg = config(files, "grpo", "lora")
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1}),
                                 "data": cfg.data.model_copy(update={"train": str(prompts), "max_train": 16, "max_eval": 8})})
    setup = make_setup(cfg)
    assert setup.data.form == "prompt"
    metrics = run_one(cfg, setup, tmp_path / "grpo").metrics
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [0, 1] and history[0]["reward"] is not None
    assert metrics["eval"]["reward"] is not None and "train_reward" in history[1]
    lora = cfg.model_copy(update={"strategy": get_strategy("lora").Config(name="lora")})
    with pytest.raises(AdaptlabError, match="has prompts but no answers.*grpo, rloo"):
        run_one(lora, setup, tmp_path / "lora")
    assert not (tmp_path / "lora").exists() and not (tmp_path / "lora.partial").exists()


def test_settings_an_online_objective_cannot_use_are_refused(files, tmp_path):
    for update, message in (({"train": {"lr": "auto"}}, "train.lr: auto"), ({"data": {"packing": True}}, "data.packing")):
        cfg = config(files, "grpo", "lora")
        section = getattr(cfg, next(iter(update)))
        cfg = cfg.model_copy(update={k: section.model_copy(update=v) for k, v in update.items()})
        with pytest.raises(AdaptlabError, match=message):
            run_one(cfg, make_setup(cfg), tmp_path / "refused")
        assert not list(tmp_path.glob("refused*"))


def test_several_rewards_are_weighted_and_each_is_logged():
    from adaptlab.objectives.rewards import resolve, score

    rewards = resolve(["exact_match", {"function": "adaptlab.objectives.rewards:chrf", "weight": 0.5}])
    total, means = score(rewards, ["p", "p"], ["the cat", "a dog"], reference=["the cat", "the cat"])
    chrf_second = resolve("chrf")[0].fn(["p"], ["a dog"], reference=["the cat"])[0]
    assert total == pytest.approx([1.0 + 0.5 * 1.0, 0.5 * chrf_second])
    assert set(means) == {"exact_match", "adaptlab.objectives.rewards:chrf"} and means["exact_match"] == 0.5


def test_a_reward_model_run_is_a_reward_and_grpo_raises_its_score(files, tmp_path):
    """RLHF's loop: a reward model trained on pairs (chosen: the translation, rejected: the prompt copied back)
    scores the answers GRPO samples; the held-out mean of its scores rises. A run that is not a reward model,
    or a stage that does not exist, is one error line before any folder."""
    import adaptlab
    from tests.tasks.test_preference import toy_pairs

    pairs = write_csv(tmp_path / "pairs.csv", toy_pairs(160))
    rm = tmp_path / "rm"
    adaptlab.train(strategy="reward_model", backbone=str(files[0]), data=str(pairs), output=str(rm),
                   overrides={"data.max_length": 32, "data.max_eval": 16, "train.epochs": 2, "train.lr": 1e-2,
                              "train.batch_size": 8, "train.progress": False})
    cfg = config(files, "grpo", "lora", reward=str(rm))
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"max_train": 48, "max_eval": 16})})
    metrics = run_one(cfg, make_setup(cfg), tmp_path / "grpo").metrics
    before, after = metrics["history"][0]["reward"], metrics["eval"]["reward"]
    assert after > before + 1.0, (before, after)  # reward-model logits (here about -3 -> +4)
    for reward, message in ((str(tmp_path / "grpo"), "not a reward model"), ("@nowhere", "names no finished run")):
        bad = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"reward": reward})})
        with pytest.raises(AdaptlabError, match=message):
            run_one(bad, make_setup(bad), tmp_path / "refused")
        assert not list(tmp_path.glob("refused*"))


def test_a_recipe_stage_is_a_reward(files, tmp_path):
    """``reward: "@rm"`` in a comparison: the stage's reward model scores the row's answers (RLHF in one recipe)."""
    import adaptlab
    from tests.tasks.test_preference import toy_pairs

    pairs = write_csv(tmp_path / "pairs.csv", toy_pairs(64))
    chat, data, _ = files
    recipe = {"backbone": str(chat), "data": {"task": "sft", "train": str(data), "max_length": 32, "max_train": 16, "max_eval": 8,
                                              "validation_fraction": 0},
              "generation": {"max_new_tokens": 4}, "train": {"progress": False, "batch_size": 4},
              "stages": [{"name": "rm", "data": {"task": "preference", "train": str(pairs)}, "strategy": {"name": "reward_model", "method": "lora"},
                          "train": {"epochs": 1, "lr": 1e-2}}],
              "strategies": [{"name": "grpo", "method": "lora", "reward": "@rm", "group_size": 2, "max_new_tokens": 4,
                              "train": {"epochs": 1, "lr": 1e-2}}]}
    result = adaptlab.compare(recipe=recipe, output=str(tmp_path / "cmp"))
    grpo = json.loads((tmp_path / "cmp" / "grpo" / "metrics.json").read_text())
    assert grpo["history"][0]["reward"] is not None and grpo["eval"]["reward"] is not None
    assert result.rows[-1]["run"] == "grpo"


def test_planning_never_opens_a_reward_model():
    """``plan-memory`` checks a GRPO config with a reward-model reward without loading it (no opener is handed in);
    scoring with it unopened is a bug, said as one."""
    from adaptlab.objectives.rewards import ModelReward, open_models, resolve

    rewards = resolve(["@rm", "chrf"])
    assert isinstance(rewards[0].fn, ModelReward)
    open_models(rewards, None, None)  # no runner, no stage folder: nothing to open, nothing raised
    with pytest.raises(RuntimeError, match="was not opened"):
        rewards[0].fn(["p"], ["a"])
