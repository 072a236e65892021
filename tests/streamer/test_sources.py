"""Frame sources on real inputs: video files, a real RTSP server on loopback, unreachable cameras."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
import pytest

from deepfer_core.redact import redact
from deepfer_core.settings import SourceSettings
from streamer.source_url import source_kind
from streamer.sources import (
    CAMERA_UNREACHABLE,
    FileSource,
    RtspSource,
    SourceError,
    default_camera_id,
    open_source,
)
from tests.rtsp_server import RtspServer, available

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def rtsp_ok() -> None:
    reason = available()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def rtsp_server(rtsp_ok, media: Path, free_port: int):
    server = RtspServer(free_port, media / "woman2.mp4").start()
    yield server
    server.kill()


def test_redact_hides_user_password_and_secret_parameters():
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == "rtsp://***@10.0.0.5:554/Streaming/101"
    assert redact("rtsps://user@cam.example/live?token=abc123&channel=2") == "rtsps://***@cam.example/live?token=***&channel=2"
    assert redact("rtsp://cam.local/live") == "rtsp://cam.local/live"
    assert redact("videos/clip.mp4") == "videos/clip.mp4"
    assert "hunter2" not in redact("error opening 'rtsp://admin:hunter2@h/x': refused")
    assert "pw" not in redact("see rtsp://u:pw@other/y")


def test_source_kind_and_default_camera_ids_carry_no_credentials():
    assert (
        source_kind("rtsp://a:b@h/x") == "rtsp"
        and source_kind("0") == "webcam"
        and source_kind("/dev/video2") == "webcam"
    )
    assert source_kind("clip.mkv") == "file"
    assert default_camera_id("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == "10.0.0.5-554-Streaming-101"
    assert default_camera_id("/data/lobby cam.mp4") == "lobby-cam"
    assert default_camera_id("/dev/video0") == "video0"
    with pytest.raises(SourceError, match="unsupported source"):
        source_kind("http://user:pw@example.com/x.m3u8")
    with pytest.raises(SourceError) as err:
        source_kind("ftp://user:pw@example.com/x")
    assert "pw" not in str(err.value)


async def frames_of(source):
    """The source's frames until it ends, as the pipeline takes them."""
    while (item := await source.get()) is not None:
        yield item.frame


async def test_file_source_yields_every_frame_in_order(media: Path):
    src = FileSource(str(media / "fer_test.mp4"), None, SourceSettings(), queue_size=4)
    assert src.camera_id == "fer_test" and src.size == (596, 336) and not src.live
    src.start()
    frames = [f async for f in frames_of(src)]
    await src.aclose()
    assert [f.seq for f in frames] == list(range(115))
    assert src.status == "ended" and src.frames_dropped == 0 and src.frames_read == 115
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[0] == 0.0 and pts[-1] > 4.0
    assert frames[0].image.shape == (336, 596, 3) and frames[0].image.dtype == np.uint8
    # Stream time mapped to wall time: reproducible spacing whatever the processing speed.
    assert frames[30].captured_at - frames[0].captured_at == pytest.approx(pts[30] - pts[0], abs=1e-6)


def test_missing_and_non_video_files_fail_with_a_clear_error(tmp_path: Path):
    with pytest.raises(SourceError, match="video file not found: .*nope.mp4"):
        open_source(str(tmp_path / "nope.mp4"), None, SourceSettings())
    junk = tmp_path / "notes.mp4"
    junk.write_text("these are not the frames you are looking for\n" * 50)
    with pytest.raises(SourceError, match="not a readable video: .*notes.mp4"):
        open_source(str(junk), None, SourceSettings())
    with pytest.raises(SourceError, match="not a file"):
        open_source(str(tmp_path), None, SourceSettings())


async def test_rtsp_source_reads_a_live_stream(rtsp_server: RtspServer):
    src = RtspSource(rtsp_server.url, "cam", SourceSettings(), queue_size=1)
    src.start()
    frames = []
    async with asyncio.timeout(30):
        async for frame in frames_of(src):
            frames.append(frame)
            if len(frames) == 20:
                break
    await src.aclose()
    assert src.live and src.size == (596, 336)
    assert [f.seq for f in frames] == sorted(f.seq for f in frames)
    assert abs(frames[-1].captured_at - time.time()) < 5
    assert frames[0].image.shape == (336, 596, 3)


async def test_live_source_keeps_the_newest_frame_and_counts_drops(rtsp_server: RtspServer):
    """A consumer that falls behind gets the latest frame, not a backlog."""
    src = RtspSource(rtsp_server.url, "cam", SourceSettings(), queue_size=1)
    src.start()
    async with asyncio.timeout(30):
        await src.get()
        await asyncio.sleep(2.0)  # "busy": the camera keeps sending ~30 fps
        item = await src.get()
    await src.aclose()
    assert src.frames_dropped >= 20
    assert time.monotonic() - item.read_at < 0.5  # what we got was fresh, not two seconds old
    assert item.frame.seq >= 20


