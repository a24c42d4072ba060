"""Sections of the comparison report beyond the main table: forgetting, and
each strategy's own (``report_section``: distillation's student vs teacher,
domain-adaptive pretraining's A/B).

Each section appears only when a run in the comparison has the data for it
(a ``forgetting`` block, or the strategy's block in its metrics.json).
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
    """Every optional section, in order: each strategy's own (its ``report_section`` hook, for the block it
    writes into metrics.json: distillation, domain-adaptive pretraining), then forgetting."""
    from ..strategies import discover

    own = [line for cls in discover().values() for line in getattr(cls, "report_section", lambda runs: [])(runs)]
    return [*own, *forgetting_section(runs)]
