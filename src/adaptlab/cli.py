"""The ``adaptlab`` command line.

Every input problem ends in one ``error: ...`` line on stderr and exit code 2;
an interrupted run says how to resume it (exit code 130).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import AdaptlabError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Adapt pretrained language models to your task, from linear probes to full fine-tuning, and compare how.",
)

Recipe = Annotated[Path | None, typer.Argument(help="YAML recipe; flags and --set override it.", show_default=False)]
Set = Annotated[list[str] | None, typer.Option("--set", help="Override any config key: --set train.lr=3e-4 (repeatable).", show_default="none")]
Backbone = Annotated[str | None, typer.Option("--backbone", "-b", help="Bundled alias, local HF folder or hub id.", show_default="minilm-l6")]
Data = Annotated[str | None, typer.Option("--data", "-d", help="Bundled dataset name or a CSV/TSV/JSONL/JSON/Parquet file.", show_default="rotten-tomatoes")]
EvalData = Annotated[str | None, typer.Option("--eval-data", help="Evaluation file, or named sets zh=FILE,en=FILE.",
    show_default="a stratified held-out split")]
TextCol = Annotated[str | None, typer.Option("--text-column", help="Text column.", show_default="text")]
PairCol = Annotated[str | None, typer.Option("--text-pair-column", help="Second text column, for pair tasks.", show_default="none")]
LabelCol = Annotated[str | None, typer.Option("--label-column", help="Label column.", show_default="label")]
EvalFrac = Annotated[float | None, typer.Option("--eval-fraction", help="Held-out share when no --eval-data.", show_default="0.2")]
MaxTrain = Annotated[int | None, typer.Option("--max-train", help="Use at most N training examples.", show_default="all")]
MaxEval = Annotated[int | None, typer.Option("--max-eval", help="Use at most N evaluation examples.", show_default="all")]
Encoding = Annotated[str | None, typer.Option("--encoding", help="Text encoding of data files.", show_default="utf-8")]
Epochs = Annotated[str | None, typer.Option("--epochs", help="Training epochs, or auto: from the data size, early stopping.",
                                             show_default="auto")]
Lr = Annotated[str | None, typer.Option("--lr", help="Peak learning rate, or auto: a range test picks it.", show_default="auto")]
Batch = Annotated[int | None, typer.Option("--batch-size", help="Training batch size.", show_default="32; 8 for sft and preference")]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed for init, shuffling and the split.", show_default="42")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Output folder.", show_default="runs/<strategy>-<time>")]
CompareOutput = Annotated[Path | None, typer.Option("--output", "-o", help="Output folder.",
                                                    show_default="the recipe's output, else runs/compare-<time>")]
TuneOutput = Annotated[Path | None, typer.Option("--output", "-o", help="Output folder.", show_default="runs/tune-<strategy>-<time>")]
CurveOutput = Annotated[Path | None, typer.Option("--output", "-o", help="Output folder.", show_default="runs/curve-<time>")]
EpisodicOutput = Annotated[Path | None, typer.Option("--output", "-o", help="Output folder.", show_default="runs/episodic-<time>")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --output.", show_default="off")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.", show_default="off")]
Shots = Annotated[int | None, typer.Option("--shots", help="Few-shot: keep N training examples per class (seeded).", show_default="all")]
Task = Annotated[str | None, typer.Option("--task", help="Task type (adaptlab tasks); told from the data's columns when unset.",
                                          show_default="from the columns")]
PromptCol = Annotated[str | None, typer.Option("--prompt-column", help="sft: prompt column.", show_default="prompt")]
ResponseCol = Annotated[str | None, typer.Option("--response-column", help="sft: response column.", show_default="response")]
System = Annotated[str | None, typer.Option("--system", help="sft: a system message before every conversation.", show_default="none")]
Template = Annotated[str | None, typer.Option("--template", help="sft: chat (the tokenizer's), plain, or auto.", show_default="auto")]
Packing = Annotated[bool | None, typer.Option("--packing/--no-packing", help="sft: pack short examples into full rows (kept apart).",
                                              show_default="off")]
MaxLength = Annotated[int | None, typer.Option("--max-length", help="Cut inputs to N tokens.", show_default="128")]
ReportTo = Annotated[list[str] | None, typer.Option("--report-to", help="Experiment tracker: tensorboard, mlflow or wandb "
                                                  "(repeatable; the track extra).", show_default="none")]
TargetShots = Annotated[int | None, typer.Option("--target-shots", help="Add N labelled examples per class of the target eval set to training.",
    show_default="0")]


def _overrides(**flags) -> dict:
    """CLI flags -> dotted config keys (only those given)."""
    keys = {
        "backbone": "backbone", "data": "data.train", "eval_data": "data.eval", "text_column": "data.text_column",
        "text_pair_column": "data.text_pair_column", "label_column": "data.label_column",
        "eval_fraction": "data.eval_fraction", "max_train": "data.max_train", "max_eval": "data.max_eval",
        "encoding": "data.encoding", "epochs": "train.epochs", "lr": "train.lr", "batch_size": "train.batch_size",
        "seed": "train.seed", "strategy": "strategy.name", "shots": "data.shots", "target_shots": "data.target_shots",
        "task": "data.task", "prompt_column": "data.prompt_column", "response_column": "data.response_column",
        "system": "data.system", "template": "data.template", "packing": "data.packing", "max_length": "data.max_length",
        "distributed": "train.distributed", "report_to": "train.report_to",
    }
    out = {keys[k]: v for k, v in flags.items() if v is not None and k in keys}
    if flags.get("quiet"):
        out["train.progress"] = False
    return out


@app.command()
def train(
    recipe: Recipe = None,
    strategy: Annotated[str | None, typer.Option("--strategy", "-s", help="Strategy name (adaptlab strategies).", show_default="lora")] = None,
    backbone: Backbone = None, data: Data = None, eval_data: EvalData = None, text_column: TextCol = None,
    text_pair_column: PairCol = None, label_column: LabelCol = None, eval_fraction: EvalFrac = None,
    max_train: MaxTrain = None, max_eval: MaxEval = None, encoding: Encoding = None, epochs: Epochs = None,
    lr: Lr = None, batch_size: Batch = None, seed: Seed = None, output: Output = None, set_: Set = None,
    resume: Resume = False, quiet: Quiet = False, shots: Shots = None, target_shots: TargetShots = None,
    task: Task = None, prompt_column: PromptCol = None, response_column: ResponseCol = None, system: System = None,
    template: Template = None, packing: Packing = None, max_length: MaxLength = None, report_to: ReportTo = None,
    distributed: Annotated[str | None, typer.Option("--distributed", help="Under torchrun/accelerate launch: ddp, fsdp, "
                                                    "deepspeed-zero2 or deepspeed-zero3.", show_default="ddp")] = None,
) -> None:
    """Train one strategy and write a run folder (weights, metrics.json, model card)."""
    from .api import train as run_train

    flags = _overrides(**{k: v for k, v in locals().items() if k not in ("recipe", "set_", "output", "resume")})
    if output is not None:
        flags["output"] = str(output)
    result = run_train(recipe, overrides={**flags, **_sets(set_)}, resume=resume)
    if not result.metrics:
        return  # a non-main process of a distributed run
    typer.echo(summary_line(result.metrics))
    typer.echo(f"run folder: {result.run_dir}")


def summary_line(metrics: dict) -> str:
    """The one line ``adaptlab train`` ends with: the strategy's own summary (``describe`` hook), else the task's."""
    from .strategies import get_strategy
    from .tasks import task_of

    m = metrics
    describe = getattr(get_strategy(m["strategy"]), "describe", None)
    task_type = task_of(m)
    line = describe(m) if describe else task_type.describe(m["eval"])
    flag = m.get("did_not_learn")
    verdict = f"  DID NOT LEARN (majority-class baseline {m.get('majority_baseline') or 0:.4f}: see metrics.json)" if flag else ""
    sets = m.get("eval_sets") or {}
    metric = task_type.default_metric  # the primary metric on every evaluation set
    more = "\n" + "  ".join(f"{name} {s[metric]:.4f}" for name, s in sets.items() if s.get(metric) is not None) if len(sets) > 1 else ""
    return f"{line}  trainable {m['trainable_params']:,}/{m['total_params']:,}  train {m['train_seconds']:.1f}s{verdict}{more}"


@app.command()
def compare(
    recipe: Recipe = None,
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated strategy names.", show_default="the recipe's")] = None,
    backbone: Backbone = None, data: Data = None, eval_data: EvalData = None, text_column: TextCol = None,
    text_pair_column: PairCol = None, label_column: LabelCol = None, eval_fraction: EvalFrac = None,
    max_train: MaxTrain = None, max_eval: MaxEval = None, encoding: Encoding = None, epochs: Epochs = None,
    lr: Lr = None, batch_size: Batch = None, seed: Seed = None, output: CompareOutput = None, set_: Set = None,
    resume: Resume = False, quiet: Quiet = False, shots: Shots = None, target_shots: TargetShots = None,
    task: Task = None, prompt_column: PromptCol = None, response_column: ResponseCol = None, system: System = None,
    template: Template = None, packing: Packing = None, max_length: MaxLength = None, report_to: ReportTo = None,
    seeds: Annotated[int | None, typer.Option("--seeds", help="Run each strategy with N seeds (train.seed, +1, ...): mean, "
                                              "spread, 95% intervals, differences within noise.", show_default="1")] = None,
    tune: Annotated[int | None, typer.Option("--tune", help="First tune each strategy with N Optuna trials (adaptlab tune), "
                                             "then compare each at its best.", show_default="off")] = None,
    resplit: Annotated[bool, typer.Option("--resplit", help="With --seeds: each seed also draws its own train/eval split.",
                                          show_default="off")] = False,
    plan: Annotated[Path | None, typer.Option("--plan", help="Run the plan adaptlab recommend wrote (a recipe; its estimates "
                                              "go beside the measured costs in the report).", show_default="none")] = None,
) -> None:
    """Run several strategies on the same data and write a comparison report.

    With no arguments: the bundled demo (minilm-l6 on rotten-tomatoes, five strategies).
    """
    from .reporting.comparison import compare as run_compare
    from .reporting.report import markdown_table

    flags = _overrides(**{k: v for k, v in locals().items() if k not in ("recipe", "set_", "output", "resume")})  # known flags only
    if plan is not None:
        if recipe is not None:
            raise AdaptlabError("give either a recipe or --plan, not both")
        if not plan.is_file():
            raise AdaptlabError(f"plan file not found: {plan}")
        recipe = plan
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    result = run_compare(names, recipe, overrides={**flags, **_sets(set_)}, output=output, resume=resume, seeds=seeds, tune=tune, resplit=resplit or None)
    if not result.rows:
        return  # a non-main process of a distributed run
    from .reporting.report import flat

    typer.echo("\n".join(markdown_table([flat(r) for r in result.rows])))
    typer.echo(f"report: {result.folder / 'report.md'}")


@app.command()
def tune(
    recipe: Recipe = None,
    strategy: Annotated[str | None, typer.Option("--strategy", "-s", help="Strategy to tune (adaptlab strategies).", show_default="lora")] = None,
    trials: Annotated[int, typer.Option("--trials", help="Trials in all (a resumed study counts those it has).")] = 20,
    budget_minutes: Annotated[float | None, typer.Option("--budget-minutes", help="Stop starting trials after this long.",
                                                         show_default="none")] = None,
    space: Annotated[list[str] | None, typer.Option("--space", help="Search KEY=LOW:HIGH or KEY=a,b,c (repeatable; adds to or "
                                                    "replaces the strategy's space).", show_default="the strategy's")] = None,
    pruner: Annotated[str, typer.Option("--pruner", help="median, halving (successive halving) or none.")] = "median",
    backbone: Backbone = None, data: Data = None, eval_data: EvalData = None, text_column: TextCol = None,
    label_column: LabelCol = None, max_train: MaxTrain = None, max_eval: MaxEval = None, seed: Seed = None,
    output: TuneOutput = None, set_: Set = None, resume: Resume = False, quiet: Quiet = False, report_to: ReportTo = None,
) -> None:
    """Search a strategy's hyperparameters with Optuna; write the best as a recipe and its gain over the defaults.

    Trials are judged on a validation split carved from the training data; the gain is measured on the
    evaluation split, which no trial chose anything on. The study lives in <output>/study.db: --resume continues it.
    """
    from .training.tune import tune as run_tune

    flags = _overrides(**{k: v for k, v in locals().items() if k in ("strategy", "backbone", "data", "eval_data", "text_column",
                                                                     "label_column", "max_train", "max_eval", "seed", "quiet", "report_to")})
    summary = run_tune(recipe, overrides={**flags, **_sets(set_)}, trials=trials, budget_minutes=budget_minutes,
                       output=output, resume=resume, space=space, pruner=pruner)
    best, base = summary["best"], summary["defaults"]
    gain = f"{summary['gain_on_eval']:+.4f}" if summary["gain_on_eval"] is not None else "n/a"
    typer.echo(f"{summary['strategy']}: best of {summary['complete']} trials ({summary['pruned']} pruned): validation "
               f"{summary['metric']} {best['validation']:.4f}; on the evaluation split {best['eval']:.4f} vs defaults "
               f"{base['eval']:.4f} ({gain})")
    typer.echo(f"best settings: {best['params']}")
    typer.echo(f"recipe: {Path(best['run']).parent / 'best.yaml'}  (adaptlab train {Path(best['run']).parent / 'best.yaml'})")


@app.command()
def recommend(
    recipe: Recipe = None,
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated candidates.",
                                                   show_default="linear_probe,lora,top_k,full,gradual_unfreeze")] = None,
    budget_minutes: Annotated[float | None, typer.Option("--budget-minutes", help="Time the whole plan may take.", show_default="none")] = None,
    max_memory_gb: Annotated[float | None, typer.Option("--max-memory-gb", help="Peak memory a run may use.", show_default="none")] = None,
    max_artifact_mb: Annotated[float | None, typer.Option("--max-artifact-mb", help="Largest saved model.", show_default="none")] = None,
    backbone: Backbone = None, data: Data = None, eval_data: EvalData = None, text_column: TextCol = None,
    label_column: LabelCol = None, max_train: MaxTrain = None, max_eval: MaxEval = None, seed: Seed = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where the plan goes.", show_default="plan.yaml")] = None,
    set_: Set = None,
) -> None:
    """Measure your data, its distance from general text and this machine; time a few steps of each strategy; write a
    ranked plan (which to run, in what order, estimated time, memory and size, and why) that compare --plan runs."""
    from .reporting.recommend import recommend as run_recommend

    flags = _overrides(**{k: v for k, v in locals().items() if k in ("backbone", "data", "eval_data", "text_column", "label_column",
                                                                     "max_train", "max_eval", "seed")})
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    plan = run_recommend(recipe, overrides={**flags, **_sets(set_)}, budget_minutes=budget_minutes, max_memory_gb=max_memory_gb,
                         max_artifact_mb=max_artifact_mb, output=output, strategies=names)
    d, shift, probe = plan["data"], plan["domain_shift"], plan["quick_probe"]
    typer.echo(f"data: {d['train_rows']} training rows, {d['classes']} classes (smallest {d['smallest_class_share']:.0%}), "
               f"{d['tokens_median']:.0f} tokens median / {d['tokens_p90']} p90")
    typer.echo(f"domain shift: {shift['ratio']:.1f}x the spread of general text ({shift['meaning']})")
    typer.echo(f"quick probe: linear probe {probe['accuracy']:.3f} on {probe['held_out_rows']} held-out rows "
               f"(majority class {probe['majority_class']:.3f}), {probe['seconds']:.0f} s")
    for i, name in enumerate(plan["order"], 1):
        e = plan["estimates"][name]
        typer.echo(f"{i}. {name}: training ~{e['train_seconds'] / 60:.1f} min (~{e['wall_seconds'] / 60:.1f} with evaluation), "
                   f"{e['peak_memory_mb'] / 1024:.1f} GB (planned from the config: {e['planned_memory_mb'] / 1024:.1f} GB), "
                   f"{e['artifact_mb']:.1f} MB -- {e['reason']}")
    for name, e in plan["estimates"].items():
        if "left_out" in e:
            typer.echo(f"left out: {name} ({e['left_out']})")
    typer.echo(f"plan: {plan['path']}  (adaptlab compare --plan {plan['path']})")


@app.command("plan-memory")
def plan_memory(
    recipe: Recipe = None,
    strategy: Annotated[str | None, typer.Option("--strategy", "-s", help="Strategy name (adaptlab strategies).", show_default="lora")] = None,
    backbone: Backbone = None, task: Task = None, batch_size: Batch = None, max_length: MaxLength = None,
    labels: Annotated[int, typer.Option("--labels", help="Classes of a classification task.")] = 2,
    device: Annotated[str | None, typer.Option("--device", help="cpu or cuda.", show_default="cuda when there is one")] = None,
    max_memory_gb: Annotated[float | None, typer.Option("--max-memory-gb", help="Memory the run may use.",
                                                        show_default="this machine's available memory (or the GPU's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.", show_default="off")] = False,
    set_: Set = None,
) -> None:
    """Plan a run's peak memory from the backbone's config, before any weight loads: weights, gradients, optimiser
    state, activations and logits; whether it fits, and what to change when it does not."""
    import json

    from .config import load_config
    from .training.plan_memory import plan_memory as run_plan

    if device not in (None, "cpu", "cuda"):
        raise AdaptlabError(f"--device must be cpu or cuda, not {device!r}")
    if labels < 2:
        raise AdaptlabError("--labels must be 2 or more")
    flags = _overrides(strategy=strategy, backbone=backbone, task=task, batch_size=batch_size, max_length=max_length)
    cfg = load_config(recipe, {"strategy.name": "lora", **flags, **_sets(set_)} if "strategy.name" not in flags and recipe is None
                      else {**flags, **_sets(set_)})
    result = run_plan(cfg, labels=labels, device=device, limit_gb=max_memory_gb)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    p = result["plan"]
    typer.echo(f"{result['strategy']} on {result['backbone']} ({result['task']}, {result['device']}): batch {result['batch_size']} x "
               f"{result['length']} tokens, gradient checkpointing {'on' if p['checkpointing'] else 'off'}")
    typer.echo(f"parameters: {p['total_params']:,}, {p['trainable_params']:,} train; gradients reach "
               f"{p['blocks_with_gradients']} blocks")
    for part in ("weights", "gradients", "optimizer", "activations", "logits", "runtime", "allocator"):
        typer.echo(f"  {part:<12}{p[part] / 1024:7.2f} GB")
    typer.echo(f"  {'peak':<12}{p['total'] / 1024:7.2f} GB of {result['available_mb'] / 1024:.1f} GB: "
               f"{'fits' if result['fits'] else 'does not fit'}")
    for note in p["notes"]:
        typer.echo(f"note: {note}")
    for change in result["advice"]:
        typer.echo(f"to fit: {change}")


@app.command()
def curve(
    recipe: Recipe = None,
    strategies: Annotated[str | None, typer.Option("--strategies", help="Comma-separated strategy names.", show_default="the recipe's")] = None,
    target_shots: Annotated[str | None, typer.Option("--target-shots", help="Ks of labelled target examples per class, e.g. 0,8,32.",
        show_default="none")] = None,
    shots: Annotated[str | None, typer.Option("--shots", help="Ks of training examples per class, e.g. 4,8,16.", show_default="none")] = None,
    backbone: Backbone = None, data: Data = None, eval_data: EvalData = None, text_column: TextCol = None,
    label_column: LabelCol = None, max_train: MaxTrain = None, max_eval: MaxEval = None, epochs: Epochs = None,
    lr: Lr = None, batch_size: Batch = None, seed: Seed = None, output: CurveOutput = None, set_: Set = None, quiet: Quiet = False,
) -> None:
    """Accuracy against k: one comparison per number of (target-language) examples per class."""
    from .reporting.curves import curve_table, shots_curve

    if (target_shots is None) == (shots is None):
        raise AdaptlabError("give either --target-shots 0,8,32 (cross-lingual) or --shots 4,8,16 (few-shot)")
    flags = _overrides(**{k: v for k, v in locals().items() if k not in ("recipe", "set_", "output", "strategies", "shots", "target_shots")})
    ks = _ints(target_shots if shots is None else shots)
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    result = shots_curve(ks, names, recipe, target=shots is None, overrides={**flags, **_sets(set_)}, output=output)
    typer.echo("\n".join(curve_table(result.rows, "data.shots" if shots else "data.target_shots")[2:]))
    typer.echo(f"curve: {result.folder / 'curve.md'}")


@app.command()
def episodic(
    recipe: Recipe = None,
    strategies: Annotated[str | None, typer.Option("--strategies", "-s", help="Comma-separated strategies with an episodic mode.",
        show_default="protonet")] = None,
    test_classes: Annotated[str | None, typer.Option("--test-classes", help="Held-out classes, comma-separated.", show_default="drawn with the seed")] = None,
    n_test_classes: Annotated[int, typer.Option("--n-test-classes", help="How many classes to hold out when none are named.")] = 2,
    n_way: Annotated[int | None, typer.Option("--n-way", help="Classes per test episode.", show_default="all held-out classes")] = None,
    k_shot: Annotated[int, typer.Option("--k-shot", help="Support examples per class in a test episode.")] = 5,
    queries: Annotated[int, typer.Option("--queries", help="Query examples per class in a test episode.")] = 10,
    episodes: Annotated[int, typer.Option("--episodes", help="Test episodes.")] = 100,
    backbone: Backbone = None, data: Data = None, text_column: TextCol = None, label_column: LabelCol = None,
    max_train: MaxTrain = None, max_eval: MaxEval = None, epochs: Epochs = None, lr: Lr = None, batch_size: Batch = None,
    seed: Seed = None, output: EpisodicOutput = None, set_: Set = None, quiet: Quiet = False,
) -> None:
    """Train on some classes, then N-way K-shot accuracy (95% CI) on episodes of held-out classes."""
    from .eval.episodic import episodic as run_episodic

    keep = ("backbone", "data", "text_column", "label_column", "max_train", "max_eval", "epochs", "lr", "batch_size", "seed", "quiet")
    flags = _overrides(**{k: v for k, v in locals().items() if k in keep})
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    held = [c.strip() for c in test_classes.split(",") if c.strip()] if test_classes else None
    result = run_episodic(names, recipe, test_classes=held, n_test_classes=n_test_classes, n_way=n_way, k_shot=k_shot,
                          queries=queries, episodes=episodes, overrides={**flags, **_sets(set_)}, output=output)
    typer.echo((result.folder / "episodic.md").read_text(encoding="utf-8").split("\n\n", 2)[2].rstrip())
    typer.echo(f"report: {result.folder / 'episodic.md'}")


def _ints(text: str) -> list[int]:
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise AdaptlabError(f"expected comma-separated whole numbers, got '{text}'") from None


@app.command()
def predict(
    run_dirs: Annotated[list[Path], typer.Argument(help="One or more run folders.", show_default=False)],
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="CSV/TSV/JSONL/JSON/Parquet file, or stdin (one text per line).", show_default="stdin")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (.jsonl or .csv) instead of stdout.", show_default="stdout")] = None,
    text_column: TextCol = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per batch.")] = 64,
    encoding: Encoding = None,
) -> None:
    """Predict a label and class probabilities for every input text."""
    from .serve.many import predict_rows
    from .serve.predict import read_inputs, read_run, write_rows

    for run in run_dirs:
        read_run(run)  # a bad folder fails before any input is read
    texts = read_inputs(input, text_column, encoding or "utf-8")
    rows = predict_rows(run_dirs, texts, batch_size)
    write_rows(rows, output)


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="A finished sft run folder.", show_default=False)],
    input: Annotated[Path | None, typer.Option("--input", "-i", help="CSV/TSV/JSONL/JSON/Parquet file with a prompt column, or stdin "
                                               "(one prompt per line).", show_default="stdin")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSONL here instead of stdout.", show_default="stdout")] = None,
    prompt_column: Annotated[str | None, typer.Option("--prompt-column", help="Prompt column of --input.", show_default="prompt")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="Most tokens per answer.", show_default="the run's")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Sample (temperature/top-p of the run) instead of greedy.", show_default="off")] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Prompts per batch.", show_default="the run's")] = None,
    encoding: Encoding = None,
) -> None:
    """Answer every prompt with a generative (sft) run: one JSON line {prompt, output} per prompt."""
    from .serve.predict import Predictor, read_inputs, read_run, write_rows

    read_run(run_dir)  # a bad folder fails before any input is read
    prompts = read_inputs(input, prompt_column or "prompt" if input is not None else None, encoding or "utf-8")
    predictor = Predictor(run_dir)
    settings = {k: v for k, v in {"max_new_tokens": max_new_tokens, "do_sample": sample or None}.items() if v is not None}
    if settings and predictor.generative:
        predictor.task_type.generation = predictor.task_type.generation.model_copy(update=settings)
    outputs = predictor.generate(prompts, batch_size, progress=True)
    write_rows([{"prompt": p, "output": o} for p, o in zip(prompts, outputs)], output)


@app.command()
def score(
    run_dir: Annotated[Path, typer.Argument(help="A finished reward_model run folder.", show_default=False)],
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV/TSV/JSONL/JSON/Parquet file with prompt and response columns.",
                                        show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write JSONL here instead of stdout.", show_default="stdout")] = None,
    prompt_column: Annotated[str, typer.Option("--prompt-column", help="Prompt column of --input.")] = "prompt",
    response_column: Annotated[str, typer.Option("--response-column", help="Response column of --input.")] = "response",
    encoding: Encoding = None,
) -> None:
    """Score every (prompt, response) with a reward model: one JSON line {prompt, response, reward} per row."""
    from .serve.predict import Predictor, read_inputs, read_run, write_rows

    read_run(run_dir)
    prompts = read_inputs(input, prompt_column, encoding or "utf-8")
    responses = read_inputs(input, response_column, encoding or "utf-8")
    rewards = Predictor(run_dir).score(prompts, responses, progress=True)
    write_rows([{"prompt": p, "response": r, "reward": round(x, 6)} for p, r, x in zip(prompts, responses, rewards)], output)


@app.command()
def serve(
    run_dirs: Annotated[list[Path], typer.Argument(help="Finished run folders (sft/preference policies, classifiers, reward models).",
                                                   show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8000,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", help="How long a request waits for others to batch with.",
                                                   min=0)] = 10.0,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Most requests answered together (1: one at a time).", min=1)] = 16,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Most requests waiting; more get 503 at once.", min=1)] = 256,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before an unanswered request gets 504.", min=0.1)] = 300.0,
) -> None:
    """Serve runs over HTTP in OpenAI's format: /v1/chat/completions, /v1/models, plus /v1/classify and /v1/score.

    One process, one copy of the backbone; each run is a model named by its folder (the request's "model").
    """
    try:
        from .serve.server import Limits, serve as run_server
    except ImportError as e:
        raise AdaptlabError(f"adaptlab serve needs the 'serve' extra (pip install 'adaptlab[serve]'): {e}") from None
    from .serve.predict import read_run

    for run in run_dirs:
        read_run(run)  # a bad folder fails before anything loads
    run_server([str(r) for r in run_dirs], host, port, Limits(batch_window_ms, max_batch, max_queue, timeout))


@app.command()
def ui(
    folder: Annotated[Path, typer.Argument(help="The runs folder to show (comparisons and runs directly under it).")] = Path("runs"),
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8501,
) -> None:
    """A local web page over a runs folder: live progress and loss curves, reports, and a form that starts a comparison."""
    try:
        import uvicorn

        from .ui.app import create_app
    except ImportError as e:
        raise AdaptlabError(f"adaptlab ui needs the 'serve' extra (pip install 'adaptlab[serve]'): {e}") from None
    from .serve.server import listen

    if folder.exists() and not folder.is_dir():
        raise AdaptlabError(f"{folder} is a file; give the folder that holds your runs (default: runs)")
    sock = listen(host, port)
    logging.getLogger("adaptlab").info("adaptlab ui over %s: http://%s:%d", folder.resolve(), host, sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(create_app(folder), log_level="warning")).run(sockets=[sock])


@app.command()
def tasks() -> None:
    """List the task types (--task), one line each."""
    from .tasks import discover

    _table([{"task": name, "metrics": ", ".join(t.metrics), "about": t.summary} for name, t in discover().items()])


@app.command()
def merge(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (lora, dora, ia3, or adapter/compacter with activation identity).",
                                            show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the merged transformers model.")],
) -> None:
    """Fold a run's trained update into the backbone: a plain transformers model folder."""
    from .serve.merge import merge as run_merge

    typer.echo(f"merged model: {run_merge(run_dir, output)}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (gguf: an sft or preference run of a Llama, Mistral or Qwen2 "
                                            "model, full, lora, dora or ia3; onnx: a classifier).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="gguf: the file to write (model.gguf); onnx: a folder.",
                                         show_default=False)],
    format: Annotated[str, typer.Option("--format", "-f", help="gguf (llama.cpp, Ollama, LM Studio) or onnx (onnxruntime).")] = "gguf",
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="Weight type: f32, f16 or q8_0 (norms stay f32).")] = "f16",
    tokenizer_pre: Annotated[str | None, typer.Option("--tokenizer-pre", help="llama.cpp's name of the pre-tokenizer (smollm, llama-bpe, "
                                                      "qwen2, ...).", show_default="the backbone GGUF's, else default")] = None,
) -> None:
    """Write a run in another runtime's format, then read it back and compare its outputs with the run's."""
    from .serve.predict import read_run

    if format not in ("gguf", "onnx"):
        raise AdaptlabError(f"--format must be gguf or onnx; got {format}")
    read_run(run_dir)
    if format == "onnx":
        try:
            from .serve.export_onnx import export_onnx
        except ImportError as e:
            raise AdaptlabError(f"ONNX export needs the 'onnx' extra (pip install 'adaptlab[onnx]'): {e}") from None
        folder, onnx_check = export_onnx(run_dir, output)
        typer.echo(f"{folder}/model.onnx: {(folder / 'model.onnx').stat().st_size / 2**20:,.1f} MB; onnxruntime's probabilities "
                   f"within {onnx_check.max_probability_gap:.1e} of the run's, same label on {onnx_check.same_labels:.0%} of the probe texts")
        return
    from .serve.export_gguf import export_gguf

    path, check = export_gguf(run_dir, output, gguf_type, tokenizer_pre)
    typer.echo(f"{path}: {path.stat().st_size / 2**20:,.1f} MB ({gguf_type}); read back by transformers: largest logit gap "
               f"{check.max_logit_gap:.2e}, same next token at {check.top1_agreement:.1%} of probe positions, tokenizer "
               f"{'identical' if check.same_tokens else 'DIFFERENT'} on the probe prompts")


