"""What a preference stage is measured by beyond its held-out pairs: the training pairs' statistics as it
trains, every answer it wrote (generations.jsonl), a reward model judging those answers in a comparison
(mean reward, win rate over a baseline row), and logits computed for the answers only."""

from __future__ import annotations

import json

import pytest
import torch

from adaptlab.data.batching import Batches
from adaptlab.models.lm_head import KEY as ANSWERS
from adaptlab.errors import AdaptlabError
from adaptlab.reporting.judge import check_judge, win_rate
from adaptlab.tasks.preference import sequence_logps

from .test_preference import pairs_csv, setup_dpo  # noqa: F401  (the module's fixture)

SMALL = {"data.max_length": 32, "data.max_eval": 16, "generation.max_new_tokens": 6, "train.progress": False, "train.batch_size": 8}


def test_training_pairs_are_measured_as_dpo_trains_and_every_answer_is_kept(tiny_chat, pairs_csv, tmp_path):  # noqa: F811
    import adaptlab

    out = tmp_path / "run"
    run = adaptlab.train(strategy="dpo", backbone=str(tiny_chat), data=str(pairs_csv), output=str(out),
                         overrides={**SMALL, "train.epochs": 2, "train.lr": 1e-2, "train.log_every": 2, "strategy.beta": 0.5})
    m = run.metrics
    first, last = m["history"][0], m["history"][-1]
    assert {"train_reward_accuracy", "train_margin", "train_chosen_logp", "train_rejected_logp"} <= set(last)
    assert last["train_reward_accuracy"] > first["train_reward_accuracy"] - 1e-9 and last["train_margin"] > 0
    assert m["train"]["reward_accuracy"] == last["train_reward_accuracy"]  # metrics.json: train and eval pairs
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert all("reward_accuracy" in s and "margin" in s for s in steps)
    assert steps[0]["reward_accuracy"] <= steps[-1]["reward_accuracy"]  # at the start the policy is the reference: 0.5
    generated = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert len(generated) == m["eval_examples"] == 16
    assert set(generated[0]) == {"prompt", "reference", "rejected", "output"}
    assert generated[: len(m["samples"])] == m["samples"]
    assert not any("generations" in h for h in m["history"])  # kept out of metrics.json


def test_a_strategy_without_step_stats_has_no_train_block_and_sft_keeps_its_answers(tiny_chat, translations_csv, tmp_path):
    import adaptlab

    out = tmp_path / "run"
    run = adaptlab.train(strategy="lora", backbone=str(tiny_chat), data=str(translations_csv), output=str(out),
                         overrides={**SMALL, "data.max_train": 16, "train.epochs": 1, "train.lr": 1e-3})
    assert run.metrics["train"] is None and set(run.metrics["history"][-1]) >= {"train_loss"}
    assert not any(k.startswith("train_") and k != "train_loss" for k in run.metrics["history"][-1])
    lines = (out / "generations.jsonl").read_text().splitlines()
    assert len(lines) == run.metrics["eval_examples"] and set(json.loads(lines[0])) == {"prompt", "reference", "output"}


def test_only_the_answer_positions_are_scored(tiny_chat, pairs_csv):  # noqa: F811
    """A pair batch carries its labels as ``answer_labels``: the model returns those tokens' log-probabilities
    (no logits over the vocabulary), equal to the full logits' -- also padded to a multiple of 8 as on CUDA."""
    strategy, module, setup, task = setup_dpo(tiny_chat, pairs_csv)
    batch = task.type.collate(1)(setup.train_rows[:8])
    assert batch[ANSWERS] is batch["labels"]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    module.eval()
    with torch.inference_mode():
        full = module(**inputs).logits
        answered = module(**inputs, **{ANSWERS: batch[ANSWERS]})
    assert getattr(answered, "logits", None) is None
    torch.testing.assert_close(sequence_logps(answered, batch["labels"]), sequence_logps(full, batch["labels"]))
    padded = Batches(task.type.collate(1), 1, multiple=8, count=False)(setup.train_rows[:8])
    assert padded[ANSWERS].shape == padded["input_ids"].shape and padded["input_ids"].shape[1] % 8 == 0
    with torch.inference_mode():
        again = module(**{k: padded[k] for k in ("input_ids", "attention_mask", ANSWERS)})
    torch.testing.assert_close(sequence_logps(again, padded["labels"]), sequence_logps(full, batch["labels"]))


