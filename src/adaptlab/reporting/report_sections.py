"""Sections of the comparison report beyond the main table: forgetting,
distillation (student vs teacher) and domain-adaptive pretraining (A/B).

Each section appears only when a run in the comparison has the data for it
(``forgetting``, ``distill`` or ``dapt`` blocks in its metrics.json).
"""

from __future__ import annotations

from typing import Any


def _f(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def forgetting_section(runs: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in runs if r.get("forgetting")]
    if not rows:
        return []
    lines = [
        "## Forgetting",
        "",
        "Each backbone measured on adaptlab's fixed reference set (Hamlet passages, question/answer pairs; "
        "unrelated to the task) before and after training. Text loss: the checkpoint's own LM head "
        "(– when it ships none). Pairs: cosine similarity of mean-pooled embeddings; a strategy that leaves "
        "the backbone untouched shows exactly 0.",
        "",
        "| run | text loss before → after | pair-similarity Δ (mean abs) | similarity rank corr. | embedding distance | contrastive loss Δ |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        block = r["forgetting"]
        text, pairs = block.get("text_loss") or {}, block.get("pairs") or {}
        loss = f"{text['before']:.4f} → {text['after']:.4f}" if text else "–"
        lines.append(
            f"| {r.get('run', r['strategy'])} | {loss} | {_f(pairs.get('similarity_change'), '{:.4f}')} | "
            f"{_f(pairs.get('similarity_spearman'), '{:.4f}')} | {_f(pairs.get('embedding_distance'), '{:.4f}')} | "
            f"{_f(pairs.get('contrastive_loss_change'), '{:+.4f}')} |"
        )
    return ["", *lines]


def extra_sections(runs: list[dict[str, Any]]) -> list[str]:
    """Every optional section, in order."""
    return [*distill_section(runs), *dapt_section(runs), *forgetting_section(runs)]


def distill_section(runs: list[dict[str, Any]]) -> list[str]:
    """Student vs teacher: accuracy kept, parameters saved, inference speed (same eval rows, same process)."""
    rows = [r for r in runs if r.get("distill")]
    if not rows:
        return []
    lines = [
        "## Distillation: student vs teacher",
        "",
        "| model | backbone | accuracy | share of teacher accuracy | parameters | fewer parameters | inference examples/s | latency (ms, batch 1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["distill"]
        name = r.get("run", r["strategy"])
        t_acc, s_acc = d["teacher_accuracy"], r["eval"]["accuracy"]
        ti, si = d["teacher_inference"], d["student_inference"]
        lines.append(f"| teacher of {name} ({d['teacher_strategy']}) | {d['teacher_backbone']} | {t_acc:.4f} | 100% | "
                     f"{d['teacher_params']:,} | – | {ti['examples_per_second']:.1f} | {ti['latency_ms']:.1f} |")
        lines.append(f"| {name} | {r['backbone']} | {s_acc:.4f} | {s_acc / max(t_acc, 1e-9):.1%} | {d['student_params']:,} | "
                     f"{1 - d['student_params'] / d['teacher_params']:.0%} | {si['examples_per_second']:.1f} | {si['latency_ms']:.1f} |")
    return ["", *lines, "", "Soft labels at temperature T mixed with the hard labels (Hinton et al. 2015); feature "
            "matching where `hidden_weight` > 0 (TinyBERT). For scale: DistilBERT kept 97 % of BERT's GLUE score "
            "with 40 % fewer parameters. Speeds are measured one after the other in the same process."]


def dapt_section(runs: list[dict[str, Any]]) -> list[str]:
    """Domain-adaptive pretraining: the stage's perplexity, and the task with vs without it."""
    stages = {r.get("run"): r for r in runs if r.get("dapt")}
    if not stages:
        return []
    lines = [
        "## Domain-adaptive pretraining",
        "",
        "| stage | backbone | objective | method | corpus | documents / blocks | held-out perplexity before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in stages.items():
        d = r["dapt"]
        lines.append(f"| {name} | {r['backbone']} | {d['objective']} | {d['method']} | {d['corpus']} | "
                     f"{d['documents']:,} / {d['train_blocks']:,}+{d['eval_blocks']:,} | "
                     f"{_f(d['perplexity_before'], '{:.2f}')} → {d['perplexity_after']:.2f} |")
    pairs = []
    for r in runs:
        stage = stages.get(str(r.get("backbone", "")).lstrip("@")) if str(r.get("backbone", "")).startswith("@") else None
        if stage and r["eval"].get("accuracy") is not None:
            twin = next((o for o in runs if o["strategy"] == r["strategy"] and o["backbone"] == stage["backbone"]
                         and o.get("run") != r.get("run") and o["eval"].get("accuracy") is not None), None)
            if twin:
                pairs.append((twin, r))
    if pairs:
        lines += ["", "| strategy | accuracy without the stage | with it | difference |", "|---|---|---|---|"]
        for plain, adapted in pairs:
            a, b = plain["eval"]["accuracy"], adapted["eval"]["accuracy"]
            lines.append(f"| {plain['strategy']} ({plain.get('run')} vs {adapted.get('run')}) | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    return ["", *lines, "", "Before: the general backbone (with a fresh MLM head trained alone first when the "
            "checkpoint ships none); after: the adapted one, on the same held-out blocks and masks."]
