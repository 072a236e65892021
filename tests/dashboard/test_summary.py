"""The metrics in plain words on the API and the page (issue 31, "mood in words"): every camera's metrics and the
overall ones carry a ``summary`` sentence, and the page shows it, as text, at the top of the Overall panel and of each
camera card. Against the real server, real Redis (points written through the real writer's ``write``) and headless
Chromium."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from aggregator.timeseries import EmotionPoint, EmotionTimeSeries
from deepfer_core.types import EMOTIONS
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings, signed_in_page, wait_for_js
from tests.redis_helpers import free_port, redis_settings, unique_prefix

pytestmark = pytest.mark.timeout(300)
RUN = "sumrun"


def person(track: int, times: list[float], labels: list[str], seq: int) -> list[EmotionPoint]:
    out = []
    for i, (t, label) in enumerate(zip(times, labels)):
        probs = [0.05] * 7
        probs[EMOTIONS.index(label) if label in EMOTIONS else 4] = 0.7
        out.append(EmotionPoint(camera_id="door", person_id=f"{RUN}-{track}", track_id=track, t=t, label=label,
                                raw_label=label, smoothed=tuple(probs), raw=tuple(probs), dwell_s=1.0,
                                stream_id=f"{int(t * 1000)}-0", run_id=RUN, seq=seq + i))
    return out


# the last 10 minutes: visitor 1 neutral 6, happy 4 (satisfaction +0.40); visitor 2 too small: every point uncertain;
# the 10 minutes before: visitor 3 neutral 9, happy 1 (+0.10)
def points(now: float) -> list[EmotionPoint]:
    """Relative to when the module's server starts, not to import time: a full suite imports it long before."""
    return [
        *person(3, [now - 900 + i for i in range(10)], ["neutral"] * 9 + ["happy"], 0),
        *person(1, [now - 300 + 29 * i for i in range(10)], ["neutral"] * 6 + ["happy"] * 4, 100),
        *person(2, [now - 40 + 3 * i for i in range(3)], ["uncertain"] * 3, 200),
    ]


POINTS_WRITTEN = len(points(0.0))
DOOR = ("Door, last 10 minutes: camera down, no new readings; mostly neutral, 60% of readings; satisfaction +0.40, up "
        "from +0.10 in the 10 minutes before; 2 people now; 1 of 2 visitors too far away or unclear to read.")
YARD = "No faces seen yet on yard (camera down, no new readings)."
OVERALL = ("All cameras, last 10 minutes: mostly neutral, 60% of readings; satisfaction +0.40, up from +0.10 in the 10 "
           "minutes before; 2 people now; 1 of 2 visitors too far away or unclear to read; 2 of 2 cameras down (door, "
           "yard).")


@pytest.fixture(scope="module")
def server(tiny_checkpoint, redis_url, tmp_path_factory):
    with unique_prefix(redis_url, "test-summary") as prefix:
        live_since = time.time()
        async def write() -> None:
            ts = EmotionTimeSeries.from_url(redis_url, redis_settings(prefix))
            try:
                await ts.write(points(live_since))
            finally:
                await ts.aclose()

        asyncio.run(write())
        dead = free_port()  # nothing listens: both cameras stay down
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("summary"),
                                      free_port(), sources={"connect_timeout_s": 0.5, "reconnect_max_s": 1.0},
                                      present_window_s=200)
        with LiveServer(settings) as live, httpx.Client(base_url=live.url, headers=AUTH, timeout=30) as api:
            for cam in ("door", "yard"):
                res = api.post("/api/cameras", json={"id": cam, "url": f"rtsp://127.0.0.1:{dead}/{cam}"})
                assert res.status_code == 201, res.text
            deadline = time.monotonic() + 30
            while any(api.get(f"/api/cameras/{c}").json()["status"] in ("starting", "connected")
                      for c in ("door", "yard")):
                assert time.monotonic() < deadline, "the cameras never tried to connect"
                time.sleep(0.2)
            yield live


def test_the_metrics_answer_says_it_in_words(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as api:
        m = api.get("/api/metrics", params={"interval": "minute"}).json()
        assert m["summary_window_s"] == 600
        assert m["cameras"]["door"]["summary"] == DOOR
        assert m["cameras"]["yard"]["summary"] == YARD
        assert m["overall"]["summary"] == OVERALL
        # the numbers are still there: the summary is one more field, nothing renamed
        assert m["overall"]["totals"]["points"] == POINTS_WRITTEN and "buckets" in m["cameras"]["door"]
        one = api.get("/api/cameras/door/metrics").json()
        assert one["summary"] == DOOR and one["totals"]["points"] == POINTS_WRITTEN
        # a past range (an alert's moment) speaks of its own end, not of "now" nor of the cameras' state now
        now = time.time()
        past = api.get("/api/metrics", params={"start": now - 7200, "end": now - 3000}).json()
        assert past["cameras"]["door"]["summary"] == "Door, the 10 minutes to the end of the range: nobody seen."
        assert past["overall"]["summary"] == "All cameras, the 10 minutes to the end of the range: nobody seen."


def test_the_page_shows_the_sentences_as_text(server):
    with signed_in_page(server.url, viewport={"width": 1400, "height": 900}) as (page, errors):
        wait_for_js(page, "document.querySelector('#summary-overall').textContent.length > 0", timeout=60_000)
        assert page.inner_text("#summary-overall") == OVERALL
        wait_for_js(page, "!!document.querySelector('#camera-door p.summary')?.textContent", timeout=60_000)
        assert page.inner_text("#camera-door p.summary") == DOOR
        assert page.inner_text("#camera-yard p.summary") == YARD
        # near the top: above the KPIs, and right under a card's heading
        assert page.evaluate("document.querySelector('#summary-overall').compareDocumentPosition("
                             "document.querySelector('.kpis')) & Node.DOCUMENT_POSITION_FOLLOWING")
        assert page.evaluate("document.querySelector('#camera-door .head').nextElementSibling.className") == \
            "summary"
        # text only: no element was made from the data
        assert page.evaluate("document.querySelector('#summary-overall').children.length") == 0
        assert page.evaluate("document.querySelector('#camera-door p.summary').children.length") == 0
        assert not errors, errors
