"""Unpaired feedback (prompt, answer, true/false) and KTO on it, on a tiny chat Llama.

The rows are unpaired on purpose: each toy prompt occurs once, with either its translation (desirable) or its
words copied back (undesirable) -- never both. KTO must widen the held-out gap between the two kinds of
answers from where the model started; a run that did nothing leaves it where it was.
"""

from __future__ import annotations

import json
import random

import pytest

from adaptlab.config import load_config
from adaptlab.errors import AdaptlabError
from adaptlab.strategies import Task, get_strategy
from adaptlab.tasks.preference import DESIRABLE, REFERENCE
from adaptlab.training.runner import make_setup, prepare_module, resolve_train

from ..conftest import write_csv
from .test_preference import toy_pairs

SMALL = {"data.max_length": 32, "data.max_eval": 32, "generation.max_new_tokens": 6, "train.progress": False,
         "train.batch_size": 8}


def unpaired(n: int, seed: int = 0, answer: str = "completion") -> list[dict]:
    """One answer per prompt: the translation (true) or the words copied back (false), half each."""
    rng = random.Random(seed + 100)
    rows = []
    for pair in toy_pairs(n, seed):
        good = rng.random() < 0.5
        rows.append({"prompt": pair["prompt"], answer: pair["chosen"] if good else pair["rejected"], "label": good})
    return rows


@pytest.fixture(scope="module")
def feedback_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("feedback") / "feedback.csv", unpaired(240))


def test_kto_on_unpaired_feedback_widens_the_gap_and_its_run_folder_loads(tiny_chat, feedback_csv, tmp_path):
    import adaptlab

    start = adaptlab.train(strategy="zero_shot", backbone=str(tiny_chat), data=str(feedback_csv), output=str(tmp_path / "start"),
                           overrides=SMALL).metrics
    out = tmp_path / "kto"
    run = adaptlab.train(strategy="kto", backbone=str(tiny_chat), data=str(feedback_csv), output=str(out),
                         overrides={**SMALL, "train.epochs": 3, "train.lr": 1e-2, "strategy.beta": 0.5})
    m = run.metrics
    assert m["eval"]["gap"] > start["eval"]["gap"] + 0.3, (start["eval"]["gap"], m["eval"]["gap"])
    assert m["eval"]["reward_gap"] > 1.0  # implied rewards against the cached reference, desirable above undesirable
    last = m["history"][-1]
    assert last["train_desirable_reward"] > last["train_undesirable_reward"] and "train_reward_accuracy" not in last
    generated = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(generated) == m["eval_examples"] and {True, False} == {g["desirable"] for g in generated}
    answers = adaptlab.load(out).generate([generated[0]["prompt"]])
    assert answers == [generated[0]["output"]]  # the saved model is the one evaluated (greedy)


def test_the_reference_cache_and_the_flags_reach_the_batch(tiny_chat, feedback_csv):
    cfg = load_config({"strategy": {"name": "kto", "method": "lora"}, "backbone": str(tiny_chat),
                       "data": {"train": str(feedback_csv), "max_length": 32, "validation_fraction": 0},
                       "train": {"progress": False, "epochs": 1, "batch_size": 8}})
    setup = make_setup(cfg)
    assert setup.task_type.name == "feedback" and setup.data.form == "prompt/completion/label"
    strategy = get_strategy("kto")(cfg.strategy)
    task = Task([], setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
    module = prepare_module(strategy, task)
    rows = strategy.precompute(module, setup.train_rows[:8], 4, "cpu")
    assert all(len(r[REFERENCE]) == 1 for r in rows)
    batch = setup.task_type.collate(0)(rows)
    assert batch[DESIRABLE].tolist() == [r["desirable"] for r in rows] and batch[REFERENCE].shape == (8,)
    loss = strategy.loss(module(**{k: v for k, v in batch.items() if k != "labels" and not k.startswith(("gen_", "_"))}), batch)
    assert abs(float(loss.detach()) - 0.5) < 1e-3  # the policy is the reference: r = 0, z0 = 0, each term 1 - sigmoid(0)


def test_bad_feedback_is_one_line_before_any_folder(cli, tiny_chat, tmp_path):
    cases = {"label": [{"prompt": "translate : good", "completion": "bon", "label": "maybe"}] * 4,
             "every answer is desirable": [{"prompt": "translate : good", "completion": "bon", "label": True}] * 4}
    for message, rows in cases.items():
        data = write_csv(tmp_path / f"{len(message)}.csv", rows)
        code, _, err = cli("train", "-s", "kto", "--backbone", tiny_chat, "--data", data, "--output", tmp_path / "run")
        assert code == 2 and message in err and "Traceback" not in err, err
        assert not list(tmp_path.glob("run*"))
    data = write_csv(tmp_path / "ok.csv", unpaired(40, answer="response"))
    code, _, err = cli("train", "-s", "lora", "--backbone", tiny_chat, "--data", data, "--task", "feedback", "--output", tmp_path / "run")
    assert code == 2 and "does not support task 'feedback'" in err and "kto" in err
    both = write_csv(tmp_path / "eval.csv", unpaired(40, seed=5))  # both kinds, but one row kept: one kind
    code, _, err = cli("train", "-s", "kto", "--backbone", tiny_chat, "--data", feedback_csv_of(tmp_path), "--eval-data", both,
                       "--max-eval", "1", "--output", tmp_path / "run")
    assert code == 2 and "eval split's 1 answers are all" in err and "Traceback" not in err, err
    assert not list(tmp_path.glob("run*"))


def feedback_csv_of(folder):
    return write_csv(folder / "train.csv", unpaired(60))


def test_a_response_table_with_a_label_column_stays_sft_unless_told():
    """Only TRL's KTO columns (prompt, completion, label) are taken for feedback from the columns alone."""
    from adaptlab.settings import DataConfig
    from adaptlab.tasks import detect_task

    data = DataConfig()
    assert detect_task(["prompt", "completion", "label"], data, "x").name == "feedback"
    assert detect_task(["prompt", "response", "label"], data, "x").name == "sft"  # a category beside an answer
