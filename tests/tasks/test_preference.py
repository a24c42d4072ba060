"""The preference task and DPO on a tiny chat Llama: reading pairs, the loss against its closed form,
log 2 and a coin-toss accuracy at the start, the cached reference against a live one, no second model
with LoRA, and a few steps that teach the policy to prefer the chosen answers."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from adaptlab.config import load_config
from adaptlab.data.files import Table
from adaptlab.data.preferences import read_preferences
from adaptlab.errors import AdaptlabError
from adaptlab.settings import DataConfig
from adaptlab.strategies import Task, get_strategy
from adaptlab.objectives.dpo import dpo_loss
from adaptlab.tasks.preference import REFERENCE, dpo_logits, sequence_logps
from adaptlab.training.loop import fit
from adaptlab.training.runner import make_setup, prepare_module, resolve_train

from ..conftest import LEXICON, write_csv


def toy_pairs(n: int, seed: int = 0) -> list[dict]:
    """Chosen: the toy translation; rejected: the prompt's words copied back."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        src = rng.choices(list(LEXICON), k=rng.randint(2, 4))
        rows.append({"prompt": "translate : " + " ".join(src), "chosen": " ".join(LEXICON[w] for w in src),
                     "rejected": " ".join(src)})
    return rows


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("pref") / "pairs.csv", toy_pairs(200))


def setup_dpo(backbone, data, method="lora", **train):
    cfg = load_config({"strategy": {"name": "dpo", "method": method, "beta": 0.5}, "backbone": str(backbone),
                       "data": {"train": str(data), "max_length": 32, "validation_fraction": 0},
                       "generation": {"max_new_tokens": 6},
                       "train": {"progress": False, "checkpoint_every": None, "seed": 0, "epochs": 1, "lr": 1e-2,
                                 "batch_size": 8, "keep_best": False, **train}})
    setup = make_setup(cfg)
    strategy = get_strategy("dpo")(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg), type=setup.task_type, run_config=cfg)
    return strategy, prepare_module(strategy, task), setup, task


def test_pairs_are_read_in_both_forms_and_ties_dropped(caplog):
    cfg = DataConfig()
    text = Table("t", ["prompt", "chosen", "rejected"], [{"prompt": "p", "chosen": "a", "rejected": "b"},
                                                         {"prompt": "q", "chosen": "same", "rejected": "same"}])
    pairs, form = read_preferences(text, cfg)
    assert form == "prompt/chosen/rejected" and len(pairs) == 1 and "1 of 2 rows" in caplog.text
    assert pairs.chosen.turns[0][-1]["content"] == "a" and pairs.rejected.turns[0][:-1] == pairs.chosen.turns[0][:-1]
    user = {"role": "user", "content": "p"}
    trl = Table("t", ["chosen", "rejected"], [{"chosen": json.dumps([user, {"role": "assistant", "content": "a"}]),
                                                "rejected": [user, {"role": "assistant", "content": "b"}]}])
    pairs, form = read_preferences(trl, cfg)
    assert form == "conversational" and pairs.chosen.turns[0] == [user, {"role": "assistant", "content": "a"}]


@pytest.mark.parametrize("columns, row, message", [
    (["prompt", "answer"], {"prompt": "p", "answer": "a"}, "no preference columns: .*columns present: prompt, answer"),
    (["prompt", "chosen", "rejected"], {"prompt": "p", "chosen": " ", "rejected": "b"}, "empty 'chosen' at line 2"),
    (["chosen", "rejected"], {"chosen": "a", "rejected": "b"}, "need a 'prompt' column"),
])
def test_bad_pairs_are_one_clear_line(columns, row, message):
    with pytest.raises(AdaptlabError, match=message):
        read_preferences(Table("t", columns, [row], lines=[2]), DataConfig())


def test_dpo_loss_is_its_closed_form():
    logps = torch.tensor([-3.0, -5.0, -4.0, -4.5])  # chosen (2 pairs), then rejected
    ref = torch.tensor([-3.5, -4.0, -4.2, -4.0], dtype=torch.float64)
    h = dpo_logits(logps, ref)
    expected = torch.tensor([(-3.0 + 3.5) - (-4.0 + 4.2), (-5.0 + 4.0) - (-4.5 + 4.0)])
    torch.testing.assert_close(h, expected)
    beta = 0.1
    assert float(dpo_loss(h, beta)) == pytest.approx(float(-F.logsigmoid(beta * expected).mean()))
    assert float(dpo_loss(h, beta, "ipo")) == pytest.approx(float(((expected - 5.0) ** 2).mean()))
    assert float(dpo_loss(torch.zeros(3), beta)) == pytest.approx(math.log(2))


