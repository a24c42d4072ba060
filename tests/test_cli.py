"""The CLI end to end on the tiny in-process backbone: train, predict, compare, listings."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from .conftest import write_csv


def test_train_writes_a_complete_run_folder(cli, tmp_path, tiny_backbone, toy_csv):
    code, out, err = cli("train", "-s", "full", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "2", "-o", "run", "-q")
    assert code == 0, err
    run = tmp_path / "run"
    assert "run folder: run" in out
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.json", "steps.jsonl", "labels.json", "README.md", "model"}
    assert not (tmp_path / "run.partial").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("strategy", "backbone", "task", "seed", "train_examples", "eval_examples", "trainable_params", "total_params",
                "train_seconds", "train_examples_per_second", "peak_memory_mb", "eval", "history", "artifact_bytes", "versions"):
        assert key in metrics, key
    assert set(metrics["eval"]) == {"accuracy", "macro_f1", "loss"}
    assert metrics["task"]["labels"] == ["neg", "pos"] and len(metrics["history"]) == 2
    assert {"torch", "transformers", "peft", "adaptlab"} <= set(metrics["versions"])
    assert metrics["artifact_bytes"] > 0 and metrics["peak_memory_mb"] > 0
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert steps and {"step", "loss", "lr", "examples_per_second"} <= set(steps[0])
    config = (run / "model" / "config.json").read_text()
    assert '"pos"' in config  # label names travel into the saved model


def test_rerun_from_the_resolved_config(cli, tmp_path, tiny_backbone, toy_csv):
    assert cli("train", "-s", "top_k", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "1", "-o", "a", "-q")[0] == 0
    code, _, err = cli("train", tmp_path / "a" / "config.yaml", "-o", "b")
    assert code == 0, err
    first, second = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert first["eval"] == second["eval"]  # same config, same seed: same result


def test_existing_output_is_not_overwritten(cli, tmp_path, tiny_backbone, toy_csv):
    (tmp_path / "run").mkdir()
    code, _, err = cli("train", "-b", tiny_backbone, "-d", toy_csv, "-o", "run")
    assert code == 2 and "already exists" in err


def test_predict_file_stdin_and_csv(cli, tmp_path, tiny_backbone, toy_csv, monkeypatch):
    assert cli("train", "-s", "linear_probe", "-b", tiny_backbone, "-d", toy_csv, "-o", "run", "-q")[0] == 0
    inputs = write_csv(tmp_path / "in.csv", [{"text": "good film", "label": "?"}, {"text": "awful plot", "label": "?"}])
    code, out, err = cli("predict", "run", "--input", inputs)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["good film", "awful plot"]
    assert all(set(r["probs"]) == {"neg", "pos"} and abs(sum(r["probs"].values()) - 1) < 1e-5 for r in rows)
    monkeypatch.setattr(sys, "stdin", io.StringIO("good film\n\nawful plot\n"))
    code, out2, _ = cli("predict", "run")
    assert code == 0 and [json.loads(line) for line in out2.splitlines()] == rows
    assert cli("predict", "run", "--input", inputs, "--output", "p.csv")[0] == 0
    table = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert table[0]["label"] == rows[0]["label"] and float(table[0]["p_pos"]) == pytest.approx(rows[0]["probs"]["pos"])


def test_compare_writes_report(cli, tmp_path, tiny_backbone, toy_csv):
    code, out, err = cli("compare", "-b", tiny_backbone, "-d", toy_csv, "--strategies", "linear_probe,full,lora",
                         "--epochs", "1", "-o", "cmp", "-q")
    assert code == 0, err
    folder = tmp_path / "cmp"
    assert {"results.json", "results.csv", "report.md", "linear_probe", "full", "lora"} <= {p.name for p in folder.iterdir()}
    report = (folder / "report.md").read_text()
    assert "| linear_probe |" in report and "## Recommendation" in report and "Majority-class baseline" in report
    rows = list(csv.DictReader(open(folder / "results.csv")))
    assert [r["run"] for r in rows] == ["linear_probe", "full", "lora"]
    assert {"accuracy", "macro_f1", "trainable_params", "trainable_share", "train_seconds", "train_examples_per_second",
            "peak_memory_mb", "artifact_bytes"} <= set(rows[0])
    splits = {json.loads((folder / n / "metrics.json").read_text())["eval_examples"] for n in ("linear_probe", "full", "lora")}
    assert len(splits) == 1  # same split for every strategy
    assert "| lora |" in out and "report:" in out


def test_compare_recipe_with_per_strategy_settings(cli, tmp_path, tiny_backbone, toy_csv):
    recipe = tmp_path / "c.yaml"
    recipe.write_text(
        f"backbone: {tiny_backbone}\ndata: {{train: {toy_csv}}}\ntrain: {{progress: false}}\n"
        "strategies:\n  - {name: top_k, k: 1, train: {epochs: 1}}\n  - {name: top_k, k: 2, label: top2, train: {epochs: 1}}\n",
        encoding="utf-8",
    )
    code, _, err = cli("compare", recipe, "-o", "cmp")
    assert code == 0, err
    k = [json.loads((tmp_path / "cmp" / n / "metrics.json").read_text())["trainable_params"] for n in ("top_k", "top2")]
    assert k[0] < k[1]


def test_listings(cli):
    code, out, _ = cli("strategies")
    names = {line.split()[0] for line in out.splitlines()}
    assert code == 0 and {"linear_probe", "top_k", "gradual_unfreeze", "full", "lora"} <= names
    code, out, _ = cli("strategies", "--verbose")
    assert "strategy.r = 8" in out
    code, out, _ = cli("models")
    assert code == 0 and "minilm-l6" in out and "Apache-2.0" in out
    code, out, _ = cli("datasets")
    assert code == 0 and "rotten-tomatoes" in out and "bbc-news" in out


def test_python_api(tmp_path, tiny_backbone, toy_csv):
    import adaptlab

    run = adaptlab.train(strategy="lora", backbone=str(tiny_backbone), data=str(toy_csv), output=str(tmp_path / "r"),
                         train__epochs=1, train__progress=False)
    assert run.metrics["strategy"] == "lora" and run.run_dir == tmp_path / "r"
    model = adaptlab.load(run.run_dir)
    predictions = model.predict(["good film", "awful plot"])
    assert len(predictions) == 2 and predictions[0].label in ("neg", "pos")
    assert model.predict([]) == []
    report = adaptlab.compare(["linear_probe", "top_k"], backbone=str(tiny_backbone), data=str(toy_csv),
                              output=str(tmp_path / "c"), train__epochs=1, train__progress=False)
    assert [r["run"] for r in report.rows] == ["linear_probe", "top_k"] and (report.folder / "report.md").is_file()


def test_compare_failing_strategy_leaves_nothing(cli, tmp_path, tiny_backbone, toy_csv):
    code, _, err = cli("compare", "-b", tiny_backbone, "-d", toy_csv, "--strategies", "top_k", "--set", "strategy.k=9",
                       "-o", "cmp", "-q")
    assert code == 2 and "strategy.k=9" in err
    assert not list(tmp_path.iterdir())


def test_compare_resumes_after_an_interruption(cli, tmp_path, tiny_backbone, toy_csv, monkeypatch):
    import adaptlab.reporting.comparison as compare_module

    real = compare_module.run_one
    calls = []

    def flaky(cfg, *args, **kwargs):
        calls.append(cfg.strategy.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(compare_module, "run_one", flaky)
    args = ("compare", "-b", tiny_backbone, "-d", toy_csv, "--strategies", "linear_probe,full", "--epochs", "1",
            "-o", "cmp", "-q")
    code, _, err = cli(*args)
    assert code == 130 and "--resume" in err
    assert (tmp_path / "cmp.partial" / "linear_probe" / "metrics.json").is_file()
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    assert calls == ["linear_probe", "full", "full"]  # the finished run was not redone
    assert (tmp_path / "cmp" / "report.md").is_file() and not (tmp_path / "cmp.partial").exists()


def _commands() -> list[str]:
    import typer.main

    from adaptlab.cli import app

    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", _commands())
def test_every_option_shows_its_default(command):
    """Rich help used to eat '[text]' as markup ('Text column .'): every option names its default."""
    import typer.main
    from typer.core import TyperOption  # typer vendors click: click.Option would match nothing

    from adaptlab.cli import app

    group = typer.main.get_command(app)
    sub = group.commands[command]
    assert any(isinstance(p, TyperOption) for p in sub.params) or command in ("tasks", "models", "datasets"), command  # seen
    for param in sub.params:
        if isinstance(param, TyperOption) and param.name != "help" and not param.required:
            assert param.show_default not in (None, False) or param.default not in (None, False), f"--{param.name} of {command}"
    from typer.testing import CliRunner

    text = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
    assert "column ." not in text
    if "--text-column" in text:
        assert "(text)" in text


@pytest.mark.parametrize("command, module, prefix", [
    ("compare", "reporting/comparison.py", "compare-"), ("tune", "training/tune.py", "tune-{name}-"),
    ("curve", "reporting/curves.py", "curve-"), ("episodic", "eval/episodic.py", "episodic-"),
    ("train", "training/folders.py", "{cfg.strategy.name}-")])
def test_the_output_default_in_help_is_the_folder_the_command_writes(command, module, prefix):
    """``--output``'s shown default names the folder the code makes when it is left out (it once showed
    ``runs/<strategy>-<time>`` on every command)."""
    import typer.main

    import adaptlab
    from adaptlab.cli import app

    option = next(p for p in typer.main.get_command(app).commands[command].params if p.name == "output")
    shown = str(option.show_default)
    source = (Path(adaptlab.__file__).parent / module).read_text(encoding="utf-8")
    assert f'Path("runs") / f"{prefix}' in source, module
    expected = "runs/" + prefix.replace("{name}", "<strategy>").replace("{cfg.strategy.name}", "<strategy>") + "<time>"
    assert shown.endswith(expected), (command, shown)


def test_long_work_shows_progress(cli, tmp_path, tiny_backbone, toy_csv, monkeypatch, caplog):
    """Bars (only in a terminal: tqdm's disable=None) for evaluation, the forgetting probe, feature caching and
    predict; a status line per strategy of a comparison, with the time left once one has run."""
    import importlib

    seen: list[str] = []

    def recording(iterable=None, *args, desc=None, **kwargs):
        seen.append(desc)
        return tqdm(iterable, *args, desc=desc, **kwargs)

    from tqdm.auto import tqdm

    for name in ("eval.metrics", "eval.forgetting", "serve.predict", "strategies.linear_probe"):
        monkeypatch.setattr(importlib.import_module(f"adaptlab.{name}"), "tqdm", recording)
    with caplog.at_level("INFO", logger="adaptlab"):
        code, _, err = cli("compare", "--strategies", "linear_probe,full", "-b", tiny_backbone, "-d", toy_csv, "--epochs", "1",
                           "-o", str(tmp_path / "cmp"), "-q")
    assert code == 0, err
    assert "strategy 1/2: linear_probe" in err and "strategy 2/2: full, about" in err and "left" in err
    code, _, err = cli("predict", str(tmp_path / "cmp" / "full"), "--input", str(toy_csv))
    assert code == 0, err
    assert {"evaluating", "forgetting probe", "caching features", "predicting"} <= set(seen)
