"""Configs: YAML recipes, --set overrides, validation errors that name the field."""

from __future__ import annotations

import pytest

from adaptlab.config import apply_overrides, load_config
from adaptlab.errors import AdaptlabError
from adaptlab.training.runner import resolve_train


def test_recipe_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("strategy: {name: lora, r: 4}\ntrain: {lr: 1.0e-3}\ndata: {train: x.csv}\n", encoding="utf-8")
    cfg = load_config(recipe, ["train.lr=3e-4", "strategy.alpha=8", "data.max_train=100", "train.patience=null"])
    assert cfg.strategy.r == 4 and cfg.strategy.alpha == 8
    assert cfg.train.lr == 3e-4 and cfg.data.max_train == 100 and cfg.train.patience is None


def test_strategy_given_as_a_name_then_options():
    cfg = load_config({"strategy": "top_k"}, {"strategy.k": 3})
    assert cfg.strategy.name == "top_k" and cfg.strategy.k == 3


def test_strategy_defaults_fill_only_unset_fields():
    cfg = load_config({"strategy": "linear_probe", "train": {"epochs": 2}})
    train = resolve_train(cfg)
    assert train.epochs == 2  # the user's
    assert train.lr == "auto" and train.weight_decay == 0.0  # the data decides the rate; the strategy the rest
    assert resolve_train(load_config({"strategy": "maml"})).lr == 2e-5  # an episodic sampler: the strategy's rate
    assert resolve_train(load_config({"strategy": "gradual_unfreeze"})).epochs == 4  # its epochs open the layer groups
    assert resolve_train(load_config({"strategy": "full", "train": {"weight_decay": 0.1}})).weight_decay == 0.1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lrr=1"], "unknown config key 'train.lrr' \\(did you mean 'train.lr'\\?\\)"),
        (["strategy.rank=4"], "unknown config key 'strategy.rank'"),
        (["strategy.name=lorra"], "unknown strategy 'lorra' \\(did you mean 'lora'\\?\\)"),
        (["train.epochs=zero"], "invalid config 'train.epochs': .*integer"),
        (["strategy.r=0"], "invalid config 'strategy.r': .*greater than or equal to 1"),
        (["data.eval_fraction=1.5"], "invalid config 'data.eval_fraction'"),
        (["nonsense"], "--set expects key=value"),
        (["datta.train=x"], "unknown config key 'datta' \\(did you mean 'data'\\?\\)"),
    ],
)
def test_errors_name_the_field(overrides, message):
    with pytest.raises(AdaptlabError, match=message) as err:
        load_config({"strategy": "lora"}, overrides)
    assert "\n" not in str(err.value)


def test_invalid_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: lora\ntrain: {lr: 1e-3\n", encoding="utf-8")
    with pytest.raises(AdaptlabError, match="invalid YAML in .*bad.yaml at line"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(AdaptlabError, match="must be a mapping"):
        load_config(listy)
    with pytest.raises(AdaptlabError, match="recipe file not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_do_not_mutate_the_callers_dict():
    recipe = {"strategy": {"name": "lora"}, "train": {"lr": 1e-3}}
    load_config(recipe, ["train.lr=5"])
    assert recipe["train"]["lr"] == 1e-3


def test_apply_overrides_creates_sections():
    assert apply_overrides({}, {"a.b.c": 1}) == {"a": {"b": {"c": 1}}}
