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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    calls: int = 0
    items: int = 0
    busy_s: float = 0.0  # time spent inside the batched function (in its worker thread)

    def to_dict(self) -> dict:
        return {"calls": self.calls, "items": self.items, "busy_s": round(self.busy_s, 3),
                "mean_batch": round(self.items / self.calls, 2) if self.calls else 0.0,
                "ms_per_item": round(1000 * self.busy_s / self.items, 2) if self.items else 0.0}


@dataclass
class _Request(Generic[T, R]):
    item: T
    size: int
    future: asyncio.Future = field(repr=False)
    deadline: float | None = None  # monotonic time by which a batch holding this request must start


class Batcher(Generic[T, R]):
    """``await submit(item)`` returns ``fn([... item ...])[i]``; ``fn`` runs in ``executor``, one call at a time."""

    def __init__(self, name: str, fn: Callable[[list[T]], Sequence[R]], max_items: int, max_wait_s: float,
                 executor: Executor, size_of: Callable[[T], int] = lambda _: 1):
        self.name = name
        self.fn = fn
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.executor = executor
        self.size_of = size_of
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Request[T, R]] | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._loop(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
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
            deadline = min(time.monotonic() + self.max_wait_s, first.deadline or float("inf"))
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
                    carry = req  # keeps batches within max_items; it starts the next one
                    break
                batch.append(req)
                size += req.size
                if req.deadline is not None:
                    deadline = min(deadline, req.deadline)
            live = [r for r in batch if not r.future.cancelled()]
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.fn, [r.item for r in live])
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
                self.stats.busy_s += time.perf_counter() - started
            for r, res in zip(live, results):
                if not r.future.done():
                    r.future.set_result(res)
