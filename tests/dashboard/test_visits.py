"""GET /api/visits (issue 31, a manager's view): who came when, for how long (time in view), in what mood; filtered
by camera and time, newest first, bad input a 4xx with its reason, the limit capped, the token required. Against the
real server and real Redis; the visits are written by the writer's own code (EmotionTimeSeries.write)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from aggregator.timeseries import EmotionPoint, EmotionTimeSeries
from deepfer_core.types import EMOTIONS
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.redis_helpers import free_port, redis_settings, unique_prefix

pytestmark = pytest.mark.timeout(300)
NOW = time.time()
RUN = "mvisit01"


def visit(camera: str, track: int, start: float, labels: list[str], gaps: list[float], seq: int) -> list[EmotionPoint]:
    """One person's points: ``labels[i]`` at ``start + sum(gaps[:i])``; a gap over a minute is time away (dwell 0),
    as the sink writes it."""
    points, t = [], start
    for i, label in enumerate(labels):
        gap = gaps[i - 1] if i else 0.0
        t += gap
        probs = [0.05] * 7
        probs[EMOTIONS.index(label) if label in EMOTIONS else 6] = 0.7
        points.append(EmotionPoint(camera_id=camera, person_id=f"{RUN}-{track}", track_id=track, t=t, label=label,
                                   raw_label=label, smoothed=tuple(probs), raw=tuple(probs),
                                   dwell_s=gap if gap <= 60 else 0.0, stream_id=f"{int(t * 1000)}-0", run_id=RUN,
                                   seq=seq + i))
    return points


# door: visitor 1 an hour ago (2 s in view, then back 5 minutes later for 1 s: span 302 s), visitor 2 ten minutes
# ago (sad, one uncertain point); till: visitor 3 five minutes ago (neutral)
VISITS = [
    visit("door", 1, NOW - 3600, ["happy", "happy", "happy", "surprise", "happy"], [1, 1, 299, 1], 0),
    visit("door", 2, NOW - 600, ["sad", "uncertain", "sad", "neutral"], [2, 2, 2], 10),
    visit("till", 3, NOW - 300, ["neutral", "neutral"], [3], 20),
]


@pytest.fixture(scope="module")
def server(tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-visits") as prefix:
        async def write() -> None:
            ts = EmotionTimeSeries.from_url(redis_url, redis_settings(prefix))
            try:
                await ts.r.set(ts.keys.visitors("till"), 2)  # earlier runs of till saw 2 visitors: this one is 3
                for points in VISITS:
                    await ts.write(points)
            finally:
                await ts.aclose()

        asyncio.run(write())
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("visits"),
                                      free_port(), max_visits=50, default_range_s=3 * 3600)
        with LiveServer(settings) as live:
            yield live


def get(live: LiveServer, **params) -> httpx.Response:
    return httpx.get(f"{live.url}/api/visits", params=params, headers=AUTH, timeout=30)


def test_visits_newest_first_with_time_in_view_and_mood(server):
    res = get(server, since=NOW - 7200)
    assert res.status_code == 200, res.text
    body = res.json()
    assert [(v["camera_id"], v["visitor_number"]) for v in body["visits"]] == [("till", 3), ("door", 2), ("door", 1)]
    till, door2, door1 = body["visits"]
    assert door1["first_seen"] == pytest.approx(NOW - 3600, abs=0.01)
    assert door1["last_seen"] - door1["first_seen"] == pytest.approx(302, abs=0.01)
    assert door1["time_in_view_s"] == pytest.approx(3.0)  # 1 + 1 + (away) + 1, not the 302 s span
    assert door1["mood"] == "happy" and door1["satisfaction"] == pytest.approx(1.0)
    assert door1["visitor"] == "Visitor 1 · door" and door1["person_id"] == f"{RUN}-1"
    assert door2["mood"] == "sad" and door2["points"] == 4 and door2["confident_points"] == 3
    assert door2["satisfaction"] == pytest.approx(-2 / 3, abs=1e-3)  # the uncertain point is not in it
    assert till["mood"] == "neutral" and till["satisfaction"] == 0.0 and till["time_in_view_s"] == pytest.approx(3)
    assert body["truncated"] is False and body["camera"] is None


def test_visits_filter_by_camera_and_time(server):
    door = get(server, camera="door", since=NOW - 7200).json()["visits"]
    assert [v["visitor_number"] for v in door] == [2, 1]
    assert [v["visitor_number"] for v in get(server, camera="till", since=NOW - 7200).json()["visits"]] == [3]
    # default range (dashboard.default_range_s, 3 h here: the module's NOW may be minutes old in a long run)
    assert [v["visitor_number"] for v in get(server).json()["visits"]] == [3, 2, 1]
    # in view at some time in the range: visitor 1 overlaps [NOW-3400, NOW-3200] (back at NOW-3299) only
    assert [v["visitor_number"] for v in get(server, since=NOW - 3400, until=NOW - 3200).json()["visits"]] == [1]
    assert [v["visitor_number"] for v in get(server, since=NOW - 650, until=NOW - 400).json()["visits"]] == [2]
    assert get(server, since=NOW - 3000, until=NOW - 2000).json()["visits"] == []
    assert get(server, since=NOW + 10).json()["visits"] == []


def test_visits_limit_keeps_the_newest_and_is_capped(server):
    body = get(server, since=NOW - 7200, limit=2).json()
    assert [v["visitor_number"] for v in body["visits"]] == [3, 2] and body["truncated"] is True
    assert get(server, since=NOW - 7200, limit=50).json()["limit"] == 50
    assert get(server).json()["limit"] == 50  # the default is the cap
    res = get(server, limit=51)
    assert res.status_code == 400 and "dashboard.max_visits (50)" in res.json()["detail"]


@pytest.mark.parametrize("params, status, reason", [
    ({"camera": "door;rm"}, 422, "camera"),
    ({"camera": "../x"}, 422, "camera"),
    ({"camera": "nowhere"}, 404, "unknown camera 'nowhere'"),
    ({"since": NOW, "until": NOW - 10}, 400, "must not be after until"),
    ({"since": "yesterday"}, 422, "since"),
    ({"until": "1e"}, 422, "until"),
    ({"limit": "ten"}, 422, "limit"),
    ({"limit": 0}, 422, "limit"),
    ({"since": -5}, 422, "since"),
])
def test_bad_input_is_a_4xx_with_its_reason(server, params, status, reason):
    res = get(server, **params)
    assert res.status_code == status, res.text
    assert reason in res.json()["detail"]


def test_visits_need_the_token(server):
    res = httpx.get(f"{server.url}/api/visits", timeout=30)
    assert res.status_code == 401
    assert "visits" not in res.text
    assert httpx.get(f"{server.url}/api/visits", headers={"Authorization": "Bearer wrong-token-0123456789"},
                     timeout=30).status_code == 401


def test_page_lists_the_visits_in_the_browsers_time_zone(server):
    """Headless Chromium in Kathmandu (UTC+5:45, so a UTC time can never pass for the local one): the Visits section
    lists the visits written to Redis with readable labels, local times (UTC in the title) and the camera filter."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from tests.dashboard_helpers import signed_in_page, wait_for_js

    with signed_in_page(server.url, timezone_id="Asia/Kathmandu", locale="en-US",
                        console=lambda msg: f"console: {msg.text}" if msg.type == "error" else None) as (page, errors):
        page.select_option("#visits-range", "86400")  # "today" in Kathmandu may begin after visitor 1 came
        try:
            wait_for_js(page, "document.querySelectorAll('#visits tr.visit').length === 3", timeout=20_000)
        except AssertionError:
            raise AssertionError(f"{errors} {page.inner_html('#visits')}") from None
        rows = page.locator("#visits tr.visit")
        assert [rows.nth(i).locator("td.visitor").inner_text() for i in range(3)] == [
            "Visitor 3 · till", "Visitor 2 · door", "Visitor 1 · door"]
        first = rows.nth(2)
        assert first.locator("td.visitor").get_attribute("title") == f"person id {RUN}-1"
        came = datetime.fromtimestamp(NOW - 3600, UTC)
        assert first.locator("td.came").get_attribute("title") == came.strftime("%Y-%m-%d %H:%M:%S UTC")
        local = came.astimezone(ZoneInfo("Asia/Kathmandu"))
        text = first.locator("td.came").inner_text()
        assert f"{local.hour % 12 or 12}:{local.minute:02d}:{local.second:02d}" in text, text
        assert first.locator("td.in-view").inner_text() == "3.0 s"  # time in view, not the 302 s span
        assert first.locator("td.mood").inner_text() == "happy"
        assert rows.nth(1).locator("td.satisfaction").inner_text() == "-0.67"
        assert "Asia/Kat" in page.inner_text("#visits-zone")  # ICU still says Katmandu
        # a visit opens its person's timeline
        first.click()
        wait_for_js(page, "document.getElementById('chart-person').dataset.points === '5'", timeout=15_000)
        assert page.inner_text("#person-hint").startswith(f"Visitor 1 · door ({RUN}-1): 5 points")
        # the camera filter
        wait_for_js(page, "[...document.querySelectorAll('#visits-camera option')].some(o => o.value === 'till')")
        page.select_option("#visits-camera", "till")
        wait_for_js(page, "document.querySelectorAll('#visits tr.visit').length === 1", timeout=15_000)
        assert rows.nth(0).locator("td.visitor").inner_text() == "Visitor 3 · till"
        page.select_option("#visits-camera", "door")
        wait_for_js(page, "[...document.querySelectorAll('#visits td.visitor')].map(td => td.textContent).join()"
                          " === 'Visitor 2 · door,Visitor 1 · door'", timeout=15_000)
        assert not errors, errors
