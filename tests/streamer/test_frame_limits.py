"""Hostile frame sizes (issue 27, item 1): a generated 16000x16000 MJPEG clip, a clip that switches to that size
mid-stream, and a real RTSP camera over the limit. The camera stops with a clear one-line error instead of taking
the process's memory; frames above the working size are scaled down at decode; an ended camera's preview frame goes.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepfer_core.settings import DetectorSettings, GatingSettings, PipelineSettings, Settings, SourceSettings
from streamer.pipeline import Pipeline
from streamer.preview import PreviewSink
from streamer.sources import SourceError, open_source
from tests.rtsp_server import RtspServer, available

pytestmark = pytest.mark.timeout(180)

HUGE = 16000  # the audit's frame: 256 M pixels, 768 MB as RGB


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Raw MJPEG clips (concatenated JPEGs, what an MJPEG camera sends): ``huge`` is three real 16000x16000 frames,
    ``switch`` three 320x240 frames, two 16000x16000 ones, three 320x240 again. The big JPEG is encoded in a
    subprocess, so this process's peak memory says only what decoding cost."""
    out = tmp_path_factory.mktemp("frames")
    big = out / "huge.jpg"
    subprocess.run([sys.executable, "-c", "import sys; from PIL import Image; "
                    f"Image.new('L', ({HUGE}, {HUGE}), 128).save(sys.argv[1], quality=10)", str(big)], check=True)
    small = out / "small.mjpeg"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10",
                    "-frames:v", "3", "-c:v", "mjpeg", "-f", "mjpeg", str(small)], check=True)
    huge, switch = out / "huge.mjpeg", out / "switch.mjpeg"
    huge.write_bytes(big.read_bytes() * 3)
    switch.write_bytes(small.read_bytes() + big.read_bytes() * 2 + small.read_bytes())
    return {"huge": huge, "switch": switch, "small": small}


async def drain(source) -> list:
    source.start()
    frames = []
    async with asyncio.timeout(60):
        while (item := await source.get()) is not None:
            frames.append(item.frame)
    await source.aclose()
    return frames


def test_a_16000x16000_clip_is_refused_when_added_without_decoding_a_frame(clips):
    before = max_rss_mb()
    with pytest.raises(SourceError) as err:
        open_source(str(clips["huge"]), "huge", SourceSettings())
    text = str(err.value)
    assert "sources.max_frame_pixels (16777216)" in text and "\n" not in text
    assert max_rss_mb() - before < 150  # one decoded 16000x16000 frame alone is 256 MB (grey) to 768 MB


async def test_a_camera_that_switches_to_16000x16000_stops_with_the_reason(clips, caplog):
    source = open_source(str(clips["switch"]), "switch", SourceSettings())
    assert source.size == (320, 240)
    before = max_rss_mb()
    frames = await drain(source)
    assert [f.pixels.width for f in frames] == [320, 320, 320]  # nothing after the big frame: the camera stopped
    assert source.status == "failed"
    assert source.last_error is not None and "sources.max_frame_pixels (16777216)" in source.last_error
    assert "\n" not in source.last_error and "Traceback" not in caplog.text
    assert max_rss_mb() - before < 150


async def test_frames_above_the_working_size_are_scaled_down_once_at_decode(clips):
    source = open_source(str(clips["small"]), "small", SourceSettings(working_pixels=20_000))
    frames = await drain(source)
    assert len(frames) == 3 and source.status == "ended"
    for f in frames:
        w, h = f.pixels.width, f.pixels.height
        assert w * h <= 20_000 and w % 2 == 0 and h % 2 == 0 and abs(w / h - 320 / 240) < 0.05
        assert f.image.shape == (h, w, 3) and f.pixels.luma is not None and f.pixels.luma.shape == (h, w)


async def test_a_real_rtsp_camera_over_the_limit_fails_once_and_does_not_reconnect(media: Path, free_port: int):
    if reason := available():
        pytest.skip(reason)
    server = RtspServer(free_port, media / "woman2.mp4").start()  # 596x336: 200 k pixels
    try:
        settings = SourceSettings(max_frame_pixels=100_000, reconnect_initial_s=0.2, reconnect_max_s=0.5)
        source = open_source(server.url, "door", settings)
        source.start()
        async with asyncio.timeout(30):
            while source.status != "failed":
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # several reconnect delays: none happens
        assert source.reconnects == 0 and source.frames_read == 0
        assert source.last_error == "frames of 596x336 pixels, over sources.max_frame_pixels (100000)"
        assert await source.get() is None  # the pipeline sees the end of the stream
        await source.aclose()
    finally:
        server.kill()


class NoEmotions:
    """Never asked: the clips have no faces."""

    name = "none"
    device = "cpu"

    def predict_faces(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.full((len(faces), 7), 1 / 7, np.float32)


async def test_the_preview_lets_an_ended_or_failed_cameras_frame_go(clips):
    from detectors import build_detector

    s = Settings(detector=DetectorSettings(kind="haar", device="cpu"), gating=GatingSettings(enabled=False),
                 pipeline=PipelineSettings())
    preview = PreviewSink(80, 8)
    seen: dict[str, int] = {}

    class Watch:
        async def handle(self, result) -> None:
            seen[result.camera_id] = seen.get(result.camera_id, 0) + 1

        async def close(self) -> None:
            pass

    pipeline = Pipeline(s, build_detector(s.detector), NoEmotions(), sinks=[preview, Watch()])
    await pipeline.start()
    try:
        for cam in ("small", "switch"):
            preview.set_snapshots(cam, True)
            pipeline.add_source(open_source(str(clips[cam]), cam, s.sources))
        async with asyncio.timeout(60):
            while not all(c.done for c in pipeline._cameras.values()):
                await asyncio.sleep(0.05)
        assert seen == {"small": 3, "switch": 3}
        stats = pipeline.stats()
        assert stats["small"].status == "ended" and stats["switch"].status == "failed"
        assert "max_frame_pixels" in (stats["switch"].last_error or "")
        async with asyncio.timeout(10):
            while preview._pending:  # the last annotated JPEGs, encoded in a thread
                await asyncio.sleep(0.05)
        for cam in ("small", "switch"):
            assert preview.latest(cam) is None  # the frame is not kept...
            assert preview._snapshots[cam] == {}  # ...nor the face crops; the camera's setting stays
            jpeg = preview.jpeg(cam)  # only the last annotated JPEG, for the page
            assert jpeg is not None and jpeg[:3] == b"\xff\xd8\xff" and len(jpeg) < 100_000
    finally:
        await pipeline.stop()
