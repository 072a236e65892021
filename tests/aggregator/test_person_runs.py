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


async def test_a_restarted_camera_gets_new_person_ids(redis_url, key_prefix, tmp_path):
    """Removed and re-added under the same id, a camera's new tracker numbers faces from 1 again: the pipeline tells
    the writer (``camera_ended``) and the second visit is another person, not a person spanning both runs."""
    settings = redis_settings(key_prefix)
    sink = RedisSink(settings, redis_url, tmp_path)
    now = time.time()
    await visit(sink, "hall", now - 100, 10, 1, 0)
    await visit(sink, "door", now - 100, 10, 1, 0)
    sink.camera_ended("hall")
    await visit(sink, "hall", now - 50, 10, 1, 0)
    sink.camera_ended("hall")  # twice in the same millisecond: still a new run each time
    await visit(sink, "hall", now - 20, 10, 1, 0)
    await visit(sink, "door", now - 20, 10, 1, 100)  # door did not restart: the same person
    await sink.close()
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        hall, door = await ts.people("hall"), await ts.people("door")
    finally:
        await ts.aclose()
    assert len(hall) == 3 and len({p.person_id for p in hall}) == 3 and all(p.duration_s <= 10 for p in hall), hall
    assert all(p.track_id == 1 for p in hall) and min(p.person_id for p in hall) == f"{sink.run_id}-1"
    assert [p.person_id for p in door] == [f"{sink.run_id}-1"] and door[0].duration_s > 80


async def test_the_pipeline_tells_its_sinks_when_a_camera_is_removed(media):
    from deepfer_core.settings import Settings
    from streamer.pipeline import Pipeline
    from streamer.sources import FileSource

    class Sink:
        ended: list[str] = []

        async def handle(self, result) -> None: ...

        async def close(self) -> None: ...

        def camera_ended(self, camera_id: str) -> None:
            self.ended.append(camera_id)

    s = Settings()
    sink = Sink()
    pipeline = Pipeline(s, None, None, sinks=[sink])  # never started: no model is needed to add and remove
    pipeline.add_source(FileSource(str(media / "woman2.mp4"), "hall", s.sources, 2))
    await pipeline.remove_source("hall")
    assert sink.ended == ["hall"]
