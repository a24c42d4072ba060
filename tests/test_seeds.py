"""Several seeds per strategy (issue 15, first part): intervals, paired differences, a recommendation that
never prefers a strategy over a cheaper one unless the difference is outside noise."""

from __future__ import annotations

import json

import pytest

from adaptlab.reporting.seeds import interval, paired, recommend_over_seeds, seeds_section, summarise


def rows(scores: dict[str, list[float]], seconds: dict[str, float]) -> list[dict]:
    return [{"run": f"{name}-seed{42 + i}", "group": name, "seed": 42 + i, "score": v, "metric": "accuracy",
             "train_seconds": seconds[name]} for name, values in scores.items() for i, v in enumerate(values)]


def test_interval_is_the_t_interval_of_the_mean():
    mean, std, half = interval([0.70, 0.72, 0.74])
    assert mean == pytest.approx(0.72) and std == pytest.approx(0.02) and half == pytest.approx(4.303 * 0.02 / 3 ** 0.5)
    assert interval([0.7])[2] != interval([0.7])[2]  # one seed: no interval (NaN), not a fake one


def test_a_cheaper_strategy_within_noise_is_recommended_and_one_beyond_it_is_not():
    groups = summarise(rows({"full": [0.80, 0.78, 0.82], "lora": [0.79, 0.79, 0.80], "probe": [0.70, 0.69, 0.71]},
                            {"full": 100.0, "lora": 40.0, "probe": 5.0}))
    full, lora, probe = groups
    assert paired(full, lora)[2] == 3 and paired(full, probe)[0] == pytest.approx(0.10)
    text = recommend_over_seeds(groups)
    assert "**lora**" in text and "within noise" in text and "probe" not in text
    table = "\n".join(seeds_section(groups))
    assert "| probe |" in table and "worse" in table and "within noise" in table and "0.800, 0.780, 0.820" in table


def test_the_best_is_recommended_when_every_cheaper_one_is_worse_beyond_noise():
    groups = summarise(rows({"full": [0.80, 0.81, 0.82], "probe": [0.70, 0.71, 0.72]}, {"full": 100.0, "probe": 5.0}))
    assert "Every cheaper strategy is worse beyond noise" in recommend_over_seeds(groups)


def test_a_strategy_that_did_not_learn_on_a_seed_is_never_recommended():
    """A fast probe at the majority class on one seed is "within noise" of lora by its scores alone; it must not
    be recommended (issue 26: the one-seed path already refused it, the seeds path did not)."""
    flat = rows({"probe": [0.473, 0.575], "lora": [0.580, 0.570]}, {"probe": 5.0, "lora": 40.0})
    assert "**probe**" in recommend_over_seeds(summarise(flat))  # scores alone: the cheaper one, within noise
    flat[0]["learned"] = "no"
    text = recommend_over_seeds(summarise(flat))
    assert "**lora**" in text and "Every cheaper strategy" in text and "Not considered: probe" in text
    table = "\n".join(seeds_section(summarise(flat)))
    assert "| lora |" in table and "– | best |" in table and "did not learn (seed 42)" in table  # the same best as the text
    for r in flat:
        r["learned"] = "no"
    assert recommend_over_seeds(summarise(flat)).startswith("No recommendation")


def test_compare_with_seeds_reports_each_strategy_over_its_seeds(cli, tiny_backbone, toy_csv, tmp_path):
    code, out, err = cli("compare", "--strategies", "linear_probe,full", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "3",
                         "--seeds", "2", "-o", tmp_path / "cmp", "-q")
    assert code == 0, err
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert [(r["group"], r["seed"]) for r in results["runs"]] == [("linear_probe", 42), ("linear_probe", 43), ("full", 42), ("full", 43)]
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "## Over 2 seeds" in report and "Over the seeds, **" in report
    assert (tmp_path / "cmp" / "full-seed43" / "metrics.json").is_file()


def test_zero_seeds_is_one_clear_line(cli, tiny_backbone, toy_csv, tmp_path):
    code, _, err = cli("compare", "-b", tiny_backbone, "-d", toy_csv, "--seeds", "0", "-o", tmp_path / "cmp")
    assert code == 2 and "--seeds must be at least 1" in err and "Traceback" not in err and not (tmp_path / "cmp").exists()


def test_mcnemar_and_the_bootstrap_interval_on_known_cases():
    from adaptlab.reporting.noise import bootstrap_interval, mcnemar

    a, b = "1" * 50 + "0" * 50, "1" * 40 + "0" * 60  # a is right on 10 more examples, b never right where a is wrong
    assert mcnemar(a, b)[:2] == (10, 0) and mcnemar(a, b)[2] == pytest.approx(2 / 2 ** 10)
    assert mcnemar(a, a) == (0, 0, 1.0)
    assert mcnemar("10", "01")[2] == 1.0  # one discordant each way: no evidence
    low, high = bootstrap_interval(a)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * 0.05, abs=0.03)  # ~ the normal interval
    assert bootstrap_interval(a) == bootstrap_interval(a)  # seeded


def test_one_seed_recommends_the_cheapest_run_mcnemar_cannot_tell_from_the_best():
    from adaptlab.reporting.report import recommend

    rows = [{"run": "full", "score": 0.82, "metric": "accuracy", "train_seconds": 100.0, "artifact_bytes": 10},
            {"run": "probe", "score": 0.79, "metric": "accuracy", "train_seconds": 5.0, "artifact_bytes": 1}]
    assert "**probe** is within noise" in recommend(rows, 0.01, tied={"full", "probe"})
    assert "worse beyond noise" in recommend(rows, 0.01, tied={"full"})
    assert "No cheaper strategy comes within one point" in recommend(rows, 0.01)  # no per-example data: the tolerance


def test_a_one_seed_comparison_shows_its_noise(cli, tiny_backbone, toy_csv, tmp_path):
    code, _, err = cli("compare", "--strategies", "linear_probe,lora", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "1",
                       "-o", tmp_path / "cmp", "-q")
    assert code == 0, err
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    correct = [r["eval_correct"] for r in results["runs"]]
    assert all(len(c) == r["eval_examples"] and set(c) <= {"0", "1"} for c, r in zip(correct, results["runs"]))
    assert all(c.count("1") / len(c) == pytest.approx(r["eval"]["accuracy"]) for c, r in zip(correct, results["runs"]))
    assert not any("correct" in h for r in results["runs"] for h in r["history"])
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "## How much is noise (one seed)" in report and "McNemar" in report


def test_seeds_share_one_split_unless_resplit(tiny_backbone, toy_csv):
    from adaptlab.config import load_config
    from adaptlab.reporting.comparison import with_seeds
    from adaptlab.training.runner import make_setup

    cfg = load_config({"strategy": "lora", "backbone": str(tiny_backbone), "data": {"train": str(toy_csv)}, "train": {"seed": 7}})
    fixed = with_seeds([("lora", cfg)], 3)
    assert [c.train.seed for _, c in fixed] == [7, 8, 9] and {c.data.split_seed for _, c in fixed} == {7}
    assert make_setup(fixed[0][1]).data.eval.texts == make_setup(fixed[2][1]).data.eval.texts
    redrawn = with_seeds([("lora", cfg)], 3, resplit=True)
    assert {c.data.split_seed for _, c in redrawn} == {None}
    assert make_setup(redrawn[0][1]).data.eval.texts != make_setup(redrawn[2][1]).data.eval.texts
