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


def test_compare_with_seeds_reports_each_strategy_over_its_seeds(cli, tiny_backbone, toy_csv, tmp_path):
    code, out, err = cli("compare", "--strategies", "linear_probe,lora", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "1",
                         "--seeds", "2", "-o", tmp_path / "cmp", "-q")
    assert code == 0, err
    results = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert [(r["group"], r["seed"]) for r in results["runs"]] == [("linear_probe", 42), ("linear_probe", 43), ("lora", 42), ("lora", 43)]
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "## Over 2 seeds" in report and "Over the seeds, **" in report
    assert (tmp_path / "cmp" / "lora-seed43" / "metrics.json").is_file()


def test_zero_seeds_is_one_clear_line(cli, tiny_backbone, toy_csv, tmp_path):
    code, _, err = cli("compare", "-b", tiny_backbone, "-d", toy_csv, "--seeds", "0", "-o", tmp_path / "cmp")
    assert code == 2 and "--seeds must be at least 1" in err and "Traceback" not in err and not (tmp_path / "cmp").exists()
