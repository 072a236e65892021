"""Visitor numbers ("Visitor 12 · door") are a per-camera counter in Redis, taken when a person is first stored: they
rise across runs of a camera (removed and re-added, the service restarted, a file camera replayed), never repeat,
and the people, visits, exports and live events carry them (issue 31)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from aggregator.embedded_redis import connect_or_start
from aggregator.export import read_points
from aggregator.redis_sink import RedisSink
from aggregator.timeseries import EmotionPoint, EmotionTimeSeries
from deepfer_core.settings import PathsSettings, RedisSettings, Settings
from tests.conftest import REPO
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, redis_settings, tracked_frame, unique_prefix

pytestmark = pytest.mark.timeout(300)


async def visit(sink: RedisSink, camera: str, t0: float, track: int, seq0: int, seconds: int = 3) -> None:
    for k in range(seconds + 1):
        await sink.handle(tracked_frame(camera, seq0 + k, t0 + k, [track]))


async def numbers(url: str, settings: RedisSettings, camera: str) -> list[tuple[int, str]]:
    """(visitor number, person id) of the camera's people, first seen first."""
    ts = EmotionTimeSeries.from_url(url, settings)
    try:
        return [(p.visitor_number, p.person_id)
                for p in sorted(await ts.people(camera), key=lambda p: p.first_seen)]
    finally:
        await ts.aclose()


async def test_numbers_continue_when_a_camera_is_re_added_or_the_service_restarts(redis_url, key_prefix, tmp_path):
    settings = redis_settings(key_prefix)
    now = time.time() - 200
    first = RedisSink(settings, redis_url, tmp_path)
    await visit(first, "door", now, 1, 0)
    await visit(first, "door", now + 5, 2, 10)
    await visit(first, "hall", now + 5, 1, 0)  # every camera counts its own visitors
    first.camera_ended("door")  # removed and re-added: its tracker numbers from 1 again
    await visit(first, "door", now + 20, 1, 0)
    await first.close()
    again = RedisSink(settings, redis_url, tmp_path)  # the service restarted: a new run, tracks from 1 again
    await visit(again, "door", now + 40, 1, 0)
    await visit(again, "door", now + 45, 2, 10)
    await again.close()
    door = await numbers(redis_url, settings, "door")
    assert [n for n, _ in door] == [1, 2, 3, 4, 5], door
    assert len({pid for _, pid in door}) == 5  # five people, though the tracker said 1 or 2 every time
    assert [n for n, _ in await numbers(redis_url, settings, "hall")] == [1]


async def test_a_replayed_point_keeps_its_number(redis_url, key_prefix, tmp_path):
    """A point written twice (a journal replayed after a crash) does not take a second number."""
    settings = redis_settings(key_prefix, points_per_s=0)
    sink = RedisSink(settings, redis_url, tmp_path)
    await visit(sink, "door", time.time() - 60, 7, 0)
    await sink.close()
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        (person,) = await ts.people("door")
        t = person.last_seen + 1
        replay = EmotionPoint(camera_id="door", person_id=person.person_id, track_id=7, t=t, label="happy",
                              raw_label="happy", smoothed=(0.1,) * 7, raw=(0.1,) * 7, dwell_s=1.0,
                              stream_id=f"{int(t * 1000)}-0", run_id=sink.run_id, seq=100)
        assert await ts.write([replay]) == {("door", person.person_id): 1}
        assert [p.visitor_number for p in await ts.people("door")] == [1]
        assert await ts.r.get(ts.keys.visitors("door")) == "1"
        assert await ts.r.ttl(ts.keys.visitors("door")) >= await ts.r.ttl(ts.keys.person("door", person.person_id))
    finally:
        await ts.aclose()


async def test_live_events_name_the_visitor_once_stored(redis_url, key_prefix, tmp_path):
    settings = redis_settings(key_prefix, points_per_s=0)
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    await ts.r.set(ts.keys.visitors("lobby"), 41)  # earlier runs saw 41 visitors
    sink = RedisSink(settings, redis_url, tmp_path)
    events = ts.live_events("lobby")
    await events.open()
    try:
        t0, named = time.time(), None
        for i in range(100):
            await sink.handle(tracked_frame("lobby", i, t0 + i / 25, [3]))
            await asyncio.sleep(0.02)
            while (event := await events.next(timeout=0.01)) is not None:
                if event["faces"][0]["visitor"] is not None:
                    named = event["faces"][0]
            if named:
                break
        assert named is not None and named["visitor"] == 42 and named["track_id"] == 3, named
    finally:
        await events.aclose()
        await sink.close()
        await ts.aclose()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
