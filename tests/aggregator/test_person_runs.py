"""A person's dwell is time in view, and a person id never spans two runs of a camera (issue 31, bugs 2 and 3)."""

from __future__ import annotations

import time

from aggregator.redis_sink import RedisSink
from aggregator.timeseries import EmotionTimeSeries
from tests.redis_helpers import redis_settings, tracked_frame


async def visit(sink: RedisSink, camera: str, t0: float, seconds: int, track: int, seq0: int) -> None:
    for k in range(seconds + 1):
        await sink.handle(tracked_frame(camera, seq0 + k, t0 + k, [track]))


async def test_time_away_is_not_dwell(redis_url, key_prefix, tmp_path):
    """The same track id seen again after four minutes away: 20 s in view, not 290."""
    settings = redis_settings(key_prefix)
    sink = RedisSink(settings, redis_url, tmp_path)
    now = time.time()
    await visit(sink, "door", now - 300, 10, 1, 0)
    await visit(sink, "door", now - 20, 10, 1, 100)
    await sink.close()
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        (person,) = await ts.people("door")
    finally:
        await ts.aclose()
    assert person.duration_s > 280 and 19 < person.dwell_s < 21, person
