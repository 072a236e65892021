"""``detector.region_resize = "opencv"``: MTCNN on motion regions with OpenCV's area resize and one R-Net/O-Net
call for all regions finds the faces facenet's own detect_face finds in the same regions, and none where there is
none (on the shared photos; speed and recall on the 1080p crowd clip: docs/performance.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aggregator.kalman import iou_matrix
from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors.mtcnn import MtcnnDetector

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def detectors() -> tuple[MtcnnDetector, MtcnnDetector]:
    return (MtcnnDetector(DetectorSettings(device="cpu", region_resize="facenet")),
            MtcnnDetector(DetectorSettings(device="cpu", region_resize="opencv")))


def regions(image: np.ndarray) -> list[FaceBox]:
    """The picture whole, and in four overlapping quarters (which cut faces: both ways find the same parts)."""
    h, w = image.shape[:2]
    return [FaceBox(0, 0, w, h), FaceBox(0, 0, w * 0.6, h * 0.6), FaceBox(w * 0.4, 0, w, h * 0.6),
            FaceBox(0, h * 0.4, w * 0.6, h), FaceBox(w * 0.4, h * 0.4, w, h)]


def same(a: list[FaceBox], b: list[FaceBox]) -> bool:
    if len(a) != len(b):
        return False
    return not a or bool((iou_matrix(np.array([x.xyxy for x in a]), np.array([x.xyxy for x in b])).max(1) > 0.85).all())


@pytest.mark.parametrize("name, faces", [("justin.jpg", 1), ("two_people.jpg", 2), ("no-faces.jpg", 0)])
def test_opencv_regions_find_the_faces_facenet_finds(detectors, media: Path, name: str, faces: int) -> None:
    stock, fast = detectors
    image = np.asarray(Image.open(media / name).convert("RGB"))
    for i, region in enumerate(regions(image)):
        (expected,), (got,) = stock.detect_regions([image], [[region]]), fast.detect_regions([image], [[region]])
        assert same(expected, got), (region, expected, got)
        assert all(b.score >= 0.9 for b in got)
        if i == 0:  # the whole picture: its faces
            assert len(got) == faces


def test_opencv_regions_batch_several_frames_and_keep_them_apart(detectors, media: Path) -> None:
    _, fast = detectors
    justin = np.asarray(Image.open(media / "justin.jpg").convert("RGB"))
    empty = np.asarray(Image.open(media / "no-faces.jpg").convert("RGB"))
    alone = [fast.detect_regions([f], [regions(f)])[0] for f in (justin, empty, justin)]
    together = fast.detect_regions([justin, empty, justin], [regions(justin), regions(empty), regions(justin)])
    assert alone[1] == together[1] == []
    assert same(alone[0], together[0]) and same(together[0], together[2]) and together[0]
