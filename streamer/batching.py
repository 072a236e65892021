"""Micro-batching across cameras: many small awaits become one model call in a worker thread.

Detection and classification both cost far less per item in a batch. A
``Batcher`` takes requests from every camera, starts a call as soon as
``max_items`` are waiting or the first has waited ``max_wait_s``, runs it off
the event loop, and hands each caller its own part of the answer. A request may
carry a shorter wait of its own (an interactive source that favours delay over
batch size): the batch then starts by that request's deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """What a batcher did: calls, items and busy time, and (over the last ``samples`` batches) how full its batches
    were and how long items waited for them, so a run shows whether cross-camera batches fill before their deadline.
    """

    calls: int = 0
    items: int = 0
    busy_s: float = 0.0  # time spent inside the batched function (in its worker thread, from its start)
    max_items: int = 0  # the batcher's capacity (0: several batchers summed)
    closed_full: int = 0  # batches started because max_items were waiting (or the next request did not fit)
    closed_deadline: int = 0  # batches started by the deadline (max_wait_s, or a request's own) before filling
    samples: int = 2048
    sizes: deque[int] = field(default_factory=deque, repr=False)  # items per recent call
    waits_s: deque[float] = field(default_factory=deque, repr=False)  # per recent item: submitted -> its call began
    fills_s: deque[float] = field(default_factory=deque, repr=False)  # per recent call: first submitted -> closed

    def __post_init__(self) -> None:
        self.sizes = deque(self.sizes, maxlen=self.samples)
        self.waits_s = deque(self.waits_s, maxlen=self.samples)
        self.fills_s = deque(self.fills_s, maxlen=self.samples)

    def record(self, size: int, full: bool, fill_s: float, waits_s: Sequence[float]) -> None:
        self.closed_full += full
        self.closed_deadline += not full
        self.sizes.append(size)
        self.fills_s.append(fill_s)
        self.waits_s.extend(waits_s)

    @classmethod
    def merged(cls, *parts: BatchStats) -> BatchStats:
        """Several batchers' figures as one (the detector's two kinds of batch)."""
        out = cls(sum(p.calls for p in parts), sum(p.items for p in parts), sum(p.busy_s for p in parts),
                  closed_full=sum(p.closed_full for p in parts),
                  closed_deadline=sum(p.closed_deadline for p in parts),
                  samples=sum(p.samples for p in parts))
        for p in parts:
            out.sizes.extend(p.sizes)
            out.waits_s.extend(p.waits_s)
            out.fills_s.extend(p.fills_s)
        return out

    def to_dict(self) -> dict:
        sizes = np.asarray(self.sizes, dtype=np.float64)
        waits = np.asarray(self.waits_s, dtype=np.float64) * 1000
        fills = np.asarray(self.fills_s, dtype=np.float64) * 1000

        def pct(values: np.ndarray, q: float, digits: int = 1) -> float | None:
            return round(float(np.percentile(values, q)), digits) if values.size else None

        mean = self.items / self.calls if self.calls else 0.0
        return {"calls": self.calls, "items": self.items, "busy_s": round(self.busy_s, 3),
                "mean_batch": round(mean, 2),
                "ms_per_item": round(1000 * self.busy_s / self.items, 2) if self.items else 0.0,
                "batch_p50": pct(sizes, 50), "batch_p95": pct(sizes, 95),
                "batch_max": int(sizes.max()) if sizes.size else None,
                "max_items": self.max_items or None,
                "fill": round(mean / self.max_items, 3) if self.max_items and self.calls else None,
                "closed_full": self.closed_full, "closed_deadline": self.closed_deadline,
                "wait_ms_mean": round(float(waits.mean()), 2) if waits.size else None,
                "wait_ms_p95": pct(waits, 95, 2),
                "fill_ms_mean": round(float(fills.mean()), 2) if fills.size else None,
                "fill_ms_p95": pct(fills, 95, 2)}


@dataclass
class _Request(Generic[T, R]):
    item: T
    size: int
    future: asyncio.Future = field(repr=False)
    deadline: float | None = None  # monotonic time by which a batch holding this request must start
    submitted: float = field(default_factory=time.monotonic)


class Batcher(Generic[T, R]):
    """``await submit(item)`` returns ``fn([... item ...])[i]``; ``fn`` runs in ``executor``, at most ``concurrency``
    calls at a time (each from its own loop on the one queue: on a CPU one call at a time left a core idle while a
    batch's Python and small tensor ops ran, docs/performance.md)."""

    def __init__(self, name: str, fn: Callable[[list[T]], Sequence[R]], max_items: int, max_wait_s: float,
                 executor: Executor, size_of: Callable[[T], int] = lambda _: 1, samples: int = 2048,
                 concurrency: int = 1):
        if concurrency < 1:
            raise ValueError(f"{name} batcher: concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.name = name
        self.fn = fn
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.executor = executor
        self.size_of = size_of
        self.stats = BatchStats(max_items=max_items, samples=samples)
        self._queue: asyncio.Queue[_Request[T, R]] | None = None
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        if not self._tasks:
            self._queue = asyncio.Queue()
            self._tasks = [asyncio.create_task(self._loop(), name=f"batcher-{self.name}-{i}")
                           for i in range(self.concurrency)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        while self._queue is not None and not self._queue.empty():
            req = self._queue.get_nowait()
            if not req.future.done():
                req.future.set_exception(RuntimeError(f"{self.name} batcher stopped"))

    async def submit(self, item: T, max_wait_s: float | None = None) -> R:
        """``fn``'s answer for ``item``; ``max_wait_s`` (if shorter than the batcher's) bounds its wait for a batch."""
        assert self._queue is not None, "start() the batcher first"
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + max_wait_s if max_wait_s is not None else None
        await self._queue.put(_Request(item, self.size_of(item), future, deadline))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        carry: _Request | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch, size = [first], first.size
            deadline = min(first.submitted + self.max_wait_s, first.deadline or float("inf"))
            while size < self.max_items:
                try:
                    req = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        req = await asyncio.wait_for(self._queue.get(), left)
                    except TimeoutError:
                        break
                if size + req.size > self.max_items:
                    carry = req  # keeps batches within max_items; it starts the next one (this one is full)
                    break
                batch.append(req)
                size += req.size
                if req.deadline is not None:
                    deadline = min(deadline, req.deadline)
            full = carry is not None or size >= self.max_items
            closed = time.monotonic()
            live = [r for r in batch if not r.future.cancelled()]
            if not live:
                continue
            began: list[float] = []

            def call(items: list[T], began: list[float] = began) -> Sequence[R]:
                began.append(time.monotonic())  # in the worker: the wait includes a busy executor's queue
                return self.fn(items)

            try:
                results = await loop.run_in_executor(self.executor, call, [r.item for r in live])
            except BaseException as exc:  # callers must never wait forever, even when we are cancelled
                error = exc if isinstance(exc, Exception) else RuntimeError(f"{self.name} batcher stopped")
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(error)
                if not isinstance(exc, Exception):
                    raise
                continue
            finally:
                self.stats.calls += 1
                self.stats.items += size
                start = began[0] if began else closed
                self.stats.busy_s += time.monotonic() - start
                self.stats.record(size, full, closed - first.submitted, [start - r.submitted for r in live])
            for r, res in zip(live, results):
                if not r.future.done():
                    r.future.set_result(res)
