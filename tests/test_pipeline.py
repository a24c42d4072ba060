"""Multi-stage recipes: @stage references, train pipelines, stages inside compare (the A/B)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptlab.api import train
from adaptlab.config import read_yaml
from adaptlab.errors import AdaptlabError
from adaptlab.reporting.comparison import compare
from adaptlab.reporting.pipeline import plan_stages, resolve_ref

QUICK = {"epochs": 1, "lr": 5e-3, "batch_size": 16, "progress": False, "checkpoint_every": None, "seed": 0}


def test_bundled_recipes_by_name():
    for name in ("distill", "distill-ab", "dapt", "dapt-ab"):
        recipe = read_yaml(name)
        assert recipe["stages"] and plan_stages(recipe, {})
    with pytest.raises(AdaptlabError, match="recipe file not found"):
        read_yaml("no-such-recipe")


def test_stage_errors():
    with pytest.raises(AdaptlabError, match="needs a name"):
        plan_stages({"stages": [{"strategy": "full"}]}, {})
    with pytest.raises(AdaptlabError, match="used twice"):
        plan_stages({"stages": [{"name": "a", "strategy": "full"}, {"name": "a", "strategy": "lora"}]}, {})
    with pytest.raises(AdaptlabError, match="stage 'b'"):
        plan_stages({"stages": [{"name": "b", "strategy": {"name": "full", "bogus": 1}}]}, {})
    with pytest.raises(AdaptlabError, match="not part of a recipe"):
        resolve_ref("@x", None)
    assert resolve_ref("minilm-l6", None) == "minilm-l6"


def test_train_pipeline_chains_a_domain_stage(tiny_backbone, toy_csv, tmp_path):
    recipe = {"backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": QUICK,
              "stages": [{"name": "domain", "strategy": {"name": "dapt", "block_size": 32}, "train": {"epochs": 2}},
                         {"name": "task", "strategy": "full", "backbone": "@domain"}]}
    result = train(recipe, output=str(tmp_path / "pipe"))
    assert result.run_dir == tmp_path / "pipe" / "task" and result.metrics["backbone"] == "@domain"
    report = (tmp_path / "pipe" / "report.md").read_text()
    assert "## Domain-adaptive pretraining" in report
    from adaptlab.serve.predict import load

    moved = tmp_path / "moved"
    (tmp_path / "pipe").rename(moved)  # "@domain" resolves against the folder: still loads after a move
    assert load(moved / "task").predict(["a good film"])[0].label in ("pos", "neg")
    from adaptlab.serve.many import predict_rows

    rows = predict_rows([moved / "task"], ["a good film"])  # `adaptlab predict` goes through load_many
    assert rows[0]["probs"] == load(moved / "task").predict(["a good film"])[0].probs
    with pytest.raises(AdaptlabError, match="already exists"):
        train(recipe, output=str(moved))


def test_compare_runs_the_dapt_ab(tiny_backbone, toy_csv, tmp_path):
    recipe = {"backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": QUICK,
              "stages": [{"name": "domain", "strategy": {"name": "dapt", "block_size": 32}, "train": {"epochs": 2}}],
              "strategies": [{"name": "full"}, {"name": "full", "label": "full+dapt", "backbone": "@domain"}]}
    result = compare(recipe=recipe, output=tmp_path / "ab")
    assert [r["run"] for r in result.rows] == ["domain", "full", "full+dapt"]
    report = (tmp_path / "ab" / "report.md").read_text()
    assert "| full (full vs full+dapt) |" in report
    main_table = report.split("## Recommendation")[0]
    assert "| domain |" not in main_table  # a language-modelling stage is no classifier row
    assert "backbone: '@domain'" in (tmp_path / "ab" / "full+dapt" / "config.yaml").read_text()


def test_compare_checks_every_stage_reference_before_it_runs_anything(tiny_backbone, toy_csv, tmp_path):
    recipe = {"backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": QUICK,
              "stages": [{"name": "domain", "strategy": {"name": "dapt", "block_size": 32}}],
              "strategies": [{"name": "full"}, {"name": "full", "label": "late", "backbone": "@domian"}]}
    with pytest.raises(AdaptlabError, match="entry late: backbone '@domian' names no stage of this recipe .stages: domain."):
        compare(recipe=recipe, output=tmp_path / "ab")
    assert not list(tmp_path.iterdir())  # nothing ran, no folder


def test_a_comparison_frees_each_run_before_the_next(tiny_backbone, toy_csv, tmp_path, monkeypatch):
    """Each run's peak memory is its own: no earlier stage's or row's trained module is alive when the next
    run starts (they were kept to the end once, so that a comparison's sixth row measured five models more)."""
    import gc
    import weakref

    from adaptlab.reporting import comparison
    from adaptlab.training import runner

    alive: list[weakref.ref] = []
    original = runner.run_one

    def run_one(*args, **kwargs):
        gc.collect()
        assert [r for r in alive if r() is not None] == [], "an earlier run's module is still held"
        result = original(*args, **kwargs)
        alive.append(weakref.ref(result.module))
        return result

    monkeypatch.setattr(comparison, "run_one", run_one)  # the rows
    monkeypatch.setattr(runner, "run_one", run_one)  # the stages (pipeline imports it when it runs them)
    recipe = {"backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": QUICK,
              "stages": [{"name": "domain", "strategy": {"name": "dapt", "block_size": 32}}],
              "strategies": [{"name": "full"}, {"name": "full", "label": "full+dapt", "backbone": "@domain"}]}
    compare(recipe=recipe, output=tmp_path / "ab")
    assert len(alive) == 3


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parents[1] / "src" / "adaptlab" / "recipes").glob("*.yaml")))
def test_every_bundled_recipe_plans_its_stages_and_every_row(name):
    """Each bundled recipe's stages and rows -- those run by default and those run when named -- validate
    (a key a stage does not know, such as the rows' ``strategy_settings``, is one error before anything runs)."""
    from adaptlab.reporting.comparison import bundled_recipe, plan
    from adaptlab.reporting.pipeline import plan_stages

    recipe = bundled_recipe(name)
    plan_stages(recipe, {})
    named = [str(e.get("label") or e.get("name")) if isinstance(e, dict) else e for e in recipe.get("strategy_settings") or []]
    assert plan(recipe, None, {}) and (not named or plan(recipe, named, {}))


def test_the_fewshot_recipe_draws_its_examples_per_seed():
    """``compare fewshot --seeds 3`` is documented (docs/transfer.md) as each seed drawing its own 16 examples."""
    from adaptlab.reporting.comparison import bundled_recipe, plan, with_seeds
    from adaptlab.training.runner import split_seed

    recipe = bundled_recipe("fewshot.yaml")
    seeded = with_seeds(plan(recipe, ["full"], {}), 3, bool(recipe.get("resplit")))
    assert sorted(split_seed(cfg) for _, cfg in seeded) == [42, 43, 44]
