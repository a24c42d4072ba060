"""Dynamic batching for ``adaptlab serve``: requests that arrive within a short window run as one batch.

A model answers a batch of prompts in little more time than one on a GPU, and in much less than one after the
other on a CPU's matrix units, so a server that waits a few milliseconds for company answers more requests per
second (the idea of TF-Serving's and Triton's dynamic batchers). What may share a batch is decided by a key
(the run, the kind of request, the sampling settings). Jobs run one batch at a time on one worker thread --
the model is not shared between threads -- while the event loop goes on accepting requests. The queue is
bounded (a full queue is refused at once: the client can retry, the server does not pile up work it cannot
finish) and every job has a deadline (a job still queued at its deadline is dropped, not run).

Written here rather than taken from a library: the maintained ones batch for their own runtimes (Triton,
TorchServe, Ray Serve) or not at all (FastAPI, Starlette); this is one asyncio queue and one thread.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")
R = TypeVar("R")


class Busy(Exception):
    """The queue is full: the request is refused (HTTP 503) instead of waiting."""


@dataclass
class Job(Generic[P, R]):
    key: Hashable
    payload: P
    future: asyncio.Future[R] = field(repr=False)


class Batcher(Generic[P, R]):
    """``await batcher.submit(key, payload, timeout)``: the result of ``run(key, payloads)`` for this payload.

    ``run`` gets the payloads of one batch (all with the same key, at most ``max_batch``) and returns one result
    per payload; it runs on the worker thread. An exception it raises goes to every job of that batch.
    """

    def __init__(self, run: Callable[[Hashable, list[P]], list[R]], window_s: float = 0.01, max_batch: int = 16,
                 max_queue: int = 256):
        self.run, self.window_s, self.max_batch = run, window_s, max_batch
        self.queue: asyncio.Queue[Job[P, R]] = asyncio.Queue(max_queue)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="adaptlab-model")
        self.batches = 0
        """Batches run so far (``/health`` reports it; the load test reads it)."""
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)

    @property
    def queued(self) -> int:
        return self.queue.qsize()

    async def submit(self, key: Hashable, payload: P, timeout: float) -> R:
        """The payload's result; raises :class:`Busy` at once when the queue is full, ``TimeoutError`` after
        ``timeout`` seconds (the job is then dropped if it has not started)."""
        return await self.wait(self.enqueue(key, payload), timeout)

    def enqueue(self, key: Hashable, payload: P) -> Job[P, R]:
        """Queue a job (or raise :class:`Busy`); :meth:`wait` for its result."""
        job: Job[P, R] = Job(key, payload, asyncio.get_running_loop().create_future())
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Busy(f"{self.queue.maxsize} requests are waiting; retry later") from None
        return job

    async def wait(self, job: Job[P, R], timeout: float) -> R:
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except (TimeoutError, asyncio.CancelledError):
            job.future.cancel()  # still queued: the worker skips it; already running: its result is dropped
            raise

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect(loop)
            for key, group in _groups(jobs, self.max_batch):
                group = [j for j in group if not j.future.done()]
                if not group:
                    continue
                try:
                    results = await loop.run_in_executor(self.executor, self.run, key, [j.payload for j in group])
                except Exception as e:  # noqa: BLE001 -- handed to the requests, which answer with it
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(e)
                    continue
                self.batches += 1
                for j, result in zip(group, results):
                    if not j.future.done():
                        j.future.set_result(result)

    async def _collect(self, loop: asyncio.AbstractEventLoop) -> list[Job[P, R]]:
        """The first waiting job, and whatever else arrives within the window, until one key has a full batch."""
        jobs = [await self.queue.get()]
        counts = Counter([jobs[0].key])
        deadline = loop.time() + self.window_s
        while counts.most_common(1)[0][1] < self.max_batch:
            wait = deadline - loop.time()
            if wait <= 0 and self.queue.empty():
                break
            try:
                jobs.append(self.queue.get_nowait() if not self.queue.empty() else await asyncio.wait_for(self.queue.get(), wait))
            except TimeoutError:
                break
            counts[jobs[-1].key] += 1
        return jobs


def _groups(jobs: list[Job[P, R]], size: int) -> list[tuple[Hashable, list[Job[P, R]]]]:
    """Jobs by key, first come first served, each group at most ``size``."""
    by_key: dict[Hashable, list[Job[P, R]]] = {}
    for job in jobs:
        by_key.setdefault(job.key, []).append(job)
    return [(key, group[i : i + size]) for key, group in by_key.items() for i in range(0, len(group), size)]
