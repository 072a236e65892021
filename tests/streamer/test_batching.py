"""The cross-camera micro-batcher on a real function in a real worker thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from streamer.batching import Batcher, BatchStats

pytestmark = pytest.mark.timeout(30)


async def test_requests_are_grouped_up_to_max_items_and_answered_in_place():
    calls: list[list[int]] = []
    threads = set()

    def square_rows(items: list[np.ndarray]) -> list[np.ndarray]:
        calls.append([len(i) for i in items])
        threads.add(threading.get_ident())
        return [i ** 2 for i in items]

    with ThreadPoolExecutor(1) as pool:
        batcher = Batcher("square", square_rows, max_items=5, max_wait_s=0.05, executor=pool, size_of=len)
        batcher.start()
        inputs = [np.arange(n) for n in (1, 2, 3, 1, 2, 4, 1)]
        outputs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.stop()
    for x, y in zip(inputs, outputs):
        np.testing.assert_array_equal(y, x ** 2)
    assert all(sum(c) <= 5 for c in calls) and sum(map(len, calls)) == len(inputs) and len(calls) < len(inputs)
    assert threading.get_ident() not in threads  # never on the event loop's thread
    assert batcher.stats.items == 14 and batcher.stats.calls == len(calls)


async def test_a_lone_request_waits_at_most_max_wait_and_errors_reach_every_caller():
    def fail(items):
        raise ValueError(f"bad batch of {len(items)}")

    with ThreadPoolExecutor(1) as pool:
        ok = Batcher("one", lambda items: [x + 1 for x in items], 8, 0.02, pool)
        bad = Batcher("bad", fail, 8, 0.02, pool)
        ok.start(), bad.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await ok.submit(41) == 42
        assert loop.time() - started < 1.0
        results = await asyncio.gather(bad.submit(1), bad.submit(2), return_exceptions=True)
        await ok.stop(), await bad.stop()
    assert [str(r) for r in results] == ["bad batch of 2"] * 2


async def test_a_request_with_its_own_shorter_wait_starts_its_batch_at_once():
    """An interactive source (the live demo) does not wait for a batch to fill; a camera's frame would."""
    calls: list[list[int]] = []

    def record(items):
        calls.append(list(items))
        return items

    with ThreadPoolExecutor(1) as pool:
        batcher = Batcher("wait", record, max_items=8, max_wait_s=0.5, executor=pool)
        batcher.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await batcher.submit(1, max_wait_s=0.0) == 1
        urgent = loop.time() - started
        started = loop.time()
        assert await batcher.submit(2) == 2
        patient = loop.time() - started
        # a patient request already waiting is taken along when an urgent one arrives
        patient_task = asyncio.ensure_future(batcher.submit(3))
        await asyncio.sleep(0.05)
        started = loop.time()
        assert await batcher.submit(4, max_wait_s=0.0) == 4
        assert await patient_task == 3
        together = loop.time() - started
        await batcher.stop()
    assert urgent < 0.2 and patient >= 0.45
    assert together < 0.2 and calls[-1] == [3, 4]


async def test_stats_say_whether_batches_filled_or_met_their_deadline():
    """The figures `deepfer bench pipeline` reports per batcher: sizes (mean, p50, p95, max, fill), how many batches
    started full or at the deadline, and how long items waited."""
    with ThreadPoolExecutor(1) as pool:
        batcher = Batcher("fill", lambda items: items, max_items=4, max_wait_s=0.1, executor=pool, samples=64)
        batcher.start()
        assert await asyncio.gather(*(batcher.submit(i) for i in range(8))) == list(range(8))  # two full batches
        assert await batcher.submit(8) == 8  # alone: waits for the deadline
        stats = batcher.stats.to_dict()
        await batcher.stop()
    assert (stats["calls"], stats["closed_full"], stats["closed_deadline"]) == (3, 2, 1), stats
    assert stats["mean_batch"] == 3.0 and stats["batch_max"] == 4 and stats["batch_p50"] == 4.0
    assert stats["max_items"] == 4 and stats["fill"] == 0.75
    assert stats["fill_ms_p95"] >= 90 and max(batcher.stats.waits_s) >= 0.09  # the lone item waited its 100 ms
    assert 0 <= stats["wait_ms_mean"] < stats["wait_ms_p95"] and len(batcher.stats.waits_s) == 9
    merged = BatchStats.merged(batcher.stats, batcher.stats).to_dict()
    assert merged["calls"] == 6 and merged["batch_max"] == 4 and merged["max_items"] is None


async def test_with_concurrency_two_batches_run_at_once_and_every_answer_reaches_its_caller():
    """``pipeline.batch_concurrency``: a slow call no longer holds the next batch back (two worker threads busy at
    once), results still go to the requests they belong to, and stop() ends every loop."""
    both_running = threading.Barrier(2, timeout=5)

    def slow_double(items: list[int]) -> list[int]:
        both_running.wait()  # passes only while two calls run at the same time
        return [2 * x for x in items]

    with ThreadPoolExecutor(2) as pool:
        batcher = Batcher("two", slow_double, max_items=2, max_wait_s=0.01, executor=pool, concurrency=2)
        batcher.start()
        assert len(batcher._tasks) == 2
        outputs = await asyncio.gather(*(batcher.submit(x) for x in range(4)))
        await batcher.stop()
    assert outputs == [0, 2, 4, 6] and batcher.stats.calls == 2
    assert batcher._tasks == []
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        Batcher("none", slow_double, 2, 0.01, ThreadPoolExecutor(1), concurrency=0)
