"""Hostile camera URLs against the real dashboard: a real uvicorn, the machine's Redis, real TCP listeners on loopback
standing in for the smuggling target and for cameras that are down, real files and symlinks on disk."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

import av
import httpx
import numpy as np
import pytest

from streamer.netpolicy import local_addresses
from tests.dashboard_helpers import AUTH, LiveServer, dashboard_settings
from tests.net_helpers import TcpRecorder, closed_port, digest_challenge
from tests.redis_helpers import free_port, unique_prefix

pytestmark = pytest.mark.timeout(300)
MAX_CAMERAS = 4


def write_clip(path: Path, frames: int = 12) -> Path:
    """A small real H.264 video (made here, so nothing is copied from ../shared)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory, media):
    root = tmp_path_factory.mktemp("security")
    folder = root / "media"
    folder.mkdir()
    write_clip(folder / "clip.mp4")
    write_clip(root / "outside.mp4")
    (folder / "escape.mp4").symlink_to(media / "woman2.mp4")  # a link out of the media folder
    (folder / "up").symlink_to(root)  # a folder link out of it
    return folder


@pytest.fixture(scope="module")
def server(tiny_checkpoint, redis_url, media_dir, tmp_path_factory):
    with unique_prefix(redis_url, "test-camsec") as prefix:
        sources = {"media_dirs": [str(media_dir)], "connect_timeout_s": 1.0, "read_timeout_s": 1.0,
                   "reconnect_initial_s": 0.3, "reconnect_max_s": 1.0, "reconnect_jitter": 0.0}
        settings = dashboard_settings(tiny_checkpoint, redis_url, prefix, tmp_path_factory.mktemp("camsec-data"),
                                      free_port(), sources=sources, max_cameras=MAX_CAMERAS)
        with LiveServer(settings) as live:
            live.settings = settings
            yield live


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture
def cleanup(api):
    """Every camera a test added is removed afterwards, whatever happened."""
    yield
    for cam in api.get("/api/cameras").json():
        api.delete(f"/api/cameras/{cam['id']}")


def add(api, camera_id: str, url: str) -> httpx.Response:
    return api.post("/api/cameras", json={"id": camera_id, "url": url})


# ----- 1. command smuggling -------------------------------------------------------------------------------------------

def test_crlf_and_control_characters_never_reach_the_target(api, cleanup):
    """The issue's request (and its variants) is refused, and the target never sees a byte."""
    with TcpRecorder() as target:
        p = target.port
        base = f"rtsp://127.0.0.1:{p}"
        hostile = [f"{base}/x\r\nSET k 1\r\n", f"{base}/x\nSET k 1\n", f"{base}/x?a=1\r\nSET k 1", f"{base}/x\tSET",
                   f"{base}/x y", f"{base}/x\x00", f"{base}/x\u2028SET", f"{base}/x%0d%0aSET%20k%201",
                   f"{base}/x?q=%0A",
                   f"rtsp://u%0d%0aSET%20k%201%0d%0a:p@127.0.0.1:{p}/x", f"rtsp://u:p%00@127.0.0.1:{p}/x",
                   f"{base}/x%zz", f"RTSP://127.0.0.1:{p}/x\r\n"]
        details = set()
        for i, url in enumerate(hostile):
            res = add(api, f"smuggle{i}", url)
            assert res.status_code == 400, (url, res.status_code, res.text)
            detail = res.json()["detail"]
            assert "camera URL" in detail and "\n" not in detail and "SET" not in detail, detail
            details.add(detail)
        assert len(details) >= 3  # each says what is wrong: whitespace/control, bad escape, encoded control
        time.sleep(2.0)  # a camera that had been started would have connected by now
        assert target.connections == 0 and target.received == b""
    assert api.get("/api/cameras").json() == []


def test_encoded_crlf_in_the_user_name_cannot_reach_a_digest_header(api, cleanup):
    """FFmpeg percent-decodes the user name into its Digest ``Authorization`` header: refused before FFmpeg."""
    with TcpRecorder(reply=digest_challenge) as target:
        res = add(api, "digest", f"rtsp://us%0d%0aSET%20k%201%0d%0aer:pw@127.0.0.1:{target.port}/x")
        time.sleep(2.0)
        assert b"SET k 1" not in target.received
        assert res.status_code == 400 and "percent-encoded control" in res.json()["detail"], res.text


def test_only_rtsp_rtsps_and_webcams(api, cleanup):
    with TcpRecorder() as target:
        for i, url in enumerate([f"http://127.0.0.1:{target.port}/x", f"tcp://127.0.0.1:{target.port}",
                                 f"rtmp://127.0.0.1:{target.port}/x", f"udp://127.0.0.1:{target.port}",
                                 f"tls://127.0.0.1:{target.port}", f"gopher://127.0.0.1:{target.port}/_SET"]):
            res = add(api, f"scheme{i}", url)
            assert res.status_code == 400 and "unsupported source" in res.json()["detail"], (url, res.text)
        time.sleep(1.0)
        assert target.connections == 0
    ok = add(api, "cam", "rtsp://Admin:pa%2Fss%40word@127.0.0.1:9/Streaming/Channels/101?channel=1&subtype=0")
    assert ok.status_code == 201, ok.text
    assert ok.json()["url"] == "rtsp://***@127.0.0.1:9/Streaming/Channels/101?channel=1&subtype=0"
    assert add(api, "webcam", "/dev/video63").status_code == 201


