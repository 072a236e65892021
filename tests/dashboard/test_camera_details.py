"""A manager's view (issue 31): a camera card keeps its engineering counters (frames, fps, drops, latency) behind a
"details" toggle, and the add-camera form offers face snapshots only when the server allows them
(dashboard.snapshots). Against the real server, real Redis and headless Chromium."""

from __future__ import annotations

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

pytestmark = pytest.mark.timeout(300)
SNAPSHOTS_BOX = 'name="snapshots"'


@pytest.fixture(scope="module", params=["snapshots off", "snapshots on"])
def server(request, tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-details") as prefix:
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("details"),
                                      free_port(), snapshots=request.param == "snapshots on")
        with LiveServer(settings) as live:
            yield request.param == "snapshots on", live


def test_snapshots_offered_only_when_the_server_allows_them(server):
    allowed, live = server
    page = httpx.get(f"{live.url}/", headers=AUTH, timeout=30)
    assert page.status_code == 200
    assert (SNAPSHOTS_BOX in page.text) is allowed
    assert 'name="realtime"' in page.text  # the rest of the form stays
    # what the page would have offered is what the server accepts
    res = httpx.post(f"{live.url}/api/cameras", headers=AUTH, timeout=60,
                     json={"id": "shots", "url": "/nonexistent/clip.mp4", "options": {"snapshots": True}})
    assert res.status_code == 400
    assert ("turned off" in res.json()["detail"]) is not allowed


def test_counters_behind_details_and_the_form_without_snapshots(server, media):
    allowed, live = server
    if allowed:
        pytest.skip("one browser run is enough: the page without the snapshots box")
    require_chromium()
    res = httpx.post(f"{live.url}/api/cameras", headers=AUTH, timeout=60,
                     json={"id": "hall", "url": str(media / "woman2.mp4")})
    assert res.status_code == 201, res.text
    with signed_in_page(live.url, viewport={"width": 1400, "height": 900}) as (page, errors):
        wait_for_js(page, "/frames/.test(document.querySelector('#camera-hall .counters')?.textContent || '')",
                    timeout=60_000)
        counters = page.locator("#camera-hall details.engineering .counters")
        assert not counters.is_visible()  # folded away
        page.click("#camera-hall details.engineering summary")
        assert counters.is_visible()
        text = counters.inner_text()
        for word in ("frames", "fps", "dropped", "latency p50", "p95"):
            assert word in text, text
        # the people table names visitors readably, the stored id in the title
        wait_for_js(page, "!!document.querySelector('#camera-hall tr.person')", timeout=60_000)
        cell = page.locator("#camera-hall tr.person td.visitor").first
        person = page.locator("#camera-hall tr.person").first.get_attribute("data-person")
        people = httpx.get(f"{live.url}/api/cameras/hall/people", headers=AUTH, timeout=30).json()["people"]
        number = {p["person_id"]: p["visitor_number"] for p in people}  # the camera's count, not the track id
        assert person and cell.inner_text() == f"Visitor {number[person]}", cell.inner_text()
        assert cell.get_attribute("title") == f"person id {person}"
        # the form without its snapshots box still adds (here: refuses a missing file with the server's reason)
        assert page.locator("#add-camera [name=snapshots]").count() == 0
        page.fill("#add-camera [name=id]", "ghost")
        page.fill("#add-camera [name=url]", "/nonexistent/video.mp4")
        page.click("#add-camera button[type=submit]")
        page.wait_for_selector("#add-camera-message.error", timeout=15_000)
        assert page.inner_text("#add-camera-message")
        assert not errors, errors
