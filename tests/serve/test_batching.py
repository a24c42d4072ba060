"""The dynamic batcher: requests within the window share a batch by key, at most ``max_batch``; a full queue is
refused at once; a job past its deadline is dropped before it runs; a failing batch fails each of its requests."""

from __future__ import annotations

import asyncio
import time

import pytest

from adaptlab.serve.batching import Batcher, Busy


def recorder(delay: float = 0.0):
    seen: list[tuple[str, list[int]]] = []

    def run(key, payloads):
        time.sleep(delay)
        seen.append((key, list(payloads)))
        if key == "boom":
            raise RuntimeError("model failed")
        return [p * 10 for p in payloads]

    return run, seen


def test_concurrent_requests_share_batches_by_key():
    run, seen = recorder()

    async def main():
        batcher = Batcher(run, window_s=0.05, max_batch=3)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit("a" if i % 2 else "b", i, 5) for i in range(8)))
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [i * 10 for i in range(8)]
    assert sorted(p for _, ps in seen for p in ps) == list(range(8))
    assert all(len(ps) <= 3 and all(("a" if p % 2 else "b") == key for p in ps) for key, ps in seen)
    assert len(seen) == 4  # 4 "a" and 4 "b" in batches of at most 3


def test_one_at_a_time_when_the_batch_is_one():
    run, seen = recorder()

    async def main():
        batcher = Batcher(run, window_s=0, max_batch=1)
        batcher.start()
        await asyncio.gather(*(batcher.submit("a", i, 5) for i in range(5)))
        await batcher.stop()

    asyncio.run(main())
    assert [len(ps) for _, ps in seen] == [1] * 5


def test_a_full_queue_is_refused_and_a_late_job_never_runs():
    run, seen = recorder(delay=0.3)

    async def main():
        batcher = Batcher(run, window_s=0, max_batch=1, max_queue=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit("a", 1, 5))
        await asyncio.sleep(0.05)  # the worker took job 1 and is busy with it
        late = asyncio.ensure_future(batcher.submit("a", 2, 0.1))  # waits in the queue past its deadline
        await asyncio.sleep(0)
        with pytest.raises(Busy, match="1 requests are waiting"):
            await batcher.submit("a", 3, 5)
        with pytest.raises(TimeoutError):
            await late
        assert await first == 10
        await asyncio.sleep(0.1)
        await batcher.stop()

    asyncio.run(main())
    assert [ps for _, ps in seen] == [[1]]


def test_a_failing_batch_fails_each_of_its_requests_and_the_worker_goes_on():
    run, _ = recorder()

    async def main():
        batcher = Batcher(run, window_s=0.05, max_batch=4)
        batcher.start()
        failed = await asyncio.gather(batcher.submit("boom", 1, 5), batcher.submit("boom", 2, 5), return_exceptions=True)
        after = await batcher.submit("a", 3, 5)
        await batcher.stop()
        return failed, after

    failed, after = asyncio.run(main())
    assert all(isinstance(e, RuntimeError) for e in failed) and after == 30
