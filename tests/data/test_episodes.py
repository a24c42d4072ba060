"""Episode sampler invariants and the meta-train / meta-test class split."""

from __future__ import annotations

import random

import pytest

from adaptlab.data.episodes import EpisodeSampler, by_class, episode_sizes, sample_episode, split_classes
from adaptlab.errors import AdaptlabError

LABELS = [i % 5 for i in range(100)] + [5] * 3  # five classes of 20, one of 3


def test_episodes_are_support_then_query_with_no_overlap():
    sampler = EpisodeSampler(LABELS, n_way=3, k_shot=4, queries=6, episodes=50, seed=1)
    assert len(list(sampler)) == len(sampler) == 50
    for batch in sampler:
        support, query = batch[: sampler.n_support], batch[sampler.n_support :]
        assert len(support) == 3 * 4 and len(query) == 3 * 6
        assert not set(support) & set(query), "a query example is in its own support set"
        assert len(set(batch)) == len(batch)
        classes = [LABELS[i] for i in support]
        assert len(set(classes)) == 3 and all(classes.count(c) == 4 for c in set(classes))
        assert [LABELS[i] for i in query].count(classes[0]) == 6
        assert classes == sorted(classes, key=classes.index)  # grouped class by class
        assert 5 not in classes, "a class with fewer than k + q examples took part"


def test_episodes_depend_on_seed_and_epoch_only():
    a, b = EpisodeSampler(LABELS, 2, 2, 2, 5, seed=3), EpisodeSampler(LABELS, 2, 2, 2, 5, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_n_way_is_capped_and_sizes_follow_the_smallest_class():
    assert EpisodeSampler([0, 1] * 10, n_way=5, k_shot=2, queries=2).n_way == 2
    assert episode_sizes([0] * 8 + [1] * 8, None, None) == (4, 4)
    assert episode_sizes([0] * 100 + [1] * 100, None, None) == (5, 10)
    with pytest.raises(AdaptlabError, match="smallest class has 3"):
        EpisodeSampler([0] * 3 + [1] * 3, n_way=2, k_shot=2, queries=2)


def test_sample_episode_draws_distinct_examples():
    groups = by_class(LABELS)
    rng = random.Random(0)
    for _ in range(200):
        support, query = sample_episode({c: ix for c, ix in groups.items() if c < 5}, 5, 1, 19, rng)
        assert len(set(support + query)) == 100


def test_class_split_is_disjoint_and_seeded():
    names = ["business", "entertainment", "politics", "sport", "tech"]
    train, test = split_classes(names, None, 2, seed=42)
    assert len(test) == 2 and not set(train) & set(test) and set(train) | set(test) == set(names)
    assert split_classes(names, None, 2, seed=42) == (train, test)
    assert split_classes(names, ["tech", "sport"], 2, 0) == (["business", "entertainment", "politics"], ["sport", "tech"])
    with pytest.raises(AdaptlabError, match="not in the data"):
        split_classes(names, ["weather"], 2, 0)
    with pytest.raises(AdaptlabError, match="two classes each"):
        split_classes(names, ["tech", "sport", "politics", "business"], 2, 0)
