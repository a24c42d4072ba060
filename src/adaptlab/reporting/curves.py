"""Learning curves over the number of labelled examples per class.

One comparison (``compare``) per k, with ``data.target_shots = k`` (labelled
target-language examples added to the source-language training set: the
cross-lingual few-shot curve, k = 0 being zero-shot transfer) or
``data.shots = k`` (a few-shot training set). Every other setting, the
evaluation sets included, is the same at every k, so the columns are comparable.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdaptlabError
from ..training.runner import _as_dict, fields_to_overrides, partial_folder
from .comparison import compare, load_recipe


@dataclass
class Curve:
    folder: Path
    rows: list[dict[str, Any]]
    """One row per (run, k): the accuracy on every evaluation set."""


def shots_curve(
    shots: list[int],
    strategies: list[str] | None = None,
    recipe: str | Path | dict[str, Any] | None = None,
    *,
    target: bool = True,
    overrides: list[str] | dict[str, Any] | None = None,
    output: str | Path | None = None,
    **fields: Any,
) -> Curve:
    """Compare ``strategies`` at each k of ``shots``; write ``curve.json`` and ``curve.md``."""
    if not shots:
        raise AdaptlabError("give at least one number of shots, e.g. 0,8,32")
    key = "data.target_shots" if target else "data.shots"
    more = {**fields_to_overrides(fields), **_as_dict(overrides)}
    data = load_recipe(recipe)
    out = Path(output or Path("runs") / f"curve-{time.strftime('%Y%m%d-%H%M%S')}")
    work = partial_folder(out)
    if out.exists() or work.exists():
        raise AdaptlabError(f"folder {out} (or {work}) already exists; choose another --output")
    work.mkdir(parents=True)
    rows = []
    for k in shots:
        result = compare(strategies, data, overrides={**more, key: k}, output=work / f"k{k}")
        for r in result.rows:
            sets = r.get("eval_sets") or {"eval": r["eval"]}
            rows.append({"run": r["run"], "k": k, **{name: s.get("accuracy") for name, s in sets.items()},
                         "train_examples": r["train_examples"], "train_seconds": r["train_seconds"]})
    (work / "curve.json").write_text(json.dumps({"key": key, "shots": shots, "rows": rows}, indent=2), encoding="utf-8")
    (work / "curve.md").write_text("\n".join(curve_table(rows, key)) + "\n", encoding="utf-8")
    os.replace(work, out)
    return Curve(out, rows)


def curve_table(rows: list[dict[str, Any]], key: str) -> list[str]:
    """Accuracy per evaluation set, one row per (run, k)."""
    sets = [c for c in rows[0] if c not in ("run", "k", "train_examples", "train_seconds")]
    what = "labelled target examples per class added" if key.endswith("target_shots") else "training examples per class"
    lines = [f"# Accuracy against k ({what})", "",
             "| strategy | k | train examples | " + " | ".join(sets) + " | train time (s) |",
             "|---|---|---|" + "---|" * len(sets) + "---|"]
    for r in sorted(rows, key=lambda r: (r["run"], r["k"])):
        cells = [f"{r[s]:.4f}" if r.get(s) is not None else "" for s in sets]
        lines.append(f"| {r['run']} | {r['k']} | {r['train_examples']} | " + " | ".join(cells) + f" | {r['train_seconds']:.1f} |")
    return lines
