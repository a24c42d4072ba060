"""The comparison report: results.json, results.csv, report.md and plots.

The recommendation rule is deliberately simple and stated in the report: take
the strategy best on the task's primary metric (accuracy, chrF), then prefer the
cheapest one (fewest training seconds) within the task's ``tolerance`` of it.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from ..eval.forgetting import summary as forgetting_summary
from ..tasks import task_of
from .estimate import estimates_section
from .html import write_html
from .judge import JUDGE_COLUMNS, judge_section
from .noise import noise_section, within_noise_of_best
from .report_sections import extra_sections
from .seeds import recommend_over_seeds, seeds_section, summarise

log = logging.getLogger("adaptlab")

SHARES = ("accuracy", "macro_f1", "likelihood_accuracy", "reward_accuracy")  # shown as percentages
"""Metrics that are shares (shown as percentages); the others (chrF, BLEU) are points."""

COMMON = [
    ("learned", "learned?", "{}"),
    ("lr", "lr", "{:.1e}"),
    ("lr_source", "lr from", "{}"),
    ("epochs_run", "epochs", "{}"),
    ("optimizer_steps", "steps", "{}"),
    ("trainable_params", "trainable params", "{:,}"),
    ("trainable_share", "trainable share", "{:.2%}"),
    ("train_seconds", "train time (s)", "{:.1f}"),
    ("train_examples_per_second", "examples/s", "{:.1f}"),
    ("train_tokens_per_second", "tokens/s", "{:,.0f}"),
    ("peak_memory_mb", "peak memory (MB)", "{:,.0f}"),
    ("artifact_bytes", "size on disk", "{}"),
    ("forgetting_text_loss", "forgetting: text-loss Δ", "{:+.4f}"),
    ("forgetting_similarity", "forgetting: pair-similarity Δ", "{:.4f}"),
]


def columns(task_type: Any) -> list[tuple[str, str, str]]:
    """The report's columns: the run, the task's metrics, then what every run measures."""
    return [("run", "strategy", "{}"), *task_type.columns, *COMMON]


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """One flat record per run (what results.csv holds); ``score`` is the task's primary metric."""
    task_type = task_of(row)
    out = {k: row.get(k) for k, _, _ in columns(task_type)}
    out.update({k: v for k, v in row["eval"].items() if k != "loss"}, eval_loss=row["eval"].get("loss"))
    out.update(loss=row["eval"].get("loss"), score=row["eval"].get(task_type.default_metric), metric=task_type.default_metric,
               task_type=task_type.name)
    out.update(strategy=row["strategy"], total_params=row["total_params"], epochs=row.get("epochs"), seed=row.get("seed"), split_seed=row.get("split_seed"),
               group=row.get("group") or row["run"])
    settings = row.get("train_settings") or {}
    out.update(lr=settings.get("lr"), lr_source=settings.get("lr_source"), epochs_run=settings.get("epochs_run"),
               optimizer_steps=settings.get("optimizer_steps"), lr_find_seconds=(settings.get("lr_find") or {}).get("seconds"))
    out["learned"] = "no" if row.get("did_not_learn") else "yes" if settings.get("optimizer_steps") else "–"
    out["forgetting_text_loss"], out["forgetting_similarity"] = forgetting_summary(row.get("forgetting"))
    out.update({f"judge_{k}": v for k, v in (row.get("judge") or {}).items() if k in ("win_rate", "reward")})
    for name, scores in (row.get("eval_sets") or {}).items():
        if len(row["eval_sets"]) > 1:
            out[f"{task_type.default_metric}_{name}"] = scores.get(task_type.default_metric)
    return out


def sampling_note(task: dict[str, Any]) -> str:
    """How the training set was sampled (few-shot, target-language shots), when it was."""
    notes = []
    if task.get("shots"):
        notes.append(f"few-shot: {task['shots']} training examples per class (seeded)")
    if task.get("target_shots") is not None:
        notes.append(f"{task['target_shots']} labelled examples per class of eval set `{task['target']}` added to training")
    return (" " + "; ".join(notes).capitalize() + ".") if notes else ""


