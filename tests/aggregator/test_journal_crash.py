"""A crash during a Redis outage loses at most about a second of points: a child process writes through the real
RedisSink to a redis-server of the test's own, the server is stopped, the child is killed with SIGKILL, and the next
start writes every journaled point exactly once (issue 27, item 2)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aggregator.journal import Journal
from aggregator.redis_sink import RedisSink
from aggregator.timeseries import EmotionTimeSeries
from tests.redis_helpers import RedisServer, redis_settings

pytestmark = [pytest.mark.timeout(120), pytest.mark.e2e]  # redis-servers of its own
REPO = Path(__file__).resolve().parents[2]

# The child: a RedisSink fed frames on command ("A B" on stdin: frames A..B-1, 'gap' seconds apart in real time);
# it prints one line per frame handled and "status <connected> <written>" after each command. buffer_max is left at
# its default (10,000): only the time-based journaling can put these points on disk.
CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from tests.redis_helpers import redis_settings, tracked_frame
from aggregator.redis_sink import RedisSink

async def main(url, data, prefix, t0, gap):
    settings = redis_settings(prefix, points_per_s=0, connect_timeout_s=0.3, retry_max_s=0.3)
    sink = RedisSink(settings, url, Path(data), run_id="crashrun")
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        a, b = map(int, line.split())
        for i in range(a, b):
            await sink.handle(tracked_frame("crash", i, t0 + i * 0.1, [1, 2]))
            print("frame", i, flush=True)
            await asyncio.sleep(gap)
        await asyncio.sleep(0.05)
        print("status", sink.connected, sink.written, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])))
"""


class Child:
    def __init__(self, url: str, data: Path, prefix: str, t0: float, gap: float):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.p = subprocess.Popen([sys.executable, "-c", CHILD, url, str(data), prefix, repr(t0), str(gap)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.last_frame = -1

    def send(self, a: int, b: int) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(f"{a} {b}\n")
        self.p.stdin.flush()

    def status(self) -> tuple[bool, int]:
        assert self.p.stdout is not None
        while True:
            line = self.p.stdout.readline()
            assert line, "the child exited"
            word, *rest = line.split()
            if word == "frame":
                self.last_frame = int(rest[0])
            else:
                return rest[0] == "True", int(rest[1])

    def kill9(self) -> None:
        os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=10)


def journaled(data: Path) -> int:
    return sum(len(Journal.read(f)) for f in (data / "journal" / "crashrun").glob("*.jsonl"))


async def replay_and_check(server: RedisServer, data: Path, prefix: str, t0: float, frames: int) -> None:
    """A new start on the same data folder writes the journal; every frame's point arrives once, in order."""
    settings = redis_settings(prefix, points_per_s=0)
    sink = RedisSink(settings, server.url, data)
    assert await sink.flush(20)
    await sink.close()
    again = RedisSink(settings, server.url, data)  # a second start finds nothing left to replay
    assert again.buffer_depth == 0
    await again.close()
    ts = EmotionTimeSeries.from_url(server.url, settings)
    try:
        for track in (1, 2):
            series = await ts.series("crash", f"crashrun-{track}")
            assert [round(p.t - t0, 2) for p in series] == [round(i * 0.1, 2) for i in range(frames)]
        assert sorted(p.points for p in await ts.people("crash")) == [frames, frames]
    finally:
        await ts.aclose()
    assert not list((data / "journal").glob("*/*.jsonl"))


def wait_written(child: Child, points: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        child.send(0, 0)
        connected, written = child.status()
        if connected and written == points:
            return
        assert time.monotonic() < deadline, (connected, written)
        time.sleep(0.1)


async def test_kill_9_during_an_outage_after_the_last_frame_loses_nothing(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    data, t0 = tmp_path / "data", time.time()
    child = Child(server.url, data, "crash1", t0, gap=0.03)
    try:
        child.send(0, 30)
        child.status()
        wait_written(child, 60)  # Redis up: 30 frames x 2 people written
        server.stop()
        child.send(30, 130)  # 200 points over about 3 s while Redis is away
        await asyncio.sleep(2.0)
        assert journaled(data) > 0, "points must reach the journal while the outage lasts, not after buffer_max"
        connected, _ = child.status()
        assert not connected
        await asyncio.sleep(1.5)  # more than journal_every_s after the last frame
        assert journaled(data) == 200
        child.kill9()
        server.start()
        await replay_and_check(server, data, "crash1", t0, 130)
    finally:
        if child.p.poll() is None:
            child.kill9()
        server.stop()


async def test_kill_9_while_frames_still_come_loses_at_most_about_a_second(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    data, t0 = tmp_path / "data", time.time()
    child = Child(server.url, data, "crash2", t0, gap=0.02)
    try:
        child.send(0, 20)
        child.status()
        wait_written(child, 40)
        server.stop()
        child.send(20, 1000)  # about 20 s of frames; killed long before the end
        await asyncio.sleep(3.0)
        child.kill9()
        assert child.p.stdout is not None
        for line in child.p.stdout:  # what it had printed before it died
            if line.startswith("frame"):
                child.last_frame = int(line.split()[1])
        on_disk = journaled(data) // 2
        assert on_disk >= 20, "three seconds of outage must have reached the journal"
        # Frames handled more than about a second before the kill are on disk (50 frames/s here, with margin).
        assert 20 + on_disk >= child.last_frame - 100, (on_disk, child.last_frame)
        server.start()
        await replay_and_check(server, data, "crash2", t0, 20 + on_disk)
    finally:
        if child.p.poll() is None:
            child.kill9()
        server.stop()


async def test_points_refused_by_a_full_redis_go_to_the_journal_too(tmp_path):
    """Redis up but refusing writes (maxmemory with noeviction): the points are on disk within about a second, and
    all arrive once Redis takes writes again."""
    import redis as sync_redis

    from tests.redis_helpers import tracked_frame

    server = RedisServer(tmp_path / "redis").start()
    admin = sync_redis.Redis.from_url(server.url)
    data, t0 = tmp_path / "data", time.time()
    settings = redis_settings("full", points_per_s=0, connect_timeout_s=0.3, retry_max_s=0.3)
    sink = RedisSink(settings, server.url, data, run_id="crashrun")
    try:
        for i in range(10):
            await sink.handle(tracked_frame("crash", i, t0 + i * 0.1, [1, 2]))
        assert await sink.flush(10)
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        for i in range(10, 60):
            await sink.handle(tracked_frame("crash", i, t0 + i * 0.1, [1, 2]))
            await asyncio.sleep(0.03)
        await asyncio.sleep(1.5)
        assert journaled(data) == 100, "refused points must reach the journal, not wait in memory"
        admin.config_set("maxmemory", "0")
        assert await sink.flush(20)
        await sink.close()
        await replay_and_check(server, data, "full", t0, 60)
    finally:
        admin.close()
        server.stop()
