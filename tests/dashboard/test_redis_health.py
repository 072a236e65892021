"""``/health`` and ``/metrics`` while Redis refuses writes (issue 27, item 8): the real dashboard under uvicorn, a
real redis-server of the test's own filled up (``maxmemory`` + ``noeviction``), points handed to its Redis writer as
the pipeline would. Before, ``/health`` said ok and ``/metrics`` connected while every write failed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import FULL_MESSAGE as MESSAGE
from tests.redis_helpers import RedisServer, fill_up, tracked_frame

pytestmark = pytest.mark.timeout(180)


def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def metric(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def test_health_is_degraded_with_the_reason_and_metrics_count_the_failures(tmp_path, tiny_checkpoint: Path,
                                                                           free_port: int):
    server = RedisServer(tmp_path / "redis").start()
    settings = dashboard_settings(tiny_checkpoint, server.url, "health", tmp_path / "data", free_port)
    settings.redis.retry_max_s = 0.3
    settings.redis.points_per_s = 0
    try:
        with LiveServer(settings) as live:
            service = live.app.state.service
            sink = service.redis_sink
            t0 = time.time()

            def feed(frames: range) -> None:
                async def run() -> None:
                    for i in frames:
                        await sink.handle(tracked_frame("gate", i, t0 + i * 0.1, [1]))

                live.call(lambda: asyncio.ensure_future(run()))

            health = httpx.get(f"{live.url}/health", timeout=5).json()
            assert health["status"] == "ok" and health["reason"] is None
            fill_up(server.url, full=True)
            feed(range(20))
            wait_for(lambda: sink.write_errors >= 3)
            health = httpx.get(f"{live.url}/health", timeout=5).json()
            assert health["status"] == "degraded" and health["redis"] is True
            assert health["reason"] == f"Redis refuses writes ({MESSAGE}); points wait in the journal"
            writer = health["redis_writer"]
            assert writer["refusing"] == MESSAGE and writer["write_errors"] >= 3 and writer["buffered"] == 20
            text = httpx.get(f"{live.url}/metrics", headers=AUTH, timeout=5).text
            assert metric(text, "deepfer_redis_connected") == 1.0  # it answers...
            assert metric(text, "deepfer_redis_write_refused") == 1.0  # ...but refuses
            assert metric(text, "deepfer_redis_write_errors_total") >= 3
            assert "deepfer_redis_last_error_timestamp_seconds{error=" in text and "maxmemory" in text

            fill_up(server.url, full=False)
            wait_for(lambda: sink.buffer_depth == 0)
            health = httpx.get(f"{live.url}/health", timeout=5).json()
            assert health["status"] == "ok" and health["redis_writer"]["written"] == 20
            text = httpx.get(f"{live.url}/metrics", headers=AUTH, timeout=5).text
            assert metric(text, "deepfer_redis_write_refused") == 0.0
    finally:
        server.stop()
