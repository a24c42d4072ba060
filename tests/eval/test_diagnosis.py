"""Runs no better than the majority class are flagged (eval/diagnosis.py), trained or not."""

from __future__ import annotations

from adaptlab.eval.diagnosis import did_not_learn


def test_a_run_that_trains_nothing_is_flagged_at_the_majority_class():
    """A nearest-class-mean run on frozen features scored 0.490 against a 0.577 majority (compare fewshot, seed 44)
    and, unflagged, became the over-seeds recommendation; it is held to the same test as a trained run."""
    flag = did_not_learn(0.490, 0.577, 300, 0.7, [], None, trained=False)
    assert flag is not None and flag["flag"] and "trains nothing" in " ".join(flag["evidence"])
    assert "a strategy that trains on the task" in flag["next"]
    assert did_not_learn(0.700, 0.577, 300, 0.6, [], None, trained=False) is None  # 2 standard errors: 0.057


def test_a_trained_run_gets_the_loss_trend_as_evidence():
    flag = did_not_learn(0.580, 0.577, 300, 0.99, [0.69, 0.69], 1e-5, trained=True)
    assert flag is not None and any("stayed flat" in e for e in flag["evidence"]) and "--lr auto" in flag["next"]
    assert any("one class" in e for e in flag["evidence"])