@app.command()
def strategies(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every option.", show_default="off")] = False) -> None:
    """List the strategies, one line each."""
    from .strategies import discover, summary

    registry = discover()
    width = max(map(len, registry))
    for name in sorted(registry):
        cls = registry[name]
        typer.echo(f"{name:<{width}}  {summary(cls)}  [{', '.join(getattr(cls, 'tasks', ('classification',)))}]")
        if verbose:
            for field, info in cls.Config.model_fields.items():
                if field != "name":
                    default = "(required)" if info.is_required() else repr(info.default)
                    typer.echo(f"{'':<{width}}    strategy.{field} = {default}: {info.description or ''}")


def _table(rows: list[dict[str, str]]) -> None:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    typer.echo("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        typer.echo("  ".join(str(r[k]).ljust(widths[k]) for k in keys))


@app.command()
def models() -> None:
    """List the bundled backbones (usable offline)."""
    from .models.backbones import describe_models

    _table(describe_models())


@app.command()
def datasets() -> None:
    """List the bundled datasets (usable offline)."""
    from .data.bundled import describe_datasets

    _table(describe_datasets())


def _sets(values: list[str] | None) -> dict:
    from .config import _split

    return dict(_split(v) for v in values or [])


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "warning: " if record.levelno >= logging.WARNING else "adaptlab: "
        return prefix + record.getMessage()


def _click_exceptions() -> tuple[type, type, type, type]:
    """typer >= 0.20 vendors click as ``typer._click``; older typer uses click itself."""
    try:
        from typer._click import exceptions as ex
    except ImportError:
        from click import exceptions as ex
    return ex.ClickException, typer.Exit, typer.Abort, getattr(ex, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 130 interrupted)."""
    ClickException, ClickExit, Abort, NoArgsIsHelp = _click_exceptions()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    logger = logging.getLogger("adaptlab")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if os.environ.get("RANK", "0") == "0" else logging.WARNING)
    logger.propagate = False
    _quiet_libraries()
    try:
        code = app(args=argv, prog_name="adaptlab", standalone_mode=False)
    except AdaptlabError as e:
        typer.echo(f"error: {e}", err=True)
        return 2
    except NoArgsIsHelp:
        return 0  # help was printed
    except ClickException as e:  # usage errors: unknown option, missing argument, bad value
        command = getattr(getattr(e, "ctx", None), "command_path", "adaptlab")
        typer.echo(f"error: {e.format_message()} (see {command} --help)", err=True)
        return 2
    except (KeyboardInterrupt, Abort):
        code = 130
    except ClickExit as e:
        code = e.exit_code
    except BrokenPipeError:
        return 0
    if code == 130:  # typer turns Ctrl-C into exit code 130 in non-standalone mode
        typer.echo("interrupted: rerun the same command with --output <its folder> --resume to continue", err=True)
    return code if isinstance(code, int) else 0
