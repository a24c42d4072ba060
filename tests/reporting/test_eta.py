"""The time-left estimate prices each pending run's own work (issue 27: after a 20 s linear probe, compare said
"about 40 s left" before a 9-minute LoRA run)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from adaptlab.config import load_config
from adaptlab.reporting.eta import pending_seconds, time_left


def rows(n: int, length: int) -> list[dict]:
    return [{"input_ids": [1] * length, "label": 0} for _ in range(n)]


def classification():
    from adaptlab.tasks import get_task_type

    return get_task_type("classification")


SETUP = SimpleNamespace(train_rows=rows(540, 100), val_rows=rows(60, 100), eval_rows=rows(379, 100), task_type=classification())


def cfg(strategy: str, **train):
    return load_config({"strategy": strategy, "backbone": "minilm-l6", "data": {"train": "rotten-tomatoes"}, "train": train})


def finished_probe() -> dict:
    """A linear probe's metrics as the runner writes them: 600 rows forwarded once in 12 s (5,000 tokens/s)."""
    return {"strategy": "linear_probe", "eval_examples": 379, "train_seconds": 13.0, "train_tokens_per_second": 0.0,
            "forgetting": {"tokens": 3360}, "train_settings": {"optimizer_steps": 357, "lr_find": {"steps": 40}},
            "timing": {"prepare": 0.1, "forgetting_probe": 2 * 3360 / 5000, "final_eval": 7.6, "save": 0.1,
                       "precompute": 12.0, "steps": 0.5}}


def test_nothing_finished_means_no_estimate():
    assert time_left([(cfg("lora"), SETUP)], []) is None


def test_a_full_run_costs_more_than_lora_and_both_far_more_than_the_probe_that_priced_them():
    done = [finished_probe()]
    lora, full = pending_seconds(cfg("lora"), SETUP, done), pending_seconds(cfg("full"), SETUP, done)
    probe = pending_seconds(cfg("linear_probe"), SETUP, done)
    # 540 rows x 100 tokens, epochs: auto -> 9 epochs of 17 steps; lora 3 forward passes a token, full 3.5, at 5,000 tokens/s
    assert lora == pytest.approx(3 * 54_000 * (9 + 38 / 17) / 5000 + 9 * 60 * 7.6 / 379 + 7.8 + 2 * 3360 / 5000, rel=0.01)
    assert full / lora == pytest.approx(3.5 / 3, rel=0.05) and lora > 10 * probe


def test_once_a_run_trained_through_the_backbone_its_speed_prices_the_rest():
    lora = {**finished_probe(), "strategy": "lora", "train_seconds": 400.0, "train_tokens_per_second": 54_000 * 9 / 400.0,
            "train_settings": {"optimizer_steps": 153, "lr_find": {"steps": 38}},
            "timing": {"prepare": 0.1, "forgetting_probe": 1.0, "final_eval": 7.6, "save": 0.1, "steps": 300.0, "range_test": 75.0}}
    per_unit = 375.0 / (3 * 54_000 * 9 * (1 + 38 / 153))
    full = pending_seconds(cfg("full"), SETUP, [lora])
    fixed = 0.1 + 1.0 + 7.6 + 0.1
    assert full == pytest.approx(fixed + 9 * 60 * 7.6 / 379 + 3.5 * 54_000 * (9 + 38 / 17) * per_unit, rel=0.01)


def test_given_epochs_and_rate_mean_no_range_test_and_zero_shot_only_evaluates():
    done = [finished_probe()]
    one = pending_seconds(cfg("full", epochs=1, lr=1e-4), SETUP, done)
    assert one == pytest.approx(3.5 * 54_000 / 5000 + 60 * 7.6 / 379 + 7.8 + 2 * 3360 / 5000, rel=0.01)
    assert pending_seconds(cfg("zero_shot"), SETUP, done) == pytest.approx(7.8 + 2 * 3360 / 5000)
