"""SimPO and KTO losses against their papers' closed forms (the matrix in tests/strategies/test_preference_matrix.py
runs them end to end through each method)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adaptlab.data.conversations import IGNORE
from adaptlab.objectives.kto import KTO, KTOConfig
from adaptlab.objectives.simpo import SimPO, SimPOConfig
from adaptlab.tasks.preference import DESIRABLE, PAIRED, REFERENCE


def outputs_for(token_logps: torch.Tensor) -> tuple[object, dict]:
    """Fake model outputs whose answer tokens have ``token_logps`` (rows, tokens); labels mark them all."""
    rows, n = token_logps.shape
    labels = torch.zeros(rows, n + 1, dtype=torch.long)
    labels[:, 0] = IGNORE

    class Out:
        pass

    out = Out()
    out.token_logps, out.label_mask = token_logps, torch.ones(rows, n, dtype=torch.bool)
    return out, {"labels": labels}


def test_simpo_is_eq_6_on_mean_log_probs():
    tokens = torch.tensor([[-1.0, -1.0], [-2.0, -4.0]])  # chosen mean -1, rejected mean -3
    out, batch = outputs_for(tokens)
    loss = SimPO(SimPOConfig(name="simpo", beta=2.0, gamma=1.0)).loss(out, batch)
    torch.testing.assert_close(loss, -F.logsigmoid(torch.tensor(2.0 * (-1 + 3) - 1.0)))


def test_kto_is_eq_8_with_the_batch_reference_point():
    tokens = torch.tensor([[-1.0], [-3.0]])
    out, batch = outputs_for(tokens)
    batch[REFERENCE] = torch.tensor([-2.0, -2.0], dtype=torch.float64)  # r: chosen +1, rejected -1
    batch[DESIRABLE], batch[PAIRED] = torch.tensor([True, False]), True  # what PairCollate adds
    objective = KTO(KTOConfig(name="kto", beta=0.5))
    loss = objective.loss(out, batch)
    z0 = torch.tensor(0.5)  # mean of max(0, r) = (1 + 0) / 2
    good, bad = 1 - torch.sigmoid(0.5 * (1 - z0)), 1 - torch.sigmoid(0.5 * (z0 + 1))
    torch.testing.assert_close(loss, (good + bad) / 2)
    assert float(objective.step_stats()["reward_accuracy"]) == 1.0
    batch[DESIRABLE], batch[PAIRED] = torch.tensor([False, True]), False  # unpaired: the flags alone decide
    torch.testing.assert_close(objective.loss(out, batch), (1 - torch.sigmoid(0.5 * (z0 - 1)) + 1 - torch.sigmoid(0.5 * (-1 - z0))) / 2)
    assert "reward_accuracy" not in objective.step_stats() and float(objective.step_stats()["desirable_reward"]) == -1.0
