"""EmotionTimeSeries and RedisSink against a real Redis: key schema, reads for the dashboard, retention, events."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from aggregator.keys import KeySchema
from aggregator.redis_sink import RedisSink
from aggregator.timeseries import EmotionTimeSeries
from deepfer_core.types import EMOTIONS
from tests.redis_helpers import redis_settings, tracked_frame

pytestmark = pytest.mark.timeout(60)


async def feed(sink: RedisSink, camera: str, t0: float, fps: float, seconds: float, tracks: list[int], label="happy",
               seq0: int = 0) -> int:
    n = int(round(seconds * fps))
    for i in range(n):
        await sink.handle(tracked_frame(camera, seq0 + i, t0 + i / fps, tracks, label))
    return n


async def test_people_series_and_rollups(redis_url, key_prefix, tmp_path):
    settings = redis_settings(key_prefix, points_per_s=0)
    sink = RedisSink(settings, redis_url, tmp_path)
    t0 = float(int(time.time()) // 60 * 60)  # start of a minute, so the roll-up buckets are predictable
    await feed(sink, "door", t0, 10, 3.0, [1, 2], "happy")  # 30 frames, two people
    await feed(sink, "door", t0 + 3.0, 10, 1.0, [1], "sad", seq0=30)  # then only person 1, now sad
    await sink.handle(tracked_frame("door", 40, t0 + 4.0, [], "sad"))  # a frame with no tracked face
    assert await sink.flush(10)
    await sink.close()
    assert sink.buffer_depth == 0 and sink.written == 30 * 2 + 10

    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        assert [c for c, _ in await ts.cameras()] == ["door"]
        people = {p.track_id: p for p in await ts.people("door")}
        assert set(people) == {1, 2}
        one, two = people[1], people[2]
        assert one.person_id == f"{sink.run_id}-1"
        assert one.first_seen == pytest.approx(t0) and one.last_seen == pytest.approx(t0 + 3.9)
        assert one.duration_s == pytest.approx(3.9) and two.duration_s == pytest.approx(2.9)
        assert one.label == "sad" and one.dominant == "happy"  # 30 happy points, 10 sad
        assert one.emotion_points["happy"] == 30 and one.emotion_points["sad"] == 10 and one.points == 40
        assert one.dwell_s == pytest.approx(3.9, abs=1e-3)
        assert one.probabilities["sad"] == pytest.approx(0.7, abs=1e-4)

        series = await ts.series("door", one.person_id)
        assert len(series) == 40
        assert [round(p.t - t0, 2) for p in series] == [round(i / 10, 2) for i in range(40)]  # ms resolution
        assert series[0].label == "happy" and series[-1].label == "sad" and series[-1].raw_label == "sad"
        assert set(series[0].smoothed) == set(EMOTIONS) and series[0].raw["happy"] == pytest.approx(0.7, abs=1e-4)
        part = await ts.series("door", one.person_id, start=t0 + 1.0, end=t0 + 1.95)
        assert [round(p.t - t0, 2) for p in part] == [round(1.0 + i / 10, 2) for i in range(10)]

        # Seen in [t0 + 3.5, +inf): only person 1; seen in (-inf, t0 - 1]: nobody.
        assert [p.track_id for p in await ts.people("door", since=t0 + 3.5)] == [1]
        assert await ts.people("door", until=t0 - 1) == []
        assert await ts.people("elsewhere") == []

        minute = await ts.rollup("door", "minute", t0, t0 + 60)
        assert len(minute) == 1
        m = minute[0]
        assert m.start == t0 and m.points == 70 and m.unique_people == 2
        assert m.emotion_points["happy"] == 60 and m.emotion_points["sad"] == 10
        assert m.dwell_s == pytest.approx(3.9 + 2.9, abs=1e-3) and m.mean_dwell_s == pytest.approx(3.4, abs=1e-3)
        hours = await ts.rollup("door", "hour", t0 - 7200, t0 + 60)
        assert [b.points for b in hours][-1] == 70 and sum(b.points for b in hours) == 70 and len(hours) == 3
        day = (await ts.rollup("door", "day", t0, t0 + 1))[0]
        assert day.unique_people == 2 and day.points == 70
        with pytest.raises(ValueError, match="interval"):
            await ts.rollup("door", "week", t0, t0 + 1)  # type: ignore[arg-type]
    finally:
        await ts.aclose()


async def test_points_per_second_limit_and_tentative_faces(redis_url, key_prefix, tmp_path):
    settings = redis_settings(key_prefix, points_per_s=5)
    sink = RedisSink(settings, redis_url, tmp_path)
    t0 = time.time()
    await feed(sink, "cam", t0, 30, 2.0, [7])  # 60 frames at 30 fps
    tentative = tracked_frame("cam", 99, t0 + 2.0, [7])
    from dataclasses import replace

    await sink.handle(replace(tentative, faces=[replace(tentative.faces[0], track_id=None, smoothed=None, label=None)]))
    await sink.close()
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        series = await ts.series("cam", f"{sink.run_id}-7")
        assert len(series) == 10  # one point per 0.2 s
        gaps = [b.t - a.t for a, b in zip(series, series[1:])]
        assert min(gaps) == pytest.approx(0.2, abs=0.002)
        assert len(await ts.people("cam")) == 1
    finally:
        await ts.aclose()


async def test_retention_trims_old_points_people_and_rollups(redis_url, key_prefix, tmp_path):
    settings = redis_settings(key_prefix, points_per_s=0, retention_days=600 / 86400)  # keep 10 minutes
    sink = RedisSink(settings, redis_url, tmp_path)
    now = time.time()
    old = now - 3600
    await feed(sink, "cam", old, 10, 1.0, [1, 2])  # an hour ago: both people
    assert await sink.flush(10)
    await feed(sink, "cam", now, 10, 1.0, [1], seq0=10)  # now: person 1 again
    await sink.close()

    keys = KeySchema(key_prefix)
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    p1, p2 = f"{sink.run_id}-1", f"{sink.run_id}-2"
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        series = await ts.series("cam", p1)
        assert len(series) == 10 and min(p.t for p in series) >= now - 1  # the hour-old points were trimmed
        assert not r.exists(keys.series("cam", p2)) and not r.exists(keys.person("cam", p2))
        assert [p.person_id for p in await ts.people("cam")] == [p1]
        old_minute = int(old // 60 * 60)
        assert not r.exists(keys.rollup("cam", "minute", old_minute))
        assert not r.exists(keys.rollup_people("cam", "minute", old_minute))
        assert (await ts.rollup("cam", "minute", old, old + 1))[0].points == 0
        assert 0 < r.ttl(keys.series("cam", p1)) <= 603 and 0 < r.ttl(keys.people("cam")) <= 603
        new_minute = int(now // 60 * 60)
        assert 0 < r.ttl(keys.rollup("cam", "minute", new_minute)) <= 60 + 603
    finally:
        await ts.aclose()
        r.close()


async def test_live_events_carry_person_ids(redis_url, key_prefix, tmp_path):
    settings = redis_settings(key_prefix)
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    sink = RedisSink(settings, redis_url, tmp_path)
    events = ts.live_events("lobby")
    await events.open()

    async def first_event():
        while (event := await events.next(timeout=1.0)) is None:
            pass
        return event

    first = asyncio.ensure_future(first_event())
    try:
        t0 = time.time()
        for i in range(50):
            await sink.handle(tracked_frame("lobby", i, t0 + i / 25, [3]))
            await asyncio.sleep(0.02)
            if first.done():
                break
        event = await asyncio.wait_for(first, 5)
        assert event["camera_id"] == "lobby"
        face = event["faces"][0]
        assert face["track_id"] == 3 and face["person_id"] == f"{sink.run_id}-3" and face["emotion"] == "happy"
    finally:
        first.cancel()
        await events.aclose()
        await sink.close()
        await ts.aclose()
