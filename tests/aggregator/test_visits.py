"""aggregator.visits on real Redis: the paged read of a camera's people (stopping early once no older page can hold a
newer first_seen) answers exactly what sorting every stored person would, for any limit and range."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from aggregator import visits as visits_module
from aggregator.timeseries import EmotionPoint, EmotionTimeSeries
from aggregator.visits import camera_visits, visits
from tests.redis_helpers import redis_settings

RUN = "mpage0001"


def person(camera: str, track: int, first: float, last: float, seq: int) -> list[EmotionPoint]:
    probs = (0.05, 0.05, 0.05, 0.7, 0.05, 0.05, 0.05)
    return [EmotionPoint(camera_id=camera, person_id=f"{RUN}-{track}", track_id=track, t=t, label="happy",
                         raw_label="happy", smoothed=probs, raw=probs, dwell_s=0.0, stream_id=f"{int(t * 1000)}-0",
                         run_id=RUN, seq=seq + i) for i, t in enumerate(sorted({first, last}))]


def test_paged_read_matches_a_full_sort(redis_url, key_prefix, monkeypatch):
    monkeypatch.setattr(visits_module, "PAGE", 7)  # many pages from few people
    rng = random.Random(31)
    base = time.time() - 20_000  # within the retention (older keys expire at once)
    spans = {}  # (camera, track) -> (first, last)
    for track in range(1, 120):
        first = base + rng.uniform(0, 10_000)
        spans[("door" if track % 3 else "till", track)] = (first, first + rng.choice([0.0, 5.0, 300.0, 4000.0]))
    number = {}  # (camera, track) -> visitor number: each camera numbers its people in the order they are written
    for camera, track in spans:
        number[(camera, track)] = sum(c == camera for c, _ in number) + 1

    async def run() -> None:
        ts = EmotionTimeSeries.from_url(redis_url, redis_settings(key_prefix))
        try:
            seq = 0
            for (camera, track), (first, last) in spans.items():
                await ts.write(person(camera, track, first, last, seq))
                seq += 2
            for since, until in [(base, base + 20_000), (base + 3000, base + 6000), (base + 9000, base + 9500)]:
                for limit in (1, 5, 40, 500):
                    expected = sorted(((f, c, number[(c, t)]) for (c, t), (f, la) in spans.items()
                                       if la >= since and f <= until), reverse=True)[:limit]
                    got = await visits(ts, ["door", "till"], since, until, limit)
                    assert [(v.first_seen, v.camera_id, v.visitor_number) for v in got] == [
                        (pytest.approx(f, abs=1e-3), c, t) for f, c, t in expected], (since, until, limit)
                    door = await camera_visits(ts, "door", since, until, limit)
                    assert [v.visitor_number for v in door] == [n for _, c, n in sorted(
                        ((f, c, number[(c, t)]) for (c, t), (f, la) in spans.items()
                         if c == "door" and la >= since and f <= until), reverse=True)][:limit]
        finally:
            await ts.aclose()

    asyncio.run(run())