# ----- 2. network policy ----------------------------------------------------------------------------------------------

def test_network_policy_refuses_metadata_link_local_and_our_own_redis(api, server, cleanup):
    redis_port = urlsplit(server.settings.redis.url).port or 6379
    refused = ["rtsp://169.254.169.254/latest/meta-data/", "rtsp://[fe80::1]:554/x",
               "rtsp://[::ffff:169.254.169.254]/x",
               "rtsp://2852039166/x",  # 169.254.169.254 written as one number: resolved, then checked
               "rtsp://100.100.100.200/x", "rtsp://0.0.0.0:8554/x", f"rtsp://127.0.0.1:{redis_port}/x",
               f"rtsp://localhost:{redis_port}/x", f"rtsps://127.0.0.1:{redis_port}/x"]
    refused += [f"rtsp://{'[' + str(ip) + ']' if ip.version == 6 else ip}:{redis_port}/x" for ip in local_addresses()
                if not ip.is_link_local]  # a Redis on loopback may listen on every local address
    for i, url in enumerate(refused):
        res = add(api, f"policy{i}", url)
        assert res.status_code == 400 and "network policy" in res.json()["detail"], (url, res.text)
    missing = add(api, "nowhere", "rtsp://no-such-camera.invalid/x")
    assert missing.status_code == 400 and "does not resolve" in missing.json()["detail"], missing.text
    assert api.get("/api/cameras").json() == []
    # the same host on another port is a camera like any other
    assert add(api, "loopback-cam", "rtsp://127.0.0.1:8554/live").status_code == 201


# ----- 3. no port-scanner oracle --------------------------------------------------------------------------------------

def test_refused_and_silent_ports_look_the_same(api, cleanup, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.sources")
    with TcpRecorder() as silent:  # accepts, never answers
        dead = closed_port()
        answers = [add(api, "closed", f"rtsp://admin:Secret-1@127.0.0.1:{dead}/x"),
                   add(api, "silent", f"rtsp://admin:Secret-1@127.0.0.1:{silent.port}/x")]
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[0].json()["status"] == answers[1].json()["status"]
        assert answers[0].json()["error"] == answers[1].json()["error"]
        deadline = time.monotonic() + 30
        while True:
            views = [api.get(f"/api/cameras/{cid}").json() for cid in ("closed", "silent")]
            if all(v["stats"] and v["stats"]["reconnects"] >= 2 for v in views):
                break
            assert time.monotonic() < deadline, views
            time.sleep(0.2)
        assert silent.connections >= 1  # it was really tried
    closed, quiet = views
    assert closed["status"] == quiet["status"] == "reconnecting"
    assert closed["error"] == quiet["error"] and closed["error"]
    for word in ("refused", "timed out", "timeout", "Errno", "Error", "Secret-1"):
        assert word.lower() not in closed["error"].lower()
    assert abs(closed["stats"]["reconnects"] - quiet["stats"]["reconnects"]) <= 1  # same pace: no timing oracle
    text = caplog.text  # the reasons are in the server log, redacted
    assert "refused" in text.lower() and "Secret-1" not in text and "rtsp://***@127.0.0.1" in text


# ----- 4. files only from the media folders ---------------------------------------------------------------------------

def test_files_only_from_media_dirs_with_one_answer_outside(api, media, media_dir, cleanup):
    outside = [str(media / "woman2.mp4"), "/etc/shadow", "/etc/passwd", "/etc", str(media_dir.parent / "missing.mp4"),
               str(media_dir / ".." / "outside.mp4"), str(media_dir / "escape.mp4"),
               str(media_dir / "up" / "outside.mp4"), f"file://{media / 'woman2.mp4'}", "../../../../../../etc/passwd",
               "/proc/self/environ", "concat:/etc/passwd"]
    answers = {url: add(api, f"file{i}", url) for i, url in enumerate(outside)}
    assert {r.status_code for r in answers.values()} == {400}, {u: r.text for u, r in answers.items()}
    details = {r.json()["detail"] for r in answers.values()}
    assert len(details) == 1, details  # exists or not, readable or not, a video or not: one answer
    assert "media" in details.pop()
    inside = add(api, "clip", str(media_dir / "clip.mp4"))
    assert inside.status_code == 201, inside.text
    assert api.get("/api/cameras/clip").json()["kind"] == "file"


# ----- 6. reserved ids and the camera cap -----------------------------------------------------------------------------

def test_webrtc_visitor_ids_are_reserved(api, server, cleanup):
    prefix = server.settings.webrtc.camera_prefix
    res = add(api, f"{prefix}-0123abcd", "/dev/video60")
    assert res.status_code == 409 and f"'{prefix}-'" in res.json()["detail"], res.text
    assert add(api, f"{prefix}x", "/dev/video60").status_code == 201  # only the prefix and its dash are reserved


def test_max_cameras_is_a_409_with_the_reason(api, cleanup):
    for i in range(MAX_CAMERAS):
        assert add(api, f"cam{i}", f"/dev/video{70 + i}").status_code == 201
    over = add(api, "one-more", "/dev/video80")
    assert over.status_code == 409 and f"dashboard.max_cameras ({MAX_CAMERAS})" in over.json()["detail"], over.text
    assert api.delete("/api/cameras/cam0").status_code == 204
    assert add(api, "one-more", "/dev/video80").status_code == 201
