"""Small faces of a 1080p frame: MTCNN on motion regions at the frame's own resolution (``detector.region_native``)
finds a face a downscaled pass is too coarse for; frames no larger than ``max_side`` are detected as before."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors.mtcnn import MtcnnDetector


@pytest.fixture(scope="module")
def small_face(media: Path) -> tuple[np.ndarray, FaceBox]:
    """justin.jpg's face shrunk to 26 px wide, pasted on a grey 1920x1080 frame; the box where it is."""
    photo = cv2.cvtColor(cv2.imread(str(media / "justin.jpg")), cv2.COLOR_BGR2RGB)
    face = MtcnnDetector(DetectorSettings(device="cpu", max_side=4000, min_face_size=40)).detect([photo])[0][0]
    pad = 0.4
    x1, y1 = max(0, int(face.x1 - pad * face.width)), max(0, int(face.y1 - pad * face.height))
    x2, y2 = int(face.x2 + pad * face.width), int(face.y2 + pad * face.height)
    crop = photo[y1:y2, x1:x2]
    k = 26 / face.width
    crop = cv2.resize(crop, (round(crop.shape[1] * k), round(crop.shape[0] * k)), interpolation=cv2.INTER_AREA)
    frame = np.full((1080, 1920, 3), 120, np.uint8)
    ox, oy = 900, 500
    frame[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    fx, fy = ox + (face.x1 - x1) * k, oy + (face.y1 - y1) * k
    return frame, FaceBox(fx, fy, fx + face.width * k, fy + face.height * k)


def _hit(found: list[FaceBox], truth: FaceBox) -> bool:
    def iou(a: FaceBox, b: FaceBox) -> float:
        iw, ih = min(a.x2, b.x2) - max(a.x1, b.x1), min(a.y2, b.y2) - max(a.y1, b.y1)
        inter = max(iw, 0) * max(ih, 0)
        return inter / (a.width * a.height + b.width * b.height - inter)

    return any(iou(f, truth) >= 0.5 for f in found)


def test_a_26_px_face_is_found_in_its_region_only_natively(small_face) -> None:
    frame, truth = small_face
    region = [FaceBox(truth.x1 - 80, truth.y1 - 80, truth.x2 + 80, truth.y2 + 80)]
    native = MtcnnDetector(DetectorSettings(device="cpu"))  # the defaults: region_native, max_side 640
    assert _hit(native.detect_regions([frame], [region])[0], truth)
    assert _hit(native.refine([frame], [[truth]])[0], truth)  # kept by refinement (below min_face_size 40)
    scaled = MtcnnDetector(DetectorSettings(device="cpu", region_native=False))
    assert not _hit(scaled.detect_regions([frame], [region])[0], truth)
    assert not _hit(native.detect([frame])[0], truth)  # the downscaled full pass misses it


def test_small_frames_keep_the_face_floor(small_face) -> None:
    frame, truth = small_face
    d = MtcnnDetector(DetectorSettings(device="cpu"))
    assert d._native(frame) and d._floor(frame) == 20
    small = np.zeros((336, 596, 3), np.uint8)
    assert not d._native(small) and d._floor(small) == 40

