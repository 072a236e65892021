"""Face detectors on real images from ../shared: counts, batching with face-less frames, coordinates after
downscaling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors import build_detector

pytestmark = pytest.mark.timeout(180)


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    return inter / (a.width * a.height + b.width * b.height - inter)


@pytest.fixture(scope="module")
def mtcnn():
    return build_detector(DetectorSettings(kind="mtcnn", device="cpu"))


@pytest.fixture(scope="module")
def justin(media: Path) -> np.ndarray:
    return rgb(media / "justin.jpg")


@pytest.fixture(scope="module")
def no_face(media: Path, justin: np.ndarray) -> np.ndarray:
    """The face-less picture resized to justin's size, so both can share one batched MTCNN call."""
    return cv2.resize(rgb(media / "no-faces.jpg"), (justin.shape[1], justin.shape[0]))


@pytest.mark.parametrize("name, faces", [("justin.jpg", 1), ("two_people.jpg", 2), ("no-faces.jpg", 0)])
def test_mtcnn_counts_faces(mtcnn, media: Path, name: str, faces: int) -> None:
    image = rgb(media / name)
    (boxes,) = mtcnn.detect([image])
    assert len(boxes) == faces
    h, w = image.shape[:2]
    for b in boxes:
        assert 0 <= b.x1 < b.x2 <= w and 0 <= b.y1 < b.y2 <= h
        assert b.score >= 0.9 and b.width > 40
        assert all(type(v) is float for v in (*b.xyxy, b.score))  # plain floats: JSON and Redis need no numpy


def test_two_people_are_two_distinct_faces(mtcnn, media: Path) -> None:
    a, b = mtcnn.detect([rgb(media / "two_people.jpg")])[0]
    assert iou(a, b) == 0


def test_batch_mixing_face_and_faceless_frames_keeps_order(mtcnn, justin, no_face) -> None:
    """facenet issue #224: a batch containing a face-less frame once crashed; results must stay per frame, in order."""
    single = mtcnn.detect([justin])[0][0]
    mirrored = np.ascontiguousarray(justin[:, ::-1])
    results = mtcnn.detect([no_face, justin, no_face, mirrored, no_face])
    assert [len(r) for r in results] == [0, 1, 0, 1, 0]
    assert results[1][0].xyxy == pytest.approx(single.xyxy, abs=1.0)
    w = justin.shape[1]
    mirror_back = FaceBox(w - results[3][0].x2, results[3][0].y1, w - results[3][0].x1, results[3][0].y2)
    assert iou(mirror_back, single) > 0.8


def test_batch_of_mixed_sizes_and_all_faceless(mtcnn, media: Path, justin, no_face) -> None:
    two = rgb(media / "two_people.jpg")
    assert [len(r) for r in mtcnn.detect([two, justin, rgb(media / "no-faces.jpg"), two])] == [2, 1, 0, 2]
    assert mtcnn.detect([no_face, no_face, no_face]) == [[], [], []]
    assert mtcnn.detect([]) == []


def test_downscaled_detection_reports_original_coordinates(justin) -> None:
    native = build_detector(DetectorSettings(device="cpu", max_side=640)).detect([justin])[0][0]
    big = cv2.resize(justin, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    small = build_detector(DetectorSettings(device="cpu", max_side=400))  # 1152 px frame shrunk to 400
    (found,) = small.detect([big])
    assert len(found) == 1
    expected = FaceBox(*(3 * v for v in native.xyxy))
    assert iou(found[0], expected) > 0.85
    assert found[0].width == pytest.approx(expected.width, rel=0.1)


def test_min_face_size_is_in_original_pixels(justin) -> None:
    face = build_detector(DetectorSettings(device="cpu")).detect([justin])[0][0]
    too_big = int(max(face.width, face.height) * 1.5)
    assert build_detector(DetectorSettings(device="cpu", min_face_size=too_big)).detect([justin]) == [[]]
    big = cv2.resize(justin, None, fx=3, fy=3)  # same rule after downscaling: the face is 3x bigger now
    assert (
        len(build_detector(DetectorSettings(device="cpu", max_side=400, min_face_size=too_big)).detect([big])[0]) == 1
    )


def test_frames_smaller_than_a_face_and_bad_input(mtcnn) -> None:
    assert mtcnn.detect([np.zeros((10, 10, 3), np.uint8)]) == [[]]
    with pytest.raises(ValueError, match="RGB uint8"):
        mtcnn.detect([np.zeros((100, 100), np.uint8)])
    with pytest.raises(ValueError, match="RGB uint8"):
        mtcnn.detect([np.zeros((100, 100, 3), np.float32)])


def test_haar_finds_the_face_mtcnn_finds(mtcnn, media: Path, justin) -> None:
    haar = build_detector(DetectorSettings(kind="haar"))
    assert haar.name == "haar"
    (boxes,) = haar.detect([justin])
    assert len(boxes) == 1
    assert iou(boxes[0], mtcnn.detect([justin])[0][0]) > 0.5
    assert haar.detect([rgb(media / "no-faces.jpg")]) == [[]]


def test_haar_missing_cascade_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    import cv2 as cv

    monkeypatch.setattr(cv.data, "haarcascades", str(tmp_path) + "/")
    with pytest.raises(ValueError, match="haarcascade_frontalface_default.xml not found"):
        build_detector(DetectorSettings(kind="haar"))


def test_batched_mtcnn_matches_stock(mtcnn, media: Path, justin, no_face) -> None:
    """The tensor-only post-processing finds the same faces as facenet's own, frame by frame and in a mixed batch."""
    batched = build_detector(DetectorSettings(device="cpu", mtcnn_batched=True))
    frames = [rgb(media / "two_people.jpg"), justin, no_face, justin, rgb(media / "no-faces.jpg")]
    ours, stock = batched.detect(frames), mtcnn.detect(frames)
    assert [len(r) for r in ours] == [len(r) for r in stock] == [2, 1, 0, 1, 0]
    for mine, theirs in zip(ours, stock):
        for a, b in zip(mine, theirs):  # same order (largest first), the same boxes and scores (stock's crops)
            assert iou(a, b) >= 0.9 and a.score == pytest.approx(b.score, abs=1e-3)
