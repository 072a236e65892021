"""Exports that would starve the live pipeline (issue 27, item 6), against the real dashboard under uvicorn and a
real Redis: an export over ``export.max_points`` or ``max_buckets`` is a 400 that says why (before any row is read),
one beyond ``export.max_concurrent`` a 503 with Retry-After, and the export threads run at a lower CPU priority."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import httpx
import pytest

from aggregator.redis_sink import RedisSink
from dashboard.routes.downloads import export_gate
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, redis_settings, tracked_frame, unique_prefix

pytestmark = pytest.mark.timeout(300)
CAMERA = "hall"


@pytest.fixture(scope="module")
def server(tiny_checkpoint, redis_url, tmp_path_factory):
    """300 points of camera 'hall' (two people, one point each a second for 150 s, from a minute's start) under a
    fresh prefix; at most 250 points or 1000 buckets per export, one export at a time."""
    root = tmp_path_factory.mktemp("export-limits")
    with unique_prefix(redis_url, "test-exlim") as prefix:
        t0 = time.time() // 60 * 60 - 240

        async def store() -> None:
            sink = RedisSink(redis_settings(prefix, points_per_s=0), redis_url, root / "sink")
            for i in range(150):
                await sink.handle(tracked_frame(CAMERA, i, t0 + i, [1, 2]))
            await sink.close()

        asyncio.run(store())
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, root / "data", free_port())
        settings.export.max_points = 250
        settings.export.max_buckets = 1000
        settings.export.max_concurrent = 1
        settings.export.retry_after_s = 3
        with LiveServer(settings) as live:
            live.t0 = t0  # type: ignore[attr-defined]
            yield live


def get(server: LiveServer, path: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, headers=AUTH, timeout=60)


def test_an_export_over_the_point_or_bucket_cap_is_a_400_with_the_reason(server):
    t0, now = server.t0, time.time()  # type: ignore[attr-defined]
    points = get(server, f"/api/cameras/{CAMERA}/export", start=t0 - 10, end=now)
    assert points.status_code == 400
    assert "about 300 points" in points.json()["detail"] and "export.max_points" in points.json()["detail"]
    # 20 s inside the first minute: 40 points, counted as that minute's 120 (edge buckets count whole): allowed
    first_part = get(server, f"/api/cameras/{CAMERA}/export", start=t0 + 5, end=t0 + 25)
    assert first_part.status_code == 200 and len(first_part.text.strip().splitlines()) == 1 + 40

    month = {"start": now - 31 * 86400, "end": now}
    minutes = get(server, "/api/export", interval="minute", by_camera="true", **month)
    assert minutes.status_code == 400 and "export.max_buckets" in minutes.json()["detail"]
    assert "44641 minute buckets" in minutes.json()["detail"] or "44640 minute buckets" in minutes.json()["detail"]
    hours = get(server, f"/api/cameras/{CAMERA}/export", interval="hour", **month)  # 745 buckets: allowed
    assert hours.status_code == 200 and "hall" in hours.text
    assert export_gate(server.app.state.service).running == 0  # the refused ones gave their place back


def test_one_export_more_than_max_concurrent_is_a_503_with_retry_after(server):
    service = server.app.state.service
    leave = server.call(lambda: export_gate(service).enter())  # an export running (its place taken)
    try:
        busy = get(server, f"/api/cameras/{CAMERA}/export", interval="hour")
        report = get(server, "/api/report")
        for answer in (busy, report):
            assert answer.status_code == 503 and answer.headers["retry-after"] == "3"
            assert "export.max_concurrent" in answer.json()["detail"]
    finally:
        server.call(leave)
    assert get(server, f"/api/cameras/{CAMERA}/export", interval="hour").status_code == 200
    assert get(server, "/api/report").status_code == 200
    assert export_gate(service).running == 0


def test_a_download_cut_short_gives_its_place_back(server):
    service = server.app.state.service
    with httpx.stream("GET", f"{server.url}/api/cameras/{CAMERA}/export",
                      params={"start": server.t0 + 5, "end": server.t0 + 25}, headers=AUTH) as answer:  # type: ignore[attr-defined]
        assert answer.status_code == 200
        next(answer.iter_raw(16))  # then the client goes away
    deadline = time.monotonic() + 10
    while server.call(lambda: export_gate(service).running):
        assert time.monotonic() < deadline, "the place stayed taken"
        time.sleep(0.1)


def test_export_threads_run_at_a_lower_cpu_priority(server):
    gate = server.call(lambda: export_gate(server.app.state.service))
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    theirs = gate.pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result(10)
    assert theirs == min(19, mine + 10)