def test_sequence_logps_sum_the_answer_tokens_only():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, 2, 2, 6]])
    got = sequence_logps(logits, labels)
    logp = logits.log_softmax(-1)
    expected = torch.stack([logp[0, 1, 3] + logp[0, 2, 4], logp[1, 0, 1] + logp[1, 1, 2] + logp[1, 2, 2] + logp[1, 3, 6]])
    torch.testing.assert_close(got, expected)


def test_at_the_start_the_loss_is_log2_and_the_reference_cached_equals_a_live_one(tiny_chat, pairs_csv):
    strategy, module, setup, task = setup_dpo(tiny_chat, pairs_csv)
    rows = strategy.precompute(module, setup.train_rows[:16], 8, torch.device("cpu"))
    batch = task.type.collate(1)(rows)
    module.eval()
    with torch.inference_mode():
        live = sequence_logps(module(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits, batch["labels"])
        loss = strategy.loss(module(**{k: batch[k] for k in ("input_ids", "attention_mask")}), batch)
    torch.testing.assert_close(live.double(), batch[REFERENCE], atol=1e-5, rtol=1e-5)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-5)
    scores = task.type.evaluate(module, [batch])
    assert scores["reward_accuracy"] == 0.5 and scores["margin"] == pytest.approx(0.0, abs=1e-5)


