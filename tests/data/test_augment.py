"""train.augment: each operation changes text as specified, seeded; augmented rows reach training only."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from adaptlab.data.augment import EmbeddingNeighbours, augment_examples, deletion, replace_synonyms, swap
from adaptlab.data.task import Examples
from adaptlab.errors import AdaptlabError
from adaptlab.settings import AugmentConfig

WORDS = "the quick brown fox jumps over the lazy dog tonight".split()


def test_deletion_drops_words_in_order_and_keeps_one():
    out = deletion(WORDS, 0.5, random.Random(0))
    assert 0 < len(out) < len(WORDS)
    it = iter(WORDS)
    assert all(w in it for w in out)  # a subsequence: order kept
    assert len(deletion(WORDS, 1.0, random.Random(0))) == 1
    assert deletion(WORDS, 0.0, random.Random(0)) == WORDS


def test_swap_permutes_the_same_words():
    out = swap(WORDS, 0.2, random.Random(1))
    assert sorted(out) == sorted(WORDS) and out != WORDS
    assert swap(WORDS, 0.2, random.Random(1)) == out  # seeded


def test_synonyms_replace_content_words_only_keeping_case_and_punctuation():
    table = {"quick": ["fast"], "dog": ["hound"], "the": ["a"]}
    out = replace_synonyms(["The", "quick", "dog."], 1.0, random.Random(0), lambda w: table.get(w, []))
    assert out == ["The", "fast", "hound."]  # 'the' is a stop word


def test_embedding_neighbours_come_from_the_models_table():
    vocab = {"[PAD]": 0, "good": 1, "great": 2, "awful": 3, "##ly": 4, "goods": 5}
    tok = type("T", (), {"get_vocab": lambda self: vocab})()
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [-1.0, 0.0], [1.0, 0.01], [1.0, 0.0]])
    near = EmbeddingNeighbours(tok, emb, k=2)
    assert near("good") == ["great", "awful"]  # '##ly' is a word piece, 'goods' an inflection
    assert near("unknown") == []


def test_augment_examples_is_seeded_labels_kept_and_copies_counted():
    ex = Examples(["one two three four five six", "seven eight nine ten"], [0, 1])
    cfg = AugmentConfig(swap=0.3, deletion=0.2, copies=2)
    a, b = augment_examples(ex, cfg, 0), augment_examples(ex, cfg, 0)
    assert a.texts == b.texts and 0 < len(a) <= 4
    assert all(t not in ex.texts for t in a.texts)
    assert sorted(set(a.labels)) == [0, 1]
    assert augment_examples(ex, cfg, 1).texts != a.texts
    assert augment_examples(ex, AugmentConfig(), 0).texts == []  # off by default


def test_rates_outside_unit_interval_and_unknown_operations_are_config_errors():
    from adaptlab.config import load_config

    with pytest.raises(AdaptlabError, match=r"invalid config 'train.augment.swap'.*less than or equal to 1"):
        load_config({"train": {"augment": {"swap": 1.5}}})
    with pytest.raises(AdaptlabError, match=r"unknown config key 'train.augment.synonyms'.*did you mean 'train.augment.synonym'"):
        load_config({"train": {"augment": {"synonyms": 0.1}}})
    with pytest.raises(AdaptlabError, match=r"unknown config key 'train.regularize.l2sp'.*did you mean 'train.regularize.l2_sp'"):
        load_config({"train": {"regularize": {"l2sp": 0.1}}})


def test_augmented_rows_train_but_never_evaluate(tiny_backbone, toy_csv, tmp_path):
    from adaptlab.training.runner import train

    plain = train(strategy="full", backbone=str(tiny_backbone), data=str(toy_csv), output=str(tmp_path / "plain"),
                  overrides={"train.epochs": 1, "train.lr": 1e-3, "train.progress": False})
    run = train(strategy="full", backbone=str(tiny_backbone), data=str(toy_csv), output=str(tmp_path / "aug"),
                overrides={"train.epochs": 1, "train.lr": 1e-3, "train.progress": False,
                           "train.augment": {"swap": 0.3, "synonym": 0.2}})
    m = run.metrics
    assert m["augmented_examples"] > 0.9 * m["train_examples"] and plain.metrics["augmented_examples"] is None
    assert m["eval_examples"] == plain.metrics["eval_examples"]
    assert m["train_examples"] == plain.metrics["train_examples"]
    steps = lambda r: r.metrics["train_settings"]["optimizer_steps"]  # noqa: E731
    assert steps(run) > 1.8 * steps(plain)  # the augmented rows were trained on


def test_augmenting_generative_data_is_one_line(cli, tiny_chat, translations_csv):
    code, out, err = cli("train", "--strategy", "full", "--backbone", str(tiny_chat), "--data", str(translations_csv),
                         "--set", "train.augment.swap=0.1", "--output", "r")
    assert code == 2 and "train.augment applies to classification data; task sft" in err
    assert not list(Path(".").glob("r*"))  # nothing written


def test_back_translation_goes_through_a_generative_model_and_is_cached(tiny_chat, tmp_path, monkeypatch):
    from adaptlab.data.augment import back_translated
    from adaptlab.serve import generator

    monkeypatch.setenv("ADAPTLAB_CACHE", str(tmp_path / "cache"))
    prompts = []
    real = generator.Generator.__call__

    def spy(self, batch):
        prompts.extend(batch)
        return real(self, batch)

    monkeypatch.setattr(generator.Generator, "__call__", spy)
    ex = Examples(["the cat sleeps", "a dog runs fast"], [0, 1])
    cfg = AugmentConfig(backtranslate={"via": str(tiny_chat), "language": "French"}).backtranslate
    first = back_translated(ex, cfg, generator.Generator)
    assert len(prompts) == 4 and "into French" in prompts[0] and "into English" in prompts[2]
    assert set(first.labels) <= {0, 1} and all(t not in ex.texts for t in first.texts)
    cached = list((tmp_path / "cache" / "backtranslation").glob("*.jsonl"))
    assert len(cached) == 1 and len(cached[0].read_text().splitlines()) == 2
    assert back_translated(ex, cfg, generator.Generator).texts == first.texts and len(prompts) == 4  # the second time: from the cache


def test_the_default_translator_is_a_bundled_backbone():
    """The default ``via`` must name something that loads (it once named ``smollm2``, which is not a backbone)."""
    from adaptlab.models.backbones import BUNDLED_MODELS, resolve_source
    from adaptlab.settings import BackTranslateConfig

    via = BackTranslateConfig().via
    assert via in BUNDLED_MODELS and resolve_source(via)[0]