def test_win_rate_matches_prompts_and_counts_ties_half():
    mine, theirs = {"a": 1.0, "b": 0.0, "c": 2.0, "d": 5.0}, {"a": 0.0, "b": 0.0, "c": 3.0}
    assert win_rate(mine, theirs) == pytest.approx((1 + 0.5 + 0) / 3)  # "d" has no answer of theirs to beat
    assert win_rate(mine, {}) is None


@pytest.mark.parametrize("spec, message", [
    ({"reward_model": "@nope"}, "names no stage of this recipe"),
    ({"reward_model": "@rm", "baseline": "nobody"}, "judge.baseline 'nobody' is not a row"),
    ({"reward_model": "@rm", "against": "x"}, "unknown field"),
    ("@rm", "judge needs reward_model"),
])
def test_a_bad_judge_is_refused_before_training(spec, message):
    with pytest.raises(AdaptlabError, match=message):
        check_judge(spec, ["base", "dpo"], ["rm"])


def test_a_comparison_judged_by_its_reward_model_stage(cli, tiny_chat, pairs_csv, tmp_path):  # noqa: F811
    recipe = {"backbone": str(tiny_chat), "data": {"task": "preference", "train": str(pairs_csv), "max_length": 32, "max_eval": 16,
                                                    "max_train": 96, "validation_fraction": 0},
              "generation": {"max_new_tokens": 6}, "train": {"progress": False, "batch_size": 8, "epochs": 2, "lr": 1e-2},
              "stages": [{"name": "rm", "strategy": {"name": "reward_model", "method": "lora"}}],
              "judge": {"reward_model": "@rm", "baseline": "base"},
              "strategies": [{"name": "zero_shot", "label": "base"}, {"name": "dpo", "beta": 0.5}]}
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    code, _, err = cli("compare", tmp_path / "recipe.yaml", "--output", tmp_path / "cmp")
    assert code == 0, err
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    runs = {r["run"]: r for r in results["runs"]}
    judged = results["judge"]
    assert judged["anchors"]["chosen"] > judged["anchors"]["rejected"]  # the judge learned the preference
    assert runs["base"]["judge"]["win_rate"] == 0.5 and runs["base"]["judge"]["prompts"] == 16  # against itself
    assert "judge" not in runs["rm"]  # the reward model wrote no answers
    import adaptlab  # the judge's numbers are the reward model's scores of the answers each row wrote, recomputed here
    from adaptlab.reporting.judge import win_rate

    scorer = adaptlab.load(tmp_path / "cmp" / "rm")
    scores = {}
    for name in ("base", "dpo"):
        gen = [json.loads(line) for line in (tmp_path / "cmp" / name / "generations.jsonl").read_text().splitlines()]
        values = scorer.score([g["prompt"] for g in gen], [g["output"] for g in gen])
        scores[name] = {(i, g["prompt"]): v for i, (g, v) in enumerate(zip(gen, values))}
    assert runs["dpo"]["judge"]["win_rate"] == pytest.approx(win_rate(scores["dpo"], scores["base"]))
    assert runs["dpo"]["judge"]["reward"] == pytest.approx(sum(scores["dpo"].values()) / 16)
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "win rate vs baseline (RM)" in report and "## Judged by the reward model" in report
    assert "**dpo** wins" in report


def test_a_judge_naming_no_stage_fails_before_any_folder(cli, tiny_chat, pairs_csv, tmp_path):  # noqa: F811
    recipe = {"backbone": str(tiny_chat), "data": {"task": "preference", "train": str(pairs_csv)},
              "judge": {"reward_model": "@rm"}, "strategies": ["zero_shot"]}
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))  # JSON is YAML
    code, _, err = cli("compare", tmp_path / "recipe.yaml", "--output", tmp_path / "cmp")
    assert code == 2 and "names no stage" in err and "Traceback" not in err
    assert not (tmp_path / "cmp").exists() and not list(tmp_path.glob("cmp*"))
