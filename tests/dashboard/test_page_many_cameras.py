"""Eight cameras on the page in headless Chromium: previews must not hold one of the browser's six HTTP/1.1
connections each, or the metrics, people tables and forms wait forever (issue 31, bug 1)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.dashboard_helpers import (
    AUTH,
    LiveServer,
    dashboard_settings,
    require_chromium,
    signed_in_page,
    wait_for_js,
)
from tests.redis_helpers import free_port, unique_prefix

CAMERAS = 8


@pytest.fixture(scope="module")
def server(tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-many") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("many-data"),
                                      free_port())
        with LiveServer(settings) as live:
            live.settings = settings
            yield live


def add_cameras(server, media: Path) -> None:
    """woman2 (analysed to its end: people and metrics in Redis) and seven cameras that cost nothing (an RTSP port
    where nothing listens: they retry with backoff, but their cards and previews are on the page like any other)."""
    dead_port = free_port()
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as api:
        assert api.post("/api/cameras", json={"id": "cam0", "url": str(media / "woman2.mp4")}).status_code == 201
        for i in range(1, CAMERAS):
            res = api.post("/api/cameras", json={"id": f"cam{i}", "url": f"rtsp://127.0.0.1:{dead_port}/live"})
            assert res.status_code == 201, res.text
        deadline = time.monotonic() + 240
        while (view := api.get("/api/cameras/cam0").json())["status"] not in ("ended", "failed"):
            assert time.monotonic() < deadline, f"woman2 not analysed within 240 s: {view}"
            time.sleep(0.5)
        assert view["status"] == "ended", view
        deadline = time.monotonic() + 30
        while "deepfer_redis_buffer_depth 0.0" not in api.get("/metrics").text:
            assert time.monotonic() < deadline, "points still not in Redis after 30 s"
            time.sleep(0.3)


def two_visits(server, tmp_path: Path) -> str:
    """One person on cam0 in view twice for 10 s, four and a half minutes apart (the same track id: a camera removed
    and re-added before issue 31's bug 2 was fixed); returns the person id."""
    import asyncio

    from aggregator.redis_sink import RedisSink
    from tests.redis_helpers import tracked_frame

    async def write() -> str:
        sink = RedisSink(server.settings.redis, server.settings.redis.url, tmp_path)
        now = time.time()
        for i, t in enumerate([now - 300 + k for k in range(11)] + [now - 20 + k for k in range(11)]):
            await sink.handle(tracked_frame("cam0", 10_000 + i, t, [99]))
        assert await sink.flush(10)
        await sink.close()
        return f"{sink.run_id}-99"

    return asyncio.run(write())


def test_eight_cameras_the_page_keeps_updating(server, media, tmp_path):
    require_chromium()
    add_cameras(server, media)
    visitor = two_visits(server, tmp_path)
    metrics_answers: list[float] = []

    def count_metrics_answers(page) -> None:
        page.on("requestfinished", lambda req: "/api/metrics?" in req.url and metrics_answers.append(time.time()))

    with signed_in_page(server.url, viewport={"width": 1400, "height": 900},
                        before=count_metrics_answers) as (page, errors):
        wait_for_js(page, f"document.querySelectorAll('#cameras .camera').length === {CAMERAS}", timeout=20_000)
        # the Overall panel and woman2's people table fill although eight previews are on the page
        wait_for_js(page, "document.getElementById('kpi-people').textContent !== '–'", timeout=20_000)
        wait_for_js(page, "document.querySelectorAll('#camera-cam0 tr.person').length > 0", timeout=20_000)
        # a camera without data says so, rather than drawing invented axes around nothing (bug 5)
        page.wait_for_selector("#chart-cam0 .main-svg", timeout=10_000)
        wait_for_js(page, "document.querySelector('#chart-cam1').textContent === 'no data yet'", timeout=10_000)
        assert page.locator("#chart-cam1 .main-svg").count() == 0
        # "dwell" is the time in view (2 x 10 s), not first to last sighting (290 s)
        with httpx.Client(base_url=server.url, headers=AUTH) as api:
            people = {p["person_id"]: p for p in api.get("/api/cameras/cam0/people").json()["people"]}
        assert people[visitor]["duration_s"] > 280 and 19 < people[visitor]["dwell_s"] < 21, people[visitor]
        wait_for_js(page, f"!!document.querySelector('#camera-cam0 tr[data-person=\"{visitor}\"]')")
        dwell = page.inner_text(f'#camera-cam0 tr[data-person="{visitor}"] td:nth-child(5)')
        assert dwell == f"{people[visitor]['dwell_s']:.1f} s", dwell
        # and keep updating (the page asks every 3 s)
        seen = len(metrics_answers)
        page.wait_for_timeout(7_000)  # (events reach the test only while it waits in playwright)
        assert len(metrics_answers) >= seen + 2, metrics_answers
        # woman2's preview shows its last frame; a card off screen fetches no preview
        wait_for_js(page, "document.querySelector('#camera-cam0 img').naturalWidth === 596", timeout=15_000)
        asked: list[str] = []
        page.on("request", lambda req: "/preview" in req.url and asked.append(req.url))
        page.wait_for_timeout(2_000)
        assert any("/cam0/" in u for u in asked) and not any("/cam7/" in u for u in asked), asked
        assert not any("preview.mjpg" in u for u in asked), asked
        # the add-camera form still answers
        page.fill("#add-camera [name=id]", "ghost")
        page.fill("#add-camera [name=url]", "/nonexistent/video.mp4")
        page.click("#add-camera button[type=submit]")
        page.wait_for_selector("#add-camera-message.error", timeout=10_000)
        assert not errors, errors


def test_a_camera_removed_and_added_again_counts_new_people(server, media):
    """Issue 31, bug 2: woman2 removed and added again under the same id is a second visit, not one person whose
    time span covers both runs."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as api:
        if api.get("/api/cameras/cam0").status_code == 404:  # run alone: the first run
            add_cameras(server, media)
        before = {p["person_id"]: p for p in api.get("/api/cameras/cam0/people").json()["people"]}
        assert before
        assert api.delete("/api/cameras/cam0").status_code == 204
        assert api.post("/api/cameras", json={"id": "cam0", "url": str(media / "woman2.mp4")}).status_code == 201
        deadline = time.monotonic() + 240
        while (view := api.get("/api/cameras/cam0").json())["status"] not in ("ended", "failed"):
            assert time.monotonic() < deadline, f"woman2 not analysed within 240 s: {view}"
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while "deepfer_redis_buffer_depth 0.0" not in api.get("/metrics").text:
            assert time.monotonic() < deadline, "points still not in Redis after 30 s"
            time.sleep(0.3)
        after = {p["person_id"]: p for p in api.get("/api/cameras/cam0/people").json()["people"]}
    new = set(after) - set(before)
    assert new, (before, after)
    for pid, p in before.items():  # the first run's people ended with it
        assert after[pid]["last_seen"] == p["last_seen"], (pid, p, after[pid])
    clip_s = 464 / 30 + 1
    assert all(after[pid]["duration_s"] <= clip_s for pid in new), after  # the second run's people: that run only
