"""The comparison tables docs/transfer.md and docs/classification.md show, each from the `adaptlab` commands a user
would run (issue 26: these were copied from a run by hand).

    .venv/bin/python bench/compare_tables.py fewshot-seeds          # ~6 min alone on 2 cores
    .venv/bin/python bench/compare_tables.py task-aware              # ~17 min (tuning included)
    .venv/bin/python bench/compare_tables.py task-aware-256          # ~31 min
    .venv/bin/python bench/compare_tables.py recommend-estimates     # ~31 min (the demo and BBC News)

Each experiment runs its commands into ``bench/runs/<name>/`` (a finished comparison is reused, an interrupted one
resumed; delete the folder to measure again) and writes ``bench/results/<name>.{md,json}``: the tables are the
report's own (``reporting/seeds.py``'s over-seeds table and recommendation, ``reporting/estimate.py``'s estimated
-> measured table), so what the docs show is what ``adaptlab compare`` printed. The wall time recorded is each
command's own, measured when it ran.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _fair import write

from adaptlab.training.runner import partial_folder

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "runs"
CLI = [sys.executable, "-m", "adaptlab"]
TASK_AWARE_PLAIN = "full,full+augment,full+llrd+l2sp,lora,lora+augment,lora+llrd"


@dataclass(frozen=True)
class Experiment:
    title: str
    """What the table shows, in one line (the results file's heading)."""
    commands: tuple[tuple[str, ...], ...]
    """The adaptlab commands, each writing its ``-o`` folder under bench/runs/<name>/ (``{run}`` is that folder)."""
    table: str
    """``seeds``: the over-seeds table with forgetting columns; ``estimates``: recommend's estimate beside compare's."""


EXPERIMENTS = {
    "fewshot-seeds": Experiment(
        "`adaptlab compare fewshot --seeds 3`: MiniLM-L6, 8 Rotten Tomatoes reviews per class, 300 held out; each seed "
        "draws its own 16", (("compare", "fewshot", "--seeds", "3", "-o", "{run}/compare"),), "seeds"),
    "task-aware": Experiment(
        "`adaptlab compare task-aware`: MiniLM-L6, 64 Rotten Tomatoes reviews per class, 400 held out; three seeds, "
        "each drawing its own 64 per class; tuning included",
        (("compare", "task-aware", "-o", "{run}/compare"),), "seeds"),
    "task-aware-256": Experiment(
        "`adaptlab compare task-aware --set data.shots=256`, the tuned entries left out: 256 reviews per class",
        (("compare", "task-aware", "--set", "data.shots=256", "--strategies", TASK_AWARE_PLAIN, "-o", "{run}/compare"),), "seeds"),
    "recommend-estimates": Experiment(
        "`adaptlab recommend` then `adaptlab compare --plan`: the plan's estimates beside what the comparison measured",
        (("recommend", "demo", "-o", "{run}/demo-plan.yaml"), ("compare", "--plan", "{run}/demo-plan.yaml", "-o", "{run}/demo"),
         ("recommend", "--data", "bbc-news", "-o", "{run}/bbc-plan.yaml"),
         ("compare", "--plan", "{run}/bbc-plan.yaml", "-o", "{run}/bbc")), "estimates"),
}
DATA_NAMES = {"demo": "bundled demo (Rotten Tomatoes)", "bbc": "BBC News (5 classes)"}


def run_commands(run: Path, exp: Experiment) -> dict[str, float]:
    """Run what is not finished yet; return each command's wall seconds (recorded in ``run/walls.json``)."""
    record = run / "walls.json"
    walls: dict[str, float] = json.loads(record.read_text()) if record.is_file() else {}
    run.mkdir(parents=True, exist_ok=True)
    for command in exp.commands:
        args = [a.format(run=run) for a in command]
        key = " ".join(command).replace("{run}/", "")
        out = Path(args[args.index("-o") + 1])
        done = out.is_file() if out.suffix == ".yaml" else (out / "report.md").is_file()
        if done:  # measured earlier (its wall time is in walls.json when this script ran it)
            continue
        resume = ["--resume"] if partial_folder(out).is_dir() else []
        print("$ adaptlab " + " ".join([*args, *resume]), flush=True)
        started = time.perf_counter()
        subprocess.run([*CLI, *args, *resume], check=True, cwd=ROOT)
        walls[key] = round(time.perf_counter() - started, 1)
        record.write_text(json.dumps(walls, indent=2))
    return walls


def seeds_table(folder: Path) -> tuple[list[str], dict]:
    """The report's over-seeds table and recommendation, with each group's forgetting averaged over its seeds."""
    from adaptlab.reporting.report import flat
    from adaptlab.reporting.seeds import recommend_over_seeds, seeds_section, summarise

    runs = json.loads((folder / "results.json").read_text())["runs"]
    groups = summarise([flat(r) for r in runs])
    lines = [line for line in seeds_section(groups) if not line.startswith("## ")][2:]  # no heading: the page has its own
    lines += ["", recommend_over_seeds(groups), "",
              "Forgetting, mean over the seeds (adaptlab's reference passages and sentence pairs, before vs after; 0: untouched):",
              "", "| strategy | sentence-pair similarity Δ | embedding moved |", "|---|---|---|"]
    forgetting: dict[str, list[dict]] = {}
    for r in runs:
        forgetting.setdefault(r.get("group") or r["run"], []).append((r.get("forgetting") or {}).get("pairs") or {})
    for group, pairs in forgetting.items():
        cells = [statistics.fmean(p[k] for p in pairs) if all(p.get(k) is not None for p in pairs) else None
                 for k in ("similarity_change", "embedding_distance")]
        lines.append(f"| {group} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells) + " |")
    summary = {g["run"]: {"mean": g["mean"], "std": g["std"], "by_seed": g["by_seed"], "train_seconds": g["train_seconds"],
                          "did_not_learn": g.get("did_not_learn", [])} for g in groups}
    return lines, {"groups": summary, "forgetting": forgetting}


def estimates_table(run: Path) -> tuple[list[str], dict]:
    """reporting/estimate.py's table of each comparison, one data column in front."""
    from adaptlab.reporting.estimate import estimates_section
    from adaptlab.reporting.report import flat

    import yaml

    lines: list[str] = []
    data: dict[str, dict] = {}
    footer: list[str] = []
    for name, label in DATA_NAMES.items():
        estimates = yaml.safe_load((run / f"{name}-plan.yaml").read_text())["plan"]["estimates"]
        results = json.loads((run / name / "results.json").read_text())["runs"]
        rows = [flat(r) for r in results]
        table = estimates_section(estimates, rows)
        header = next(i for i, line in enumerate(table) if line.startswith("| strategy"))
        if not lines:
            lines = ["| data (training rows) " + table[header], "|---" + table[header + 1]]
        cell = f"{label}, {results[0]['train_examples']:,} rows"
        for line in table[header + 2:]:
            if line.startswith("| "):
                lines.append(f"| {cell} " + line)
                cell = ""
        footer = [line for line in table[header + 2:] if line and not line.startswith("|")]
        data[name] = {"estimates": estimates, "measured": {r["run"]: {k: r.get(k) for k in ("train_seconds", "epochs_run",
                      "peak_memory_mb", "artifact_bytes")} for r in rows}}
    return lines + ["", *footer], data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=list(EXPERIMENTS))
    args = parser.parse_args()
    for name in args.names:
        exp, run, started = EXPERIMENTS[name], RUNS / name, time.perf_counter()
        walls = run_commands(run, exp)
        lines, data = seeds_table(run / "compare") if exp.table == "seeds" else estimates_table(run)
        minutes = sum(walls.values()) / 60
        text = "\n".join([f"# {exp.title}", "", f"Regenerate: `.venv/bin/python bench/compare_tables.py {name}` "
                          f"({minutes:.1f} min of commands on this machine: " + "; ".join(f"`adaptlab {k}` {v / 60:.1f} min"
                                                                                        for k, v in walls.items()) + ").", "",
                          *lines])
        write(name.replace("-", "_"), text, {"walls": walls, **data}, started)
        print(f"bench/results/{name.replace('-', '_')}.md", flush=True)


if __name__ == "__main__":
    main()
