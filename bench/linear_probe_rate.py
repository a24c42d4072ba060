"""The linear probe's default learning rate, checked on several datasets (issue 26).

On the 3-class Drugs.com reviews held out for checking, ``linear_probe`` with the range test's rate ended at
the majority class where the former fixed 1e-2 learned. Each dataset here is run both ways, MiniLM-L6, seed 42,
everything else at its default: the range test's rate and a fixed 1e-2.

    .venv/bin/python bench/linear_probe_rate.py          # ~3 min alone on 2 cores (downloads the drug reviews once)

Writes bench/results/linear_probe_rate.{md,json}.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _fair import write
from default_costs import drugs

import adaptlab

ROOT = Path(__file__).resolve().parents[1]
WAYS = {"range test": {"train.lr": "auto"}, "fixed 1e-2": {"train.lr": 1e-2}}


def datasets(cache: Path) -> dict[str, dict]:
    train, test = drugs(cache)
    return {"drugs (3 classes, long reviews)": {"data": str(train), "eval_data": str(test), "data.max_length": 128},
            "rotten-tomatoes (2 classes, snippets)": {"data": "rotten-tomatoes", "data.max_train": 2000, "data.max_eval": 500},
            "bbc-news (5 topics, articles)": {"data": "bbc-news", "data.max_train": 600, "data.max_eval": 300, "data.max_length": 256},
            "sentiment-en 400 (2 classes, small)": {"data": "sentiment-en", "data.max_train": 400, "data.max_eval": 500}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "runs" / "default-costs-data")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in datasets(args.cache).items():
            spec = dict(spec)
            data, eval_data = spec.pop("data"), spec.pop("eval_data", None)
            for way, more in WAYS.items():
                out = Path(tmp) / f"{len(rows)}"
                m = adaptlab.train(strategy="linear_probe", backbone="minilm-l6", data=data, eval_data=eval_data, output=str(out),
                                   overrides={**spec, **more, "train.progress": False}).metrics
                s = m["train_settings"]
                rows.append({"data": name, "way": way, "accuracy": m["eval"]["accuracy"], "macro_f1": m["eval"].get("macro_f1"),
                             "majority": m.get("majority_baseline"), "did_not_learn": bool(m.get("did_not_learn")), "lr": s["lr"],
                             "epochs_run": s["epochs_run"], "best_epoch": m["best_epoch"], "seconds": m["timing"]["total"]})
                print(rows[-1], flush=True)
    lines = ["# The linear probe's default rate on four datasets (`bench/linear_probe_rate.py`)", "",
             "MiniLM-L6, seed 42, epochs: auto (the probe's own: at least 1,500 steps, at most 50 epochs, patience 5).", "",
             "| data | way | accuracy | macro-F1 | majority | did not learn | lr | epochs run | kept epoch | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['data']} | {r['way']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['majority']:.3f} | "
              f"{'yes' if r['did_not_learn'] else 'no'} | {r['lr']:.2e} | {r['epochs_run']} | {r['best_epoch']} | {r['seconds']:.0f} |"
              for r in rows]
    write("linear_probe_rate", "\n".join(lines), {"rows": rows}, started)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
