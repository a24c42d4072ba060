"""Length-bucketed batches and dynamic padding."""

from __future__ import annotations

import random

import torch

from adaptlab.data.batching import BucketBatchSampler, Collate


def lengths(n=1000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(3, 120) for _ in range(n)]


def test_every_example_once_per_epoch_in_a_new_order():
    sampler = BucketBatchSampler(lengths(), 32, shuffle=True, seed=1)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(1000))
        assert len(batches) == len(sampler) == 32
        epochs.append(batches)
    assert epochs[0] != epochs[1]
    sampler.set_epoch(0)
    assert list(sampler) == epochs[0]  # depends only on seed and epoch: resumable


def test_bucketing_cuts_padding():
    lens = lengths()
    def padded(sampler):
        return sum(max(lens[i] for i in b) * len(b) for b in sampler)
    bucketed = padded(BucketBatchSampler(lens, 32, seed=0))
    plain = padded(BucketBatchSampler(lens, 32, seed=0, bucket=False))
    assert bucketed < 0.6 * plain
    first = next(iter(BucketBatchSampler(lens, 32, seed=0)))
    assert max(lens[i] for i in first) == max(lens)  # longest batch first: memory problems show at once


def test_eval_order_is_sorted_and_deterministic():
    lens = lengths(100)
    batches = list(BucketBatchSampler(lens, 16, shuffle=False))
    flat = [i for b in batches for i in b]
    assert [lens[i] for i in flat] == sorted(lens)


def test_collate_pads_to_the_longest_row():
    rows = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": 1},
            {"input_ids": [8], "attention_mask": [1], "labels": 0}]
    batch = Collate(pad_token_id=0)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]
    feats = Collate(0)([{"features": torch.ones(4), "labels": 1}, {"features": torch.zeros(4), "labels": 0}])
    assert feats["features"].shape == (2, 4)
