"""The live WebRTC demo with real parts: a real uvicorn server with the real detector, shipped classifier, tracker and
Redis; aiortc clients sending ../shared/media videos over loopback; headless Chromium with a fake camera that plays
woman2.mp4 (as .y4m, made with ffmpeg)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from deepfer_bench.visitor import VisitorProcess, WebRtcClient
from deepfer_core.types import EMOTIONS
from tests.conftest import SHIPPED_WEIGHTS
from tests.dashboard_helpers import (
    ARTIFACTS,
    AUTH,
    CHROMIUM,
    CHROMIUM_ARGS,
    TOKEN,
    LiveServer,
    dashboard_settings,
    wait_for_js,
)
from tests.redis_helpers import free_port, unique_prefix

POOLED_THREAD = re.compile(r"^(asyncio_|ThreadPoolExecutor-|deepfer-infer_)")  # executor workers: reused, not leaked


@pytest.fixture(scope="module")
def prefix(redis_url):
    with unique_prefix(redis_url, "test-webrtc") as p:
        yield p


@pytest.fixture(scope="module")
def server(media, redis_url, prefix, tmp_path_factory):
    settings = dashboard_settings(
        SHIPPED_WEIGHTS, redis_url, prefix, tmp_path_factory.mktemp("webrtc-data"), free_port()
    )
    settings = settings.model_copy(
        update={
            "detector": settings.detector.model_copy(update={"detect_every": 3, "threads": 0}),
            "webrtc": settings.webrtc.model_copy(update={"max_sessions": 2}),
        }
    )
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


def signal_to(server: LiveServer):
    async def signal(offer: dict) -> dict:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as client:
            res = await client.post("/api/webrtc/offer", json=offer)
            assert res.status_code == 200, res.text
            return res.json()

    return signal


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not within {timeout:g} s"
        time.sleep(0.2)


# ----- a Python aiortc visitor ---------------------------------------------------------------------------------------


def test_aiortc_client_gets_annotated_video_and_faces(server, api, media):
    seen: dict = {}

    async def visit():
        client = WebRtcClient(str(media / "woman2.mp4"))
        try:
            answer = await client.connect(signal_to(server))
            await client.wait_first(timeout=60)
            seen["first_s"] = max(client.counts.first_frame_at, client.counts.first_message_at) - client.started
            await asyncio.sleep(6)
            # while connected, the visitor is a camera of the dashboard, with the session's counters
            seen["cameras"] = await asyncio.to_thread(lambda: api.get("/api/cameras").json())
            seen["metrics"] = await asyncio.to_thread(lambda: api.get("/metrics").text)
            seen["now"] = await asyncio.to_thread(
                lambda: api.get(f"/api/cameras/{answer['camera_id']}/people/now").json()
            )
            seen["preview"] = await asyncio.to_thread(
                lambda: api.get(f"/api/cameras/{answer['camera_id']}/preview.jpg")
            )
            seen["session"] = await asyncio.to_thread(
                lambda: api.get(f"/api/webrtc/sessions/{answer['session_id']}").json()
            )
        finally:
            await client.close()
        return answer, client.counts

    answer, counts = asyncio.run(visit())
    camera = answer["camera_id"]
    assert camera.startswith("webrtc-")
    # the annotated track came back, at the sent size
    assert counts.frames_received >= 20, counts.frames_received
    assert counts.last_frame_size == (596, 336)
    # per-face messages: woman2 shows one woman, tracked, with an emotion and 7 probabilities
    with_faces = [m for m in counts.messages if m["faces"]]
    assert len(with_faces) >= 20
    assert all(m["camera_id"] == camera for m in counts.messages)
    one_face = [m for m in with_faces if len(m["faces"]) == 1]
    assert len(one_face) >= 0.9 * len(with_faces)
    tracked = [m["faces"][0] for m in one_face if m["faces"][0]["track_id"] is not None]
    assert tracked, "no tracked face in the messages"
    assert len({f["track_id"] for f in tracked}) == 1
    face = tracked[-1]
    assert face["emotion"] in EMOTIONS
    assert set(face["probabilities"]) == set(EMOTIONS)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=0.01)
    assert 0 < face["box"]["x1"] < face["box"]["x2"] <= 596
    # the session as the API showed it, and the camera list
    s = seen["session"]
    assert s["state"] == "connected" and s["camera_id"] == camera
    assert s["frames_received"] > 0 and s["frames_sent"] > 0 and s["messages_sent"] > 0
    assert s["latency_p50_ms"] is not None and s["latency_p95_ms"] >= s["latency_p50_ms"]
    listed = {c["id"]: c for c in seen["cameras"]}
    assert listed[camera]["kind"] == "webrtc" and listed[camera]["status"] == "connected"
    assert "deepfer_webrtc_sessions 1.0" in seen["metrics"]
    # the Redis writer ran while the visitor was there: the person is in view now, with a smoothed emotion
    (person,) = seen["now"]["people"]
    assert person["label"] in EMOTIONS and person["track_id"] == tracked[-1]["track_id"]
    assert seen["preview"].status_code == 200 and seen["preview"].content[:2] == b"\xff\xd8"  # the dashboard's preview
    # a visitor is not a configured camera: it cannot be paused or deleted through the cameras API
    # (checked while connected elsewhere); once gone, its history stays readable from Redis
    wait_until(lambda: not api.get("/api/webrtc/sessions").json(), 15, "the session to end after the client closed")
    assert camera not in {c["id"] for c in api.get("/api/cameras").json()}
    people = api.get(f"/api/cameras/{camera}/people").json()
    assert len(people["people"]) == 1, people


def test_two_visitors_get_their_own_sessions_and_a_third_is_refused(server, api, media):
    result: dict = {}

    async def visit_two():
        a, b = WebRtcClient(str(media / "woman2.mp4")), WebRtcClient(str(media / "fer_test.mp4"))
        try:
            ans_a, ans_b = await asyncio.gather(a.connect(signal_to(server)), b.connect(signal_to(server)))
            await asyncio.gather(a.wait_first(60), b.wait_first(60))
            async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as http:
                third = await http.post("/api/webrtc/offer", json={"sdp": a.pc.localDescription.sdp, "type": "offer"})
                result["third"] = (third.status_code, third.json())
                result["pause"] = (await http.post(f"/api/cameras/{ans_a['camera_id']}/pause")).status_code
                result["delete"] = (await http.delete(f"/api/cameras/{ans_a['camera_id']}")).status_code
                result["preview"] = (await http.get(f"/api/cameras/{ans_a['camera_id']}/preview.jpg")).status_code
            await asyncio.sleep(1)
        finally:
            await asyncio.gather(a.close(), b.close())
        return ans_a, ans_b, a.counts, b.counts

    ans_a, ans_b, ca, cb = asyncio.run(visit_two())
    assert ans_a["session_id"] != ans_b["session_id"] and ans_a["camera_id"] != ans_b["camera_id"]
    assert ca.messages and {m["camera_id"] for m in ca.messages} == {ans_a["camera_id"]}
    assert cb.messages and {m["camera_id"] for m in cb.messages} == {ans_b["camera_id"]}
    status, body = result["third"]
    assert status == 429 and "max_sessions" in body["detail"]
    assert result["pause"] == 409 and result["delete"] == 409
    assert result["preview"] == 200
    wait_until(lambda: not api.get("/api/webrtc/sessions").json(), 15, "both sessions to end")


def test_bad_offers_are_clear_4xx(api):
    video_less = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n"
    )
    cases = [
        ({"sdp": "v=0", "type": "answer"}, 400, "offer"),
        ({"sdp": video_less, "type": "offer"}, 400, "no video"),
        ({"sdp": "m=video garbage\r\n", "type": "offer"}, 400, "cannot answer"),
        ({"type": "offer"}, 422, "sdp"),
        ({"sdp": "", "type": "offer"}, 422, "sdp"),
    ]
    for body, status, reason in cases:
        res = api.post("/api/webrtc/offer", json=body)
        assert res.status_code == status, (body, res.text)
        assert reason in res.json()["detail"], res.text
    assert (
        api.post("/api/webrtc/offer", content=b"{not json", headers={"Content-Type": "application/json"}).status_code
        == 422
    )
    assert api.get("/api/webrtc/sessions/0123abcd").status_code == 404
    assert api.delete("/api/webrtc/sessions/0123abcd").status_code == 404
    assert api.get("/api/webrtc/sessions/not-an-id").status_code == 422
    assert httpx.post(f"{api.base_url}/api/webrtc/offer", json={"sdp": "x", "type": "offer"}).status_code == 401
    # nothing was left behind by the refused offers
    assert api.get("/api/webrtc/sessions").json() == []
    assert api.get("/health").json()["webrtc_sessions"] == 0
    assert "deepfer_webrtc_sessions 0.0" in api.get("/metrics").text


def test_a_visitor_that_vanishes_without_a_goodbye_is_freed(server, api, media):
    """The visitor's process is killed (power cut, crashed browser, network gone): no close message ever arrives.
    The server notices through ICE consent checks (about 30 s in aioice) and frees the session."""
    visitor = VisitorProcess(str(media / "woman2.mp4"), loop=True)

    async def connect() -> dict:
        answer = await visitor.connect(signal_to(server))
        await visitor.wait_first(60)
        return answer

    answer = asyncio.run(connect())
    assert [s["id"] for s in api.get("/api/webrtc/sessions").json()] == [answer["session_id"]]
    visitor.process.kill()
    visitor.process.join(10)
    wait_until(lambda: api.get("/api/webrtc/sessions").json() == [], 75, "the vanished visitor's session to be freed")
    assert answer["camera_id"] not in _server_snapshot(server)["pipeline_cameras"]


def _server_snapshot(server: LiveServer) -> dict:
    def look():
        service = server.app.state.service
        return {
            "tasks": len(asyncio.all_tasks()),
            "task_names": sorted(t.get_name() for t in asyncio.all_tasks()),
            "sessions": len(service.webrtc.sessions),
            "pipeline_cameras": list(service.pipeline.camera_ids),
            "sinks": len(service.pipeline.sinks),
            "previews": list(service.preview._latest),
        }

    return server.call(look)


def _threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if not POOLED_THREAD.match(t.name))


def test_ten_connect_disconnect_cycles_leave_nothing_behind(server, api, media):
    base: dict = {}

    def settled():
        return api.get("/api/webrtc/sessions").json() == [] and not _server_snapshot(server)["pipeline_cameras"]

    def back_to_base():
        now = _server_snapshot(server)
        return now if now["tasks"] <= base["tasks"] and _threads() == base["threads"] else None

    def check_back_to_base(what: str) -> dict:
        try:
            return wait_until(back_to_base, 15, what)
        except AssertionError:
            now = _server_snapshot(server)
            raise AssertionError(
                f"leak after {what}: tasks {base['task_names']} -> {now['task_names']}; "
                f"threads {base['threads']} -> {_threads()}"
            ) from None

    async def cycle(i: int) -> None:
        client = WebRtcClient(str(media / "woman2.mp4"))
        try:
            answer = await client.connect(signal_to(server))
            await client.wait_first(60)
            if i % 2:
                # the server ends it (the page's Stop sends this DELETE) while the visitor is still connected:
                # the server must free its side by itself, before the visitor hangs up
                async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
                    assert (await http.delete(f"/api/webrtc/sessions/{answer['session_id']}")).status_code == 200
                await asyncio.to_thread(check_back_to_base, f"DELETE of session {i}")
        finally:
            await client.close()  # the even visitors just hang up
        await asyncio.to_thread(wait_until, settled, 15, f"session {i} to end")

    asyncio.run(cycle(0))  # warm-up: executors, the Redis writer and the models start on first use
    base.update(_server_snapshot(server), threads=_threads())
    for i in range(1, 11):
        asyncio.run(cycle(i))
    after = check_back_to_base("10 cycles")
    assert after["sessions"] == 0 and after["pipeline_cameras"] == [] and after["sinks"] == base["sinks"]
    assert not [c for c in after["previews"] if c.startswith("webrtc-")]
    pooled = [t.name for t in threading.enumerate() if POOLED_THREAD.match(t.name)]
    assert len(pooled) <= 16, pooled  # executor pools are bounded


# ----- the page in headless Chromium with a fake camera playing woman2 ----------------------------------------------


@pytest.fixture(scope="module")
def fake_camera(media, tmp_path_factory) -> Path:
    if not shutil.which("ffmpeg"):
        pytest.skip("needs ffmpeg to make the fake camera's .y4m (apt-get install ffmpeg)")
    out = tmp_path_factory.mktemp("fake-camera") / "woman2.y4m"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(media / "woman2.mp4"),
            "-t",
            "6",
            "-vf",
            "fps=15",
            "-pix_fmt",
            "yuv420p",
            str(out),
        ],
        check=True,
    )
    return out


def _chromium(p, *extra: str):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    return p.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS
        + ["--use-fake-device-for-media-stream", "--disable-features=WebRtcHideLocalIpsWithMdns", *extra],
    )


def _signed_in_page(browser, server):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    login = httpx.post(f"{server.url}/login", data={"token": TOKEN}, follow_redirects=False)
    assert login.status_code == 303, login.text
    context.add_cookies([{"name": "deepfer_session", "value": login.cookies["deepfer_session"], "url": server.url}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def test_demo_page_in_headless_chromium(server, api, fake_camera):
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = _chromium(p, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={fake_camera}")
        try:
            page, errors = _signed_in_page(browser, server)
            page.goto(f"{server.url}/demo")
            started = time.monotonic()
            page.click("#start")
            page.wait_for_selector("#faces .face-emotion", timeout=30_000)
            label_after_s = time.monotonic() - started
            label = page.inner_text("#faces .face-emotion")
            assert any(e in label for e in EMOTIONS), label
            assert page.locator("#faces .face .bar").count() >= 7
            # the annotated video plays in the page
            wait_for_js(
                page,
                "document.getElementById('remote').videoWidth > 0 && "
                "document.getElementById('remote').currentTime > 0.5",
                timeout=20_000,
            )
            sessions = api.get("/api/webrtc/sessions").json()
            assert len(sessions) == 1 and sessions[0]["state"] == "connected"
            page.wait_for_timeout(1500)
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
            page.click("#stop")
            wait_until(lambda: api.get("/api/webrtc/sessions").json() == [], 15, "the session to end after Stop")
            assert page.inner_text("#state") == "stopped"
            assert not errors, errors
        finally:
            browser.close()
    print(f"face label shown {label_after_s:.1f} s after Start")
    assert label_after_s < 30
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000


def test_demo_page_says_when_the_camera_is_denied_or_the_server_unreachable(server, api, fake_camera):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = _chromium(p, "--deny-permission-prompts")
        try:
            page, errors = _signed_in_page(browser, server)
            page.goto(f"{server.url}/demo")
            page.click("#start")
            page.wait_for_selector("#message.error", timeout=15_000)
            assert "Camera access was denied" in page.inner_text("#message")
            assert page.is_enabled("#start") and not page.is_enabled("#stop")
            # the server goes away: every request to it fails at the network level
            page.route("**/api/webrtc/**", lambda route: route.abort("connectionrefused"))
            page.click("#start")
            wait_for_js(
                page, "document.getElementById('message').textContent.includes('cannot be reached')", timeout=15_000
            )
            assert not errors, errors
        finally:
            browser.close()
    assert api.get("/api/webrtc/sessions").json() == []
