"""``detector.refine_between``: a 1080p camera that looks every ``detect_every_large`` frames refines its known
faces (R-Net + O-Net) on the frames between instead of carrying their boxes, so a walking face stays on its box and
keeps its track."""

from __future__ import annotations

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pydantic
import pytest

from deepfer_core.settings import DetectorSettings, Settings
from deepfer_core.types import EMOTIONS, FaceBox, FrameResult
from detectors.mtcnn import MtcnnDetector
from streamer.assembly import tracker_factory
from streamer.camera_state import Cadence, CameraStats
from streamer.pipeline import Pipeline
from streamer.sources import FileSource

pytestmark = pytest.mark.timeout(240)

FRAMES = 24
STEP = 9  # pixels a frame: a brisk walk across a 1080p picture


class Uniform:
    name = "uniform"
    device = "cpu"

    def predict_faces(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.full((len(faces), len(EMOTIONS)), 1 / len(EMOTIONS), np.float32)


class Kept:
    def __init__(self) -> None:
        self.results: list[FrameResult] = []

    async def handle(self, result: FrameResult) -> None:
        self.results.append(result)

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def walking_face(media: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FaceBox]]:
    """justin.jpg's face at 70 px moving right STEP px a frame on a grey 1920x1080 clip; its box in each frame."""
    bgr = cv2.imread(str(media / "justin.jpg"))
    assert bgr is not None
    photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    face = MtcnnDetector(DetectorSettings(device="cpu", max_side=4000)).detect([photo])[0][0]
    pad = 0.5
    x1, y1 = max(0, int(face.x1 - pad * face.width)), max(0, int(face.y1 - pad * face.height))
    x2, y2 = int(face.x2 + pad * face.width), int(face.y2 + pad * face.height)
    k = 70 / face.width
    crop = cv2.resize(photo[y1:y2, x1:x2], None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25, (1920, 1080))
    truth = []
    for i in range(FRAMES):
        frame = np.full((1080, 1920, 3), 110, np.uint8)
        ox, oy = 600 + STEP * i, 480
        frame[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        fx, fy = ox + (face.x1 - x1) * k, oy + (face.y1 - y1) * k
        truth.append(FaceBox(fx, fy, fx + face.width * k, fy + face.height * k))
    writer.release()
    return path, truth


def _iou(a: FaceBox, b: FaceBox) -> float:
    iw, ih = min(a.x2, b.x2) - max(a.x1, b.x1), min(a.y2, b.y2) - max(a.y1, b.y1)
    inter = max(iw, 0) * max(ih, 0)
    return inter / (a.width * a.height + b.width * b.height - inter)


def _run(path: Path, refine_between: bool) -> tuple[list[FrameResult], CameraStats]:
    s = Settings(detector=DetectorSettings(device="cpu", detect_every_large=3, refine_between=refine_between))
    sink = Kept()
    pipeline = Pipeline(s, MtcnnDetector(s.detector), Uniform(), tracker_factory(s), [sink])
    pipeline.add_source(FileSource(str(path), "walk", s.sources, 8))

    async def go() -> None:
        async with asyncio.timeout(200):
            await pipeline.run(until_idle=True)

    asyncio.run(go())
    return sink.results, pipeline.stats()["walk"]


def test_the_setting_is_validated_and_in_config_toml() -> None:
    # off by default: measured faster on a crowd file, but with lower recall on a live camera (docs/performance.md)
    assert DetectorSettings().refine_between is False
    assert DetectorSettings(refine_between=True).refine_between is True
    with pytest.raises(pydantic.ValidationError):
        DetectorSettings(refine_between="sometimes")  # type: ignore[arg-type]
    toml = (Path(__file__).resolve().parents[2] / "config.toml").read_text()
    assert "refine_between = false" in toml and "detect_every_large = 1" in toml


def test_only_large_cameras_that_skip_frames_refine_between() -> None:
    c = Cadence(3)
    c.sized(1920, 1080, 640, 2, refine_between=True)
    assert c.every == 2 and c.refine_between
    c = Cadence(3)
    c.sized(596, 336, 640, 2, refine_between=True)  # a small camera: carried as before
    assert c.every == 3 and not c.refine_between
    c = Cadence(3)
    c.sized(1920, 1080, 640, 1, refine_between=True)  # every frame looked at: nothing between
    assert not c.refine_between


def test_a_walking_face_is_refined_between_looks_and_keeps_its_track(walking_face) -> None:
    path, truth = walking_face
    results, stats = _run(path, refine_between=True)
    assert [r.frame.seq for r in results] == list(range(FRAMES))
    ious = []
    for r in results:
        assert len(r.faces) == 1, (r.frame.seq, r.faces)
        assert r.faces[0].detected  # a fresh box on every frame, none carried
        ious.append(_iou(r.faces[0].box, truth[r.frame.seq]))
    assert min(ious) >= 0.6, ious
    tracks = {r.faces[0].track_id for r in results if r.faces[0].track_id is not None}
    assert len(tracks) == 1
    assert stats.frames_refined >= FRAMES // 2  # the frames between looks (and the looks on a known face)

    carried, _ = _run(path, refine_between=False)  # the old way: two frames in three carry the last box
    stale = [_iou(r.faces[0].box, truth[r.frame.seq]) for r in carried if r.faces and not r.faces[0].detected]
    assert len(stale) >= FRAMES // 2 and min(stale) < min(ious)
