"""``report.html``: the comparison report as one self-contained page (plots embedded, no network).

The page is report.md rendered by markdown-it-py (the CommonMark parser rich already brings),
with every image inlined as a data URI, and three figures report.md does not have: the task's
metric against trainable parameters, training time and peak memory with the Pareto front drawn
(the runs no other run beats on both), and each run's training-loss curve from its
``steps.jsonl``. :func:`screenshot` renders it in a headless Chromium (``chromium`` from the
system packages) to ``report.png``: how the tests check that the page loads.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger("adaptlab")

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:12.5px;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto}code{background:#f5f5f5;padding:0 3px}
h1,h2,h3{border-bottom:1px solid #eee;padding-bottom:.2em}figure{margin:1em 0}figcaption{color:#555;font-size:12px}
"""
COSTS = (("trainable_params", "trainable parameters", True), ("train_seconds", "training time (s)", True),
         ("peak_memory_mb", "peak memory (MB)", False))


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: at most the cost and at least the score, better in one."""
    front = []
    for i, (c, s) in enumerate(points):
        if not any((c2 <= c and s2 >= s) and (c2 < c or s2 > s) for j, (c2, s2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def pareto_figure(rows: list[dict[str, Any]]) -> str | None:
    """The primary metric against each cost, the Pareto front joined by a line."""
    plt = _pyplot()
    rows = [r for r in rows if r.get("score") is not None]
    if plt is None or not rows:
        return None
    fig, axes = plt.subplots(1, len(COSTS), figsize=(5 * len(COSTS), 3.8))
    for ax, (key, label, log_scale) in zip(axes, COSTS):
        mine = [r for r in rows if r.get(key) is not None]
        points = [(max(float(r[key]), 1.0), float(r["score"])) for r in mine]
        for r, (x, y) in zip(mine, points):
            ax.scatter(x, y, color="C0")
            ax.annotate(r["run"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        front = pareto(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], color="C1", label="Pareto front")
        ax.set_xscale("log" if log_scale else "linear")
        ax.set_xlabel(label)
        ax.set_ylabel(rows[0]["metric"])
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def curves_figure(folder: Path, rows: list[dict[str, Any]]) -> str | None:
    """Training loss against optimiser steps, one line per run (its ``steps.jsonl``)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    drawn = 0
    for r in rows:
        path = folder / r["run"] / "steps.jsonl"
        if not path.is_file():
            continue
        steps = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        steps = [s for s in steps if s.get("loss") is not None]
        if steps:
            ax.plot([s["step"] for s in steps], [s["loss"] for s in steps], label=r["run"], linewidth=1.2)
            drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


def _inline_images(body: str, folder: Path) -> str:
    def inline(match: re.Match) -> str:
        path = folder / html.unescape(match.group(1))
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'

    return re.sub(r'src="([^":]+\.png)"', inline, body)


def write_html(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """``folder/report.html`` from ``folder/report.md`` and the flat result rows."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render((folder / "report.md").read_text(encoding="utf-8"))
    body = _inline_images(body, folder)
    figures = [(pareto_figure(rows), "The primary metric against what each run cost; the line joins the runs no other run "
                                     "beats on both (the Pareto front)."),
               (curves_figure(folder, rows), "Training loss per optimiser step (steps.jsonl of each run).")]
    extra = "".join(f'<figure><img src="{src}" alt="figure"><figcaption>{html.escape(text)}</figcaption></figure>'
                    for src, text in figures if src)
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>adaptlab comparison</title>'
            f"<style>{STYLE}</style></head><body>{body}<h2>Figures</h2>{extra}</body></html>\n")
    path = folder / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(n)), None)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2400) -> bool:
    """A headless-Chromium screenshot of ``page`` (best effort: False without Chromium or when it fails)."""
    browser = chromium()
    if browser is None:
        return False
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
               f"--screenshot={png.resolve()}", page.resolve().as_uri()]
    try:
        subprocess.run(command, capture_output=True, timeout=90, check=True)
    except (subprocess.SubprocessError, OSError) as e:
        log.info("report.png not made: %s", e)
        return False
    return png.is_file()