def test_dpo_with_lora_learns_the_preference_without_a_second_model(tiny_chat, pairs_csv, monkeypatch):
    strategy, module, setup, task = setup_dpo(tiny_chat, pairs_csv, epochs=3)
    module, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config, task_type=task.type)
    assert state.history[-1]["reward_accuracy"] > 0.9 and state.history[-1]["margin"] > 0
    monkeypatch.setattr(type(task.type), "build", lambda *a, **k: pytest.fail("a second model was built"))
    before = strategy.precompute(module, setup.eval_rows[:4], 4, torch.device("cpu"))  # already cached: no pass
    fresh = [{**r, "chosen_ids": r["chosen_ids"] + [1]} for r in setup.eval_rows[:2]]  # never seen: the base, adapters off
    after = strategy.precompute(module, fresh, 4, torch.device("cpu"))
    assert all(REFERENCE in r for r in before + after)
    batch = task.type.collate(1)(fresh)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    module.eval()
    with torch.inference_mode(), module.disable_adapter():
        base = sequence_logps(module(**inputs).logits, batch["labels"])
    with torch.inference_mode():
        policy = sequence_logps(module(**inputs).logits, batch["labels"])
    torch.testing.assert_close(torch.tensor([x for r in after for x in r[REFERENCE]], dtype=torch.float64).reshape(2, 2).T.flatten(),
                               base.double(), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(policy, base, atol=1e-3)  # the trained policy is not what it was scored against


def test_dpo_with_full_reloads_the_start_for_rows_met_after_training(tiny_chat, pairs_csv):
    strategy, module, setup, task = setup_dpo(tiny_chat, pairs_csv, method="full", lr=1e-3)
    first = strategy.precompute(module, setup.eval_rows[:4], 4, torch.device("cpu"))
    strategy.reference.clear()  # forget: the next pass must come from the starting weights, not the trained ones
    module, state = fit(strategy, module, setup.train_rows[:32], [], task.train_config, task_type=task.type)
    again = strategy.precompute(module, setup.eval_rows[:4], 4, torch.device("cpu"))
    for a, b in zip(first, again):
        assert a[REFERENCE] == pytest.approx(b[REFERENCE], abs=1e-4)


def test_odds_ratio_term_on_a_toy():
    from adaptlab.objectives.orpo import log_odds, odds_ratio_loss

    p = torch.tensor([0.5, 0.2])
    torch.testing.assert_close(log_odds(p.log()), torch.log(p / (1 - p)))
    logps = torch.tensor([math.log(0.5) * 4, math.log(0.2) * 2])  # chosen: 4 tokens at 0.5 each; rejected: 2 at 0.2
    expected = -F.logsigmoid(torch.log(torch.tensor(1.0)) - torch.log(torch.tensor(0.25)))
    torch.testing.assert_close(odds_ratio_loss(logps, torch.tensor([4, 2])), expected)


def test_orpo_learns_the_preference_without_a_reference(tiny_chat, pairs_csv):
    cfg = load_config({"strategy": {"name": "orpo", "method": "lora"}, "backbone": str(tiny_chat),
                       "data": {"train": str(pairs_csv), "max_length": 32, "validation_fraction": 0},
                       "generation": {"max_new_tokens": 6},
                       "train": {"progress": False, "checkpoint_every": None, "seed": 0, "epochs": 3, "lr": 1e-2, "batch_size": 8,
                                 "keep_best": False}})
    setup = make_setup(cfg)
    strategy = get_strategy("orpo")(cfg.strategy)
    task = Task(setup.data.labels, setup.backbone, resolve_train(cfg), type=setup.task_type, run_config=cfg)
    module = prepare_module(strategy, task)
    assert strategy.precompute(module, setup.train_rows[:2], 2, torch.device("cpu")) == setup.train_rows[:2]
    module, state = fit(strategy, module, setup.train_rows, setup.eval_rows, task.train_config, task_type=task.type)
    assert state.history[-1]["likelihood_accuracy"] > 0.9  # the chosen answers became the likelier ones
    assert state.history[-1]["loss"] < state.history[0]["loss"]  # and the SFT half kept lowering their NLL


def test_cli_dpo_run_folder_round_trips(tiny_chat, pairs_csv, tmp_path):
    import adaptlab

    run = adaptlab.train(strategy="dpo", backbone=str(tiny_chat), data=str(pairs_csv), output=str(tmp_path / "run"),
                         overrides={"data.max_length": 32, "data.max_eval": 16, "generation.max_new_tokens": 6, "train.epochs": 2,
                                    "train.lr": 1e-2, "train.batch_size": 8, "train.progress": False, "strategy.beta": 0.5})
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["task"]["type"] == "preference" and m["eval"]["reward_accuracy"] > 0.8 and m["train_examples"] > 0
    assert (tmp_path / "run" / "model" / "adapter_config.json").is_file()
    loaded = adaptlab.load(tmp_path / "run")
    assert len(loaded.generate(["translate : good film"])) == 1
    assert 0 < run.metrics["trainable_params"] < run.metrics["total_params"] / 2  # the adapters, not the model


def test_reward_model_ranks_chosen_above_rejected_and_scores_from_its_folder(tiny_chat, pairs_csv, tmp_path):
    import adaptlab

    out = tmp_path / "rm"
    run = adaptlab.train(strategy="reward_model", backbone=str(tiny_chat), data=str(pairs_csv), output=str(out),
                         overrides={"data.max_length": 32, "data.max_eval": 32, "train.epochs": 3, "train.lr": 1e-2,
                                    "train.batch_size": 8, "train.progress": False})
    assert run.metrics["eval"]["reward_accuracy"] > 0.9 and run.metrics["eval"]["margin"] > 0
    scorer = adaptlab.load(out)
    rows = toy_pairs(8, seed=7)
    good = scorer.score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    bad = scorer.score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    assert sum(g > b for g, b in zip(good, bad)) >= 7  # pairs it never saw
    with pytest.raises(AdaptlabError, match="it scores answers"):
        scorer.generate(["translate : good film"])


def test_score_on_a_run_that_is_no_reward_model_is_one_clear_line(cli, tiny_chat, pairs_csv, tmp_path):
    import adaptlab

    adaptlab.train(strategy="orpo", backbone=str(tiny_chat), data=str(pairs_csv), output=str(tmp_path / "orpo"),
                   overrides={"data.max_length": 32, "data.max_eval": 8, "data.max_train": 32, "generation.max_new_tokens": 4,
                              "train.epochs": 1, "train.lr": 1e-3, "train.progress": False})
    write_csv(tmp_path / "in.csv", [{"prompt": "translate : good", "response": "bad"}])
    code, out, err = cli("score", tmp_path / "orpo", "--input", tmp_path / "in.csv")
    assert code == 2 and "not a reward model" in err and "Traceback" not in err


def test_zero_shot_scores_the_model_as_it_is_once(tiny_chat, pairs_csv, tmp_path):
    import adaptlab

    run = adaptlab.train(strategy="zero_shot", backbone=str(tiny_chat), data=str(pairs_csv), output=str(tmp_path / "zs"),
                         overrides={"data.max_length": 32, "data.max_eval": 16, "generation.max_new_tokens": 4,
                                    "train.progress": False})
    e = run.metrics["eval"]
    assert run.metrics["trainable_params"] == 0 and [h["epoch"] for h in run.metrics["history"]] == [0]
    assert 0 <= e["likelihood_accuracy"] <= 1 and e["chrf"] is not None and e["archaic_rate"] is not None
