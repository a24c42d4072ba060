"""Memory of N runs served over one backbone (``load_many``) against N separately loaded models.

    python bench/many_adapters.py RUN_DIR [RUN_DIR ...]

Each mode runs in a fresh subprocess; it reports the distinct tensor bytes the
loaded modules hold (exact: what a GPU holds, where every copy is device memory)
and the growth of the process's resident memory while loading. On CPU the RSS
figure understates separate loads: transformers 5 leaves frozen weights as views
of a private memory map of the safetensors file, so N loads of the same file share
page-cache pages until something writes to them (moving to a device, a dtype cast,
training); N fully fine-tuned models have N different files and share nothing.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys


def measure(mode: str, runs: list[str]) -> dict:
    import psutil
    import torch

    import adaptlab
    from adaptlab.eval.measure import _trim_heap
    from adaptlab.serve.many import load_many, unique_bytes

    torch.set_num_threads(1)
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    if mode == "shared":
        modules = [p.module for p in load_many(runs).predictors.values()]
    else:
        modules = [adaptlab.load(run).module for run in runs]
    gc.collect()
    _trim_heap()  # hand freed temporary copies back, so RSS shows what stays
    return {"mode": mode, "runs": len(runs), "tensor_mb": unique_bytes(modules) / 2**20,
            "rss_growth_mb": (process.memory_info().rss - before) / 2**20}


def main(runs: list[str]) -> None:
    rows = []
    for mode in ("separate", "shared"):
        out = subprocess.run([sys.executable, __file__, "--measure", mode, *runs], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| loading | runs | distinct tensor memory (MB) | RSS growth (MB) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['runs']} | {r['tensor_mb']:.1f} | {r['rss_growth_mb']:.1f} |")


if __name__ == "__main__":
    if sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3:])))
    else:
        main(sys.argv[1:])
