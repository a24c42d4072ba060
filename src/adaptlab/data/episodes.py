"""N-way K-shot episodes and the class split for meta-learning.

An episode is one small classification problem: ``n_way`` classes drawn at
random, ``k_shot`` labelled *support* examples of each and ``queries`` *query*
examples of each to score (Vinyals et al. 2016, §4; Snell et al. 2017, §2.1).
A batch of the training loop is one episode, laid out support first (class by
class), then queries, so the loss knows which rows are which from
:attr:`EpisodeSampler.n_support` alone.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

from ..errors import AdaptlabError


def by_class(labels: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        out[y].append(i)
    return dict(out)


def sample_episode(groups: dict[int, list[int]], n_way: int, k_shot: int, queries: int,
                   rng: random.Random) -> tuple[list[int], list[int]]:
    """Support and query indices of one episode; no example is in both."""
    classes = rng.sample(sorted(groups), n_way)
    support, query = [], []
    for c in classes:
        picked = rng.sample(groups[c], k_shot + queries)
        support += picked[:k_shot]
        query += picked[k_shot:]
    return support, query


class EpisodeSampler:
    """Training batches that are episodes: ``support + query`` index lists.

    Only classes with at least ``k_shot + queries`` examples take part. Without
    ``episodes``, an epoch has about as many episodes as it takes to show every
    example once. The order depends on the seed and the epoch only.
    """

    def __init__(self, labels: Sequence[int], n_way: int, k_shot: int, queries: int,
                 episodes: int | None = None, seed: int = 0):
        groups = by_class(labels)
        self.groups = {c: ix for c, ix in groups.items() if len(ix) >= k_shot + queries}
        if len(self.groups) < 2:
            smallest = min(len(ix) for ix in groups.values())
            raise AdaptlabError(f"episodes of {k_shot} support + {queries} query examples per class need at least two "
                                f"classes with {k_shot + queries} examples; the smallest class has {smallest} "
                                f"(lower strategy.k_shot / strategy.queries)")
        self.n_way = min(n_way, len(self.groups))
        self.k_shot, self.queries, self.seed, self.epoch = k_shot, queries, seed, 0
        per_episode = self.n_way * (k_shot + queries)
        self.episodes = episodes or max(1, math.ceil(len(labels) / per_episode))

    @property
    def n_support(self) -> int:
        return self.n_way * self.k_shot

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.episodes

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        for _ in range(self.episodes):
            support, query = sample_episode(self.groups, self.n_way, self.k_shot, self.queries, rng)
            yield support + query


def episode_sizes(labels: Sequence[int], k_shot: int | None, queries: int | None) -> tuple[int, int]:
    """Support and query sizes: the configured ones, or half of the smallest class each (at most 5 and 10)."""
    smallest = min(len(ix) for ix in by_class(labels).values())
    k = k_shot or max(1, min(5, smallest // 2))
    q = queries or max(1, min(10, smallest - k))
    return k, q


def split_classes(labels: list[str], test_classes: list[str] | None, n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """Meta-train and meta-test class names, disjoint: the given test classes, or ``n_test`` drawn with ``seed``."""
    if test_classes:
        unknown = sorted(set(test_classes) - set(labels))
        if unknown:
            raise AdaptlabError(f"test classes not in the data: {', '.join(unknown)} (classes: {', '.join(labels)})")
        test = [c for c in labels if c in test_classes]
    else:
        test = sorted(random.Random(seed).sample(labels, n_test))
    train = [c for c in labels if c not in test]
    if len(train) < 2 or len(test) < 2:
        raise AdaptlabError(f"meta-training and meta-testing need two classes each; got {train} and {test} "
                            f"from {len(labels)} classes")
    return train, test
