"""The analysed-fps cap (``pipeline.max_analysed_fps``): every frame decoded, at most N a second analysed, the rest
dropped and counted; on stream time, so a file read as fast as possible is capped as a live camera is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from deepfer_core.settings import PipelineSettings, Settings, SourceSettings
from deepfer_core.types import FaceBox, FrameResult
from streamer.camera_state import Cadence, FpsCap
from streamer.pipeline import Pipeline
from streamer.sources import FileSource

pytestmark = pytest.mark.timeout(120)


class NoFaces:
    """A detector that finds nothing (the cap is about which frames are analysed, not what is in them)."""

    name = "none"

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [[] for _ in frames]


class NeverAsked:
    name = "never"
    device = "cpu"

    def predict_faces(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        raise AssertionError("no face, nothing to classify")


class Seqs:
    def __init__(self) -> None:
        self.seqs: list[int] = []

    async def handle(self, result: FrameResult) -> None:
        self.seqs.append(result.frame.seq)

    async def close(self) -> None:
        pass


def test_cap_admits_the_first_frame_of_each_slot() -> None:
    cap = FpsCap(5.0)
    admitted = [i for i in range(100) if cap.admit(1000.0 + i / 25)]  # 4 s of a 25 fps stream
    assert admitted == list(range(0, 100, 5)) and cap.capped == 80
    uncapped = FpsCap(0.0)
    assert all(uncapped.admit(i / 25) for i in range(50)) and uncapped.capped == 0
    slow = FpsCap(10.0)  # a source slower than the cap loses nothing
    assert all(slow.admit(i / 7) for i in range(30)) and slow.capped == 0
    reset = FpsCap(5.0)  # the clock went back (a reconnect): the next frame is analysed
    assert reset.admit(100.0) and not reset.admit(100.1) and reset.admit(3.0)


def _run(path: Path, cap: float | None, live: bool, pipeline_cap: float = 0.0) -> tuple[list[int], object]:
    s = Settings(pipeline=PipelineSettings(max_analysed_fps=pipeline_cap), sources=SourceSettings())
    sink = Seqs()
    pipeline = Pipeline(s, NoFaces(), NeverAsked(), sinks=[sink])
    pipeline.add_source(FileSource(str(path), "cam", s.sources, 8, live=live), max_analysed_fps=cap)

    async def go() -> None:
        async with asyncio.timeout(90):
            await pipeline.run(until_idle=True)

    asyncio.run(go())
    return sink.seqs, pipeline.stats()["cam"]


def test_a_25_fps_file_read_asap_is_analysed_at_5_fps(media: Path) -> None:
    seqs, st = _run(media / "fer_test.mp4", None, live=False, pipeline_cap=5.0)  # 115 frames at 25 fps: 4.6 s
    assert seqs == list(range(0, 115, 5))
    assert (st.frames_read, st.frames_processed, st.frames_capped) == (115, 23, 92)
    seqs, st = _run(media / "fer_test.mp4", 0.0, live=False, pipeline_cap=5.0)  # the camera's own setting wins
    assert len(seqs) == 115 and st.frames_capped == 0


def test_a_paced_source_is_analysed_at_about_the_cap(media: Path) -> None:
    seqs, st = _run(media / "fer_test.mp4", 5.0, live=True)  # paced as a camera: 4.6 s of wall time
    assert 20 <= st.frames_processed <= 26, st
    assert st.frames_capped >= 85 and st.frames_capped + st.frames_processed + st.frames_dropped == st.frames_read
    gaps = np.diff(seqs)
    assert np.median(gaps) == 5  # about one frame in five of the 25 fps source


def test_large_cameras_look_at_every_frame() -> None:
    c = Cadence(3)
    c.sized(1920, 1080, 640, 1)
    assert c.every == 1
    c = Cadence(3)
    c.sized(596, 336, 640, 1)
    assert c.every == 3
    c = Cadence(3)
    c.sized(1920, 1080, 640, 0)
    assert c.every == 3
