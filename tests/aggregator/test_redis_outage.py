"""Redis down is a normal event: a real redis-server is stopped mid-run and started again; no point is lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from aggregator.journal import Journal
from aggregator.redis_sink import RedisSink
from aggregator.timeseries import EmotionTimeSeries
from tests.redis_helpers import (
    RedisServer,
    free_port,
    redis_settings,
    tracked_frame,
)

pytestmark = pytest.mark.timeout(90)


async def wait_until(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def offsets(series, t0: float) -> list[float]:
    """Point times relative to t0, to 10 ms (stream ids keep milliseconds)."""
    return [round(p.t - t0, 2) for p in series]


async def produce(sink: RedisSink, t0: float, frames: range, tracks: list[int]) -> None:
    for i in frames:
        await sink.handle(tracked_frame("gate", i, t0 + i * 0.1, tracks))
        await asyncio.sleep(0.002)  # let the writer run, as the pipeline would


@pytest.mark.e2e  # a redis-server of its own
async def test_stop_and_restart_redis_mid_run_every_point_arrives_in_order(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    settings = redis_settings("outage", points_per_s=0, buffer_max=25, batch_size=10, connect_timeout_s=0.3,
                              retry_max_s=0.3)
    sink = RedisSink(settings, server.url, tmp_path / "data")
    t0 = time.time()
    try:
        await produce(sink, t0, range(0, 30), [1, 2])
        server.stop()  # mid-run: the writer may be in the middle of a batch
        await produce(sink, t0, range(30, 130), [1, 2])  # 200 points while down: 8 times buffer_max
        assert not sink.connected
        assert sink.buffer_depth >= 200
        spilled = sorted((tmp_path / "data" / "journal" / sink.run_id).glob("*.jsonl"))
        assert len(spilled) >= 7, "a small buffer_max must spill to the journal"

        server.start()  # same port, same data
        await wait_until(lambda: sink.buffer_depth == 0, 30)
        assert sink.connected
        assert not list((tmp_path / "data" / "journal" / sink.run_id).glob("*.jsonl"))
        await produce(sink, t0, range(130, 140), [1, 2])
        await sink.close()

        ts = EmotionTimeSeries.from_url(server.url, settings)
        try:
            expected = [round(i * 0.1, 2) for i in range(140)]
            for track in (1, 2):
                series = await ts.series("gate", f"{sink.run_id}-{track}")
                assert offsets(series, t0) == expected  # every point, once, in order
            people = await ts.people("gate")
            assert sorted(p.points for p in people) == [140, 140]
            minutes = await ts.rollup("gate", "minute", t0, t0 + 14)
            assert sum(b.points for b in minutes) == 280
        finally:
            await ts.aclose()
    finally:
        server.stop()


async def test_points_left_at_exit_are_written_by_the_next_run_exactly_once(redis_url, key_prefix, tmp_path):
    data = tmp_path / "data"
    settings = redis_settings(key_prefix, points_per_s=0, buffer_max=15, close_timeout_s=0.3, connect_timeout_s=0.3)
    down = RedisSink(settings, f"redis://127.0.0.1:{free_port()}", data)  # nothing listens there
    t0 = time.time()
    await produce(down, t0, range(40), [5])
    await down.close()  # Redis never came: everything stays on disk
    segments = sorted((data / "journal" / down.run_id).glob("*.jsonl"))
    assert sum(len(Journal.read(s)) for s in segments) == 40

    # As if the earlier run had crashed right after writing its first segment: those points must not repeat.
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        await ts.write(Journal.read(segments[0]))
        up = RedisSink(settings, redis_url, data)
        assert up.buffer_depth == 40  # adopted
        assert await up.flush(10)
        await up.close()
        series = await ts.series("gate", f"{down.run_id}-5")
        assert offsets(series, t0) == [round(i * 0.1, 2) for i in range(40)]
        assert (await ts.people("gate"))[0].points == 40
        assert not (data / "journal" / down.run_id).exists() and not (data / "journal" / up.run_id).exists()
    finally:
        await ts.aclose()


async def test_a_running_sinks_journal_is_not_adopted(tmp_path):
    settings = redis_settings("x", points_per_s=0, buffer_max=2, close_timeout_s=0.1, connect_timeout_s=0.2)
    url = f"redis://127.0.0.1:{free_port()}"
    first = RedisSink(settings, url, tmp_path)
    await produce(first, time.time(), range(5), [1])
    second = RedisSink(settings, url, tmp_path)
    try:
        assert second.buffer_depth == 0 and first.buffer_depth == 5
    finally:
        await second.close()
        await first.close()


async def test_a_damaged_journal_segment_does_not_block_the_others(redis_url, key_prefix, tmp_path):
    settings = redis_settings(key_prefix, points_per_s=0, buffer_max=10, close_timeout_s=0.2, connect_timeout_s=0.3)
    down = RedisSink(settings, f"redis://127.0.0.1:{free_port()}", tmp_path)
    t0 = time.time()
    await produce(down, t0, range(20), [4])
    await down.close()
    folder = tmp_path / "journal" / down.run_id
    first, *others = sorted(folder.glob("*.jsonl"))  # spilled when Redis was seen down, then by time and size
    assert others
    lost = len(Journal.read(first))
    first.write_text('{"not": "a point"}\n')  # damaged: its points are gone, the later ones must still arrive

    up = RedisSink(settings, redis_url, tmp_path)
    assert await up.flush(10)
    await up.close()
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        assert offsets(await ts.series("gate", f"{down.run_id}-4"), t0) == [round(i * 0.1, 2) for i in range(lost, 20)]
    finally:
        await ts.aclose()
    assert len(list((tmp_path / "journal" / up.run_id).glob("*.bad"))) == 1
