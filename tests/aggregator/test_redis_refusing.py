"""Redis that answers but refuses writes (issue 27, item 8): a real redis-server of the test's own, full
(``maxmemory`` + ``noeviction``). The writer counts the failures, says why in its stats, logs one line when it starts
refusing and one when it takes writes again (no traceback per retry), and loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from aggregator.redis_sink import RedisSink
from tests.redis_helpers import FULL_MESSAGE as MESSAGE
from tests.redis_helpers import RedisServer, fill_up, redis_settings, tracked_frame

pytestmark = [pytest.mark.timeout(90), pytest.mark.e2e]  # a redis-server of its own


async def wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_full_redis_is_counted_explained_and_logged_once(tmp_path, caplog):
    server = RedisServer(tmp_path / "redis").start()
    settings = redis_settings("full", points_per_s=0, batch_size=10, retry_max_s=0.3, connect_timeout_s=0.5)
    sink = RedisSink(settings, server.url, tmp_path / "data")
    caplog.set_level(logging.DEBUG, logger="aggregator.redis_sink")
    t0 = time.time()
    try:
        for i in range(10):
            await sink.handle(tracked_frame("gate", i, t0 + i * 0.1, [1, 2]))
        await wait_until(lambda: sink.written == 20, 20)
        assert sink.stats()["write_errors"] == 0 and sink.refusing is None

        fill_up(server.url, full=True)
        for i in range(10, 40):
            await sink.handle(tracked_frame("gate", i, t0 + i * 0.1, [1, 2]))
            await asyncio.sleep(0.05)
        await wait_until(lambda: sink.write_errors >= 5, 20)  # several retries, 0.3 s apart
        stats = sink.stats()
        assert stats["connected"] and stats["refusing"] and stats["refusing"] == MESSAGE
        assert stats["last_error"] == stats["refusing"] and "\n" not in stats["last_error"]
        assert stats["last_error_at"] >= t0 and stats["buffered"] == 60 and stats["dropped"] == 0

        fill_up(server.url, full=False)
        await wait_until(lambda: sink.buffer_depth == 0, 30)
        assert sink.refusing is None and sink.written == 80 and sink.last_error  # the last error stays for metrics
    finally:
        await sink.close()
        server.stop()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelno for r in loud] == [logging.ERROR], [r.getMessage() for r in loud]  # one line, not per retry
    assert "refuses writes" in loud[0].getMessage() and MESSAGE in loud[0].getMessage() and loud[0].exc_info is None
    assert sum("takes writes again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO) == 1