async def test_a_reconnected_camera_no_longer_shows_its_outage_error(rtsp_server: RtspServer):
    """Issue 27, item 10: after the camera comes back, its status is ``connected`` with no error."""
    settings = SourceSettings(reconnect_initial_s=0.2, reconnect_max_s=0.5, connect_timeout_s=1, read_timeout_s=2)
    src = RtspSource(rtsp_server.url, "door", settings, queue_size=1, uniform_failures=True)
    src.start()

    async def until(check, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await src.get()  # keep taking frames (and the end-of-attempt wakeups) like the pipeline
                await asyncio.sleep(0.05)

    try:
        await until(lambda: src.status == "connected")
        rtsp_server.kill()
        async with asyncio.timeout(30):
            while not (src.status == "reconnecting" and src.last_error == CAMERA_UNREACHABLE):
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a few refused attempts
        outage = src.reconnects
        rtsp_server.start()
        read = src.frames_read
        await until(lambda: src.status == "connected" and src.frames_read > read)
        assert src.last_error is None and src.reconnects >= outage >= 1
    finally:
        await src.aclose()


async def test_credentials_are_used_but_never_logged(rtsp_ok, media: Path, free_port: int, caplog):
    server = RtspServer(free_port, media / "woman2.mp4", user="cam", password="Zebra-77").start()
    settings = SourceSettings(reconnect_initial_s=0.2, reconnect_max_s=0.5)
    caplog.set_level(logging.DEBUG)
    try:
        wrong = RtspSource(f"rtsp://cam:Wrong-99@127.0.0.1:{free_port}/live", None, settings, 1)
        wrong.start()
        await asyncio.sleep(2.5)
        await wrong.aclose()
        right = RtspSource(server.url, None, settings, 1)
        right.start()
        async with asyncio.timeout(30):
            frame = await right.get()
        await right.aclose()
    finally:
        server.kill()
    assert frame is not None and frame.frame.image.shape == (336, 596, 3)
    assert wrong.frames_read == 0 and wrong.reconnects >= 2 and wrong.last_error == CAMERA_UNREACHABLE
    assert "401" in caplog.text  # the reason is in the log only
    text = caplog.text + (wrong.last_error or "") + wrong.display + wrong.camera_id + right.display
    assert "reconnect attempt" in caplog.text and "***@127.0.0.1" in caplog.text
    assert "Wrong-99" not in text and "Zebra-77" not in text


async def test_unreachable_camera_retries_with_growing_backoff_until_stopped(free_port: int, caplog):
    caplog.set_level(logging.WARNING, logger="streamer.sources")
    settings = SourceSettings(reconnect_initial_s=0.2, reconnect_max_s=1.0, reconnect_jitter=0.0, connect_timeout_s=1)
    src = RtspSource(f"rtsp://127.0.0.1:{free_port}/nothing", None, settings, 1)
    src.start()
    await asyncio.sleep(2.5)
    assert src.status == "reconnecting" and src.reconnects >= 3
    started = time.monotonic()
    await src.aclose()
    assert time.monotonic() - started < 2, "stop must not wait out the backoff"
    assert await src.get() is None and src.status == "stopped"
    delays = [
        float(r.getMessage().rsplit(" in ", 1)[1].split()[0])
        for r in caplog.records
        if "reconnect attempt" in r.getMessage()
    ]
    assert delays[:3] == [0.2, 0.4, 0.8]
    assert all("refused" in r.getMessage().lower() for r in caplog.records if "reconnect attempt" in r.getMessage())


async def test_missing_webcam_is_a_logged_retry_loop(caplog):
    """A webcam that is not (yet) plugged in is a live source like any camera: retried, never a crash."""
    caplog.set_level(logging.WARNING, logger="streamer.sources")
    device = next(f"/dev/video{i}" for i in range(50, 100) if not Path(f"/dev/video{i}").exists())
    src = open_source(device, None, SourceSettings(reconnect_initial_s=0.2, reconnect_max_s=0.5))
    assert (src.kind, src.live, src.camera_id) == ("webcam", True, device.rsplit("/", 1)[1])
    src.start()
    await asyncio.sleep(1.5)
    await src.aclose()
    assert src.reconnects >= 2 and "cannot open webcam" in (src.last_error or "")
    assert "reconnect attempt 2" in caplog.text


async def test_file_at_realtime_rate_is_paced_by_its_timestamps(media: Path):
    src = open_source(str(media / "fer_test.mp4"), "paced", SourceSettings(file_rate="realtime"))
    src.start()
    started = time.monotonic()
    seen = []
    async for frame in frames_of(src):
        seen.append(frame)
        if len(seen) == 26:
            break
    elapsed = time.monotonic() - started
    await src.aclose()
    assert elapsed >= seen[-1].pts - 0.05 >= 0.95  # 25 frame intervals at 24.7 fps, not as fast as decoding
    assert [f.seq for f in seen] == list(range(26)) and src.frames_dropped == 0
