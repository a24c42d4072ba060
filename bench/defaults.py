"""Old fixed defaults against the new data-driven ones (lr range test, epochs from data size).

For each strategy: the run with the defaults adaptlab had before (each strategy's fixed
learning rate and epochs) and the run with no lr or epochs given (``auto``), on the same
split. Prints a markdown table: chosen lr, epochs, optimiser steps, accuracy, the range
test's seconds, and whether the run was flagged as not learning.

    python bench/defaults.py rotten-tomatoes --max-train 2000 --max-eval 500
    python bench/defaults.py bbc-news --max-train 600 --max-eval 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

OLD = {"linear_probe": (1e-2, 30), "top_k": (1e-4, 3), "full": (5e-5, 3), "lora": (1e-3, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--max-eval", type=int, default=500)
    parser.add_argument("--strategies", default=",".join(OLD))
    parser.add_argument("--output", default="runs/bench-defaults")
    args = parser.parse_args()
    import adaptlab

    out = Path(args.output) / f"{args.data}-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = []
    for name in args.strategies.split(","):
        for label, train in (("old", {"train__lr": OLD[name][0], "train__epochs": OLD[name][1]}), ("new", {})):
            started = time.perf_counter()
            m = adaptlab.train(strategy=name, data=args.data, output=str(out / f"{name}-{label}"), data__max_train=args.max_train,
                               data__max_eval=args.max_eval, train__progress=False, **train).metrics
            s = m["train_settings"]
            rows.append({"strategy": name, "defaults": label, "lr": s["lr"], "lr from": s["lr_source"], "epochs": s["epochs_run"],
                         "steps": s["optimizer_steps"], "accuracy": m["eval"]["accuracy"], "macro_f1": m["eval"]["macro_f1"],
                         "majority": m["majority_baseline"], "did not learn": bool(m["did_not_learn"]),
                         "range test s": (s["lr_find"] or {}).get("seconds"), "train s": m["train_seconds"],
                         "wall s": round(time.perf_counter() - started, 1)})
            print(json.dumps(rows[-1]), flush=True)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.2e}" if k == "lr" else f"{v:.4f}" if isinstance(v, float) and k in ("accuracy", "macro_f1", "majority")
                                else str(v) for k, v in r.items()) + " |")


if __name__ == "__main__":
    main()
