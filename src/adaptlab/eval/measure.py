"""Measuring a run the same way for every strategy: memory, size, versions."""

from __future__ import annotations

import ctypes
import gc
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch


class PeakMemory:
    """Peak memory while the block runs, in MB.

    On GPU: ``torch.cuda.max_memory_allocated``. On CPU: the process's resident
    set, sampled every 20 ms by a background thread, after returning freed heap
    pages to the system so that a previous run in the same process (``compare``)
    does not inflate the next one's peak.
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        gc.collect()
        _trim_heap()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            process = psutil.Process()
            self.peak_bytes = process.memory_info().rss

            def sample() -> None:
                while not self._stop.wait(self.interval):
                    self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            import psutil

            self.peak_bytes = max(self.peak_bytes, psutil.Process().memory_info().rss)
        else:
            self.peak_bytes = torch.cuda.max_memory_allocated()

    @property
    def mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def versions() -> dict[str, str]:
    out = {}
    for name in ("adaptlab", "torch", "transformers", "peft", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


@torch.inference_mode()
def inference_speed(module: torch.nn.Module, rows: list[dict], pad_token_id: int, device: torch.device,
                    batch_size: int = 32, latency_examples: int = 32) -> dict[str, float]:
    """Batched throughput (examples/s) and single-example latency (median ms) on ``rows``."""
    import statistics
    import time

    from ..data.batching import BucketBatchSampler, Collate, lengths_of
    from .metrics import model_inputs

    module.to(device).eval()
    collate = Collate(pad_token_id)

    def run(batch_rows: list[dict]) -> None:
        module(**{k: v.to(device) for k, v in model_inputs(collate(batch_rows)).items()})
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(rows[:batch_size])  # warm-up
    started = time.perf_counter()
    for ids in BucketBatchSampler(lengths_of(rows), batch_size, shuffle=False):
        run([rows[i] for i in ids])
    throughput = len(rows) / max(time.perf_counter() - started, 1e-9)
    latencies = []
    for row in rows[:latency_examples]:
        tick = time.perf_counter()
        run([row])
        latencies.append(time.perf_counter() - tick)
    return {"examples_per_second": round(throughput, 1), "latency_ms": round(statistics.median(latencies) * 1000, 2)}