def eval_set_table(runs: list[dict[str, Any]]) -> list[str]:
    """The primary metric of every run on every named evaluation set (e.g. one column per language)."""
    names = list(dict.fromkeys(n for r in runs for n in (r.get("eval_sets") or {})))
    if len(names) < 2:
        return []
    main = next(iter(runs[0]["eval_sets"]))
    task_type = task_of(runs[0])
    metric = task_type.default_metric
    header = next(h for k, h, _ in task_type.columns if k == metric)
    lines = [f"## {header[0].upper() + header[1:]} per evaluation set", "",
             f"`{main}` is the main set; every set is scored once, with the weights the validation split kept.", "",
             "| strategy | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in runs:
        sets = r.get("eval_sets") or {}
        cells = [f"{sets[n][metric]:.4f}" if n in sets and sets[n].get(metric) is not None else "" for n in names]
        lines.append(f"| {r['run']} | " + " | ".join(cells) + " |")
    return lines + [""]


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def recommend(rows: list[dict[str, Any]], tolerance: float = 0.01, tied: set[str] | None = None) -> str:
    """Rank by the task's primary metric (``score``); never a run that did not learn, whatever it cost.

    ``tied``: the runs a paired test cannot tell from the best (``noise.py``); the cheapest of them is
    recommended. Without it, the cheapest within ``tolerance`` of the best."""
    failed = [r["run"] for r in rows if r.get("learned") == "no"]
    rows = [r for r in rows if r.get("learned") != "no" and r.get("score") is not None]
    if not rows:
        return f"No recommendation: no run learned more than the majority class ({', '.join(failed)}); see below."
    metric = rows[0]["metric"]
    share = metric in SHARES
    show = (lambda v: f"{v:.1%}") if share else (lambda v: f"{metric} {v:.1f}")
    best = max(rows, key=lambda r: r["score"])
    close = [r for r in rows if r["run"] in tied or r is best] if tied is not None else [
        r for r in rows if r["score"] >= best["score"] - tolerance]
    cheap = min(close, key=lambda r: r["train_seconds"])
    text = f"Best {metric}: **{best['run']}** ({show(best['score'])})."
    if cheap is not best:
        speed = best["train_seconds"] / max(cheap["train_seconds"], 1e-9)
        size = best["artifact_bytes"] / max(cheap["artifact_bytes"], 1)
        artefact = (f"a {size:.0f}x smaller artefact" if size >= 1.5 else f"a {1 / size:.0f}x larger artefact" if size <= 1 / 1.5
                    else f"an artefact of about the same size ({human_bytes(cheap['artifact_bytes'])})")
        within = "noise" if tied is not None else f"{tolerance:.0%}" if share else f"{tolerance:g} point"
        text += (
            f" **{cheap['run']}** is within {within} of it ({show(cheap['score'])}) and trains"
            f" {speed:.1f}x faster with {artefact}: the recommendation, "
            + ("since these evaluation examples cannot tell the two apart." if tied is not None else
               "unless the last point of accuracy matters.")
        )
    elif tied is not None:
        text += " Every cheaper strategy is worse beyond noise (McNemar p < 0.05 on the same examples): the recommendation."
    else:
        text += " No cheaper strategy comes within one point of it: the recommendation."
    if failed:
        text += f" Not considered, because they did not learn: {', '.join(failed)}."
    return text


def did_not_learn_section(runs: list[dict[str, Any]]) -> list[str]:
    """Each run flagged as not learning, with its evidence and the next thing to try (``diagnosis.py``)."""
    flagged = [r for r in runs if r.get("did_not_learn")]
    if not flagged:
        return []
    lines = ["", "## Runs that did not learn", ""]
    for r in flagged:
        d = r["did_not_learn"]
        lines += [f"- **{r['run']}**: " + "; ".join(d["evidence"]) + f". Next: {d['next']}."]
    return lines


def lr_note(rows: list[dict[str, Any]]) -> list[str]:
    timed = [r for r in rows if r.get("lr_find_seconds")]
    if not timed:
        return []
    parts = ", ".join(f"{r['run']} {r['lr_find_seconds']:.0f} s" for r in timed)
    return ["", f"Learning rates from the *range test* were chosen from the loss of a few dozen steps at rising rates "
            f"(Smith 2017; the curve is in each run's `metrics.json`); the test's time is in the train time ({parts}). "
            "Epochs the recipe left unset come from the data size (at least `train.min_steps` optimiser steps), "
            "stopping early when the validation split (carved from the training data, never the evaluation data above) "
            "stops improving."]


def zero_shot_note(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    """Which trained runs beat the untrained row (a zero-shot baseline: nothing trainable), and why the others may not."""
    base = next((r for r in rows if r.get("trainable_params") == 0 and r.get("score") is not None), None)
    if base is None:
        return []
    metric = base["metric"]
    share = metric in SHARES
    show = (lambda v: f"{v:.1%}") if share else (lambda v: f"{v:.1f}")
    lines = ["## Against the zero-shot baseline", "",
             f"`{base['run']}` scores {metric} {show(base['score'])} without training: what the backbone knows before it sees an example."]
    for r, run in zip(rows, runs):
        if r is base or r.get("trainable_params") == 0 or r.get("score") is None:
            continue
        if r["score"] > base["score"]:
            gap = f"{r['score'] - base['score']:+.1%}" if share else f"{r['score'] - base['score']:+.1f} {metric}"
            lines.append(f"- **{r['run']}** beats it by {gap}.")
        else:
            lines.append(f"- **{r['run']}** does not ({show(r['score'])}) after {run.get('epochs')} epoch(s) on "
                         f"{run.get('train_examples')} examples: {_caveat(r['strategy'])}")
    return ["", *lines]


def samples_section(runs: list[dict[str, Any]]) -> list[str]:
    """Generated answers side by side for the first evaluation prompts (runs that keep ``samples``)."""
    kept = [r for r in runs if r.get("samples")]
    if not kept:
        return []
    lines = ["", "## Sample generations", "", "The first evaluation prompts, their reference and each strategy's answer (greedy).", ""]
    for i, sample in enumerate(kept[0]["samples"]):
        lines += [f"**{i + 1}.** {_one_line(sample['prompt'])}", "", "| | |", "|---|---|", f"| reference | {_one_line(sample['reference'])} |"]
        lines += [f"| {r['run']} | {_one_line(r['samples'][i]['output'])} |" for r in kept if i < len(r["samples"])]
        lines.append("")
    return lines


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    flat = flat if len(flat) <= limit else flat[:limit] + " …"
    return flat.replace("|", "\\|") or "(empty)"


def _caveat(strategy: str) -> str:
    """The strategy's own explanation of when it underperforms (its ``caveat`` attribute), if any."""
    from ..strategies import REGISTRY, discover

    discover()
    return getattr(REGISTRY.get(strategy), "caveat", None) or "too few examples or steps for it, or a learning rate that does not suit it."


def main_task(runs: list[dict[str, Any]]) -> Any:
    """The comparison's task type: the one most of its serving runs share (a tie: the last run's). Stages that make
    backbones (language modelling) and rows on another task's view of the data (GRPO on preference prompts) are
    reported beside it, never mixed into its table or its recommendation."""
    serving = [r for r in runs if task_of(r).serves] or runs
    counts = Counter(task_of(r).name for r in serving)
    top = max(counts.values())
    return next(task_of(r) for r in reversed(serving) if counts[task_of(r).name] == top)


def other_tasks_section(others: list[dict[str, Any]]) -> list[str]:
    """The runs of another task type than the comparison's, with that type's columns (not ranked with the others)."""
    if not others:
        return []
    return ["", "Runs scored as another task type (stages included): their own metrics, not ranked with the table above.", "",
            *markdown_table([flat(r) for r in others])]


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    """One table per task type among ``rows`` (a pipeline's earlier stages may be of another), in order."""
    from ..tasks import get_task_type

    lines: list[str] = []
    for kind in dict.fromkeys(r.get("task_type") or "classification" for r in rows):
        task_type = get_task_type(kind)
        mine = [r for r in rows if (r.get("task_type") or "classification") == kind]
        cols, split = columns(task_type), 1 + len(task_type.columns)
        if any(r.get("judge_reward") is not None for r in mine):  # a reward model judged the answers (judge.py)
            cols = cols[:split] + JUDGE_COLUMNS + cols[split:]
        lines += [""] if lines else []
        lines += ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "---|" * len(cols)]
        for r in mine:
            cells = [human_bytes(r[k]) if k == "artifact_bytes" else "–" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in cols]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(folder: Path, runs: list[dict[str, Any]], baseline: float | None, judged: dict[str, Any] | None = None,
                 estimates: dict[str, Any] | None = None) -> None:
    stages = runs  # every run, of the task or not (domain-adaptation stages), for the sections below
    task_type = main_task(runs)
    others = [r for r in runs if task_of(r) is not task_type and task_of(r).serves]  # e.g. GRPO on a preference recipe's prompts
    runs = [r for r in runs if task_of(r) is task_type]
    rows = [flat(r) for r in runs]
    first = runs[0]
    majority = f" Majority-class baseline accuracy: {baseline:.4f}." if baseline is not None else ""
    (folder / "results.json").write_text(json.dumps({"majority_baseline": baseline, "judge": judged or None, "runs": stages}, indent=2),
                                         encoding="utf-8")
    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))  # runs may differ (a reward model's)
        writer.writeheader()
        writer.writerows(rows)
    plots = _plots(folder, rows, baseline)
    groups = summarise(rows)
    over_seeds = bool(groups) and max(len(g["by_seed"]) for g in groups) > 1
    per_example = [{**f, "eval_correct": r.get("eval_correct")} for f, r in zip(rows, runs)]
    close = None if over_seeds else within_noise_of_best([r for r in per_example if r.get("learned") != "no"])
    tied = {r["run"] for r in close} if close is not None else None
    lines = [
        "# adaptlab comparison",
        "",
        f"Backbone `{first['backbone']}`, data `{first['task']['source']}`: {max(r['train_examples'] for r in runs)} training and "
        f"{first['eval_examples']} evaluation examples, seed {first['seed']}, same split for every strategy, "
        f"device {first['device']}.{majority}" + sampling_note(first["task"]),
        "",
        *markdown_table(rows),
        *other_tasks_section(others),
        "",
        *eval_set_table(runs),
        *seeds_section(groups),
        *([] if over_seeds else noise_section(per_example)),
        "",
        "## Recommendation",
        "",
        recommend_over_seeds(groups) if over_seeds else recommend(rows, task_type.tolerance, tied),
        *zero_shot_note(rows, runs),
        *did_not_learn_section(runs),
        *lr_note(rows),
        "",
        "Trainable parameters are counted after each strategy prepared the model; time is training only "
        "(feature caching included, evaluation excluded); memory is the peak while the strategy ran; size on "
        "disk is the saved artefact. Per-run details are in each run folder's `metrics.json`.",
    ]
    lines += judge_section(judged or {}, runs + others)
    lines += estimates_section(estimates, rows)
    lines += samples_section(runs)
    lines += extra_sections(stages)
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots]] if plots else []
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_html(folder, rows)


def _plots(folder: Path, rows: list[dict[str, Any]], baseline: float) -> list[Path]:
    """Accuracy against trainable parameters and against training time (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: report without plots (pip install 'adaptlab[plots]')")
        return []
    paths = []
    rows = [r for r in rows if r.get("score") is not None]  # a reward model's run has no policy metric to place
    if not rows:
        return []
    metric = rows[0]["metric"]
    for key, label, name in (("trainable_params", "trainable parameters", f"{metric}_vs_params"),
                             ("train_seconds", "training time (s)", f"{metric}_vs_time")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            x = max(r[key], 1)
            ax.scatter(x, r["score"])
            ax.annotate(r["run"], (x, r["score"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if baseline is not None:
            ax.axhline(baseline, linestyle="--", color="grey", label="majority class")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(rows[0]["metric"])
        if baseline is not None:
            ax.legend(loc="lower right")
        fig.tight_layout()
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