async def test_the_embedded_redis_counts_across_its_restarts(tmp_path):
    cfg = Settings(paths=PathsSettings(data_dir=tmp_path / "data"),
                   redis=RedisSettings(default_url=f"redis://127.0.0.1:{free_port()}"))
    for run, expected in enumerate(([1, 2], [1, 2, 3, 4])):
        url, server = await asyncio.to_thread(connect_or_start, cfg)
        assert server is not None
        try:
            sink = RedisSink(cfg.redis, url, tmp_path / "data")
            await visit(sink, "door", time.time() - 100 + 20 * run, 1, 0)
            await visit(sink, "door", time.time() - 90 + 20 * run, 2, 10)
            await sink.close()
            assert [n for n, _ in await numbers(url, cfg.redis, "door")] == expected
        finally:
            await asyncio.to_thread(server.stop)


# ----- two real runs of a file camera ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(redis_url, media, tmp_path_factory):
    """``deepfer run`` of woman2.mp4 as camera 'door', twice (a file camera replayed after a restart)."""
    root = tmp_path_factory.mktemp("two-runs")
    with unique_prefix(redis_url, "test-visitors") as prefix:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPFER_")} | {
            "DEEPFER_REDIS__KEY_PREFIX": prefix, "DEEPFER_PATHS__DATA_DIR": str(root / "data"),
            "DEEPFER_DETECTOR__THREADS": "1", "PYTHONPATH": str(REPO)}
        runs = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-m", "deepfer", "run", "--source", str(media / "woman2.mp4"),
                                   "--camera-id", "door", "--redis", redis_url, "--detect-every", "4", "--device",
                                   "cpu", "--no-progress"], cwd=root, env=env, capture_output=True, text=True,
                                  timeout=280)
            assert done.returncode == 0, done.stderr[-3000:]
            runs.append(asyncio.run(numbers(redis_url, redis_settings(prefix), "door")))
        yield {"prefix": prefix, "url": redis_url, "runs": runs, "root": root}


def test_two_runs_of_a_file_camera_never_share_a_visitor_number(two_runs):
    first, both = two_runs["runs"]
    assert first, "the first run stored nobody"
    assert len(both) > len(first)
    first_ids = {pid for _, pid in first}
    second = [(n, pid) for n, pid in both if pid not in first_ids]
    assert second and all(pid.split("-")[0] != next(iter(first_ids)).split("-")[0] for _, pid in second)
    numbers_seen = [n for n, _ in both]
    assert len(set(numbers_seen)) == len(numbers_seen), both  # never the same "Visitor N" twice
    assert min(n for n, _ in second) > max(n for n, _ in first)  # the second run continues upward
    assert sorted(numbers_seen) == list(range(1, len(both) + 1))


def test_exports_and_the_visits_api_carry_the_number(two_runs, tiny_checkpoint, tmp_path):
    _, both = two_runs["runs"]
    number = dict((pid, n) for n, pid in both)
    settings = Settings(redis={"key_prefix": two_runs["prefix"]})
    df = read_points(two_runs["url"], "door", start=time.time() - 3600, end=time.time() + 600, settings=settings)
    assert len(df) and set(df["visitor"].unique()) == set(number.values())
    assert all(number[pid] == v for pid, v in zip(df["person_id"], df["visitor"]))
    config = dashboard_settings(tiny_checkpoint, two_runs["url"], two_runs["prefix"], tmp_path, free_port())
    with LiveServer(config) as live:
        res = httpx.get(f"{live.url}/api/visits", params={"camera": "door", "since": time.time() - 3600,
                                                          "until": time.time() + 600}, headers=AUTH, timeout=30)
        assert res.status_code == 200, res.text
        visits = res.json()["visits"]
        assert {v["person_id"]: v["visitor_number"] for v in visits} == number
        assert all(v["visitor"] == f"Visitor {number[v['person_id']]} · door" for v in visits)
        people = httpx.get(f"{live.url}/api/cameras/door/people", headers=AUTH, timeout=30,
                           params={"start": time.time() - 3600, "end": time.time() + 600})
        assert people.status_code == 200, people.text
        assert {p["person_id"]: p["visitor_number"] for p in people.json()["people"]} == number
