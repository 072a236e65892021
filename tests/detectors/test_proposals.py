"""MTCNN with YuNet as its proposal stage (``detector.proposals = "yunet"``) on the shared photos: the faces MTCNN
finds, none where there is none, landmarks on the face, regions and known faces, and a clear error without the model.

Skipped, saying so, where ../shared/models/yunet (or ../shared/media) is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepfer_core.protocols import PartialDetector
from deepfer_core.settings import ConfigError, DetectorSettings, load_settings
from deepfer_core.types import FaceBox
from detectors import build_detector
from detectors.proposals import YunetProposalDetector
from tests.conftest import SHARED, need

pytestmark = pytest.mark.timeout(180)

YUNET = SHARED / "models" / "yunet" / "yunet_s_640_640.onnx"


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    return inter / (a.width * a.height + b.width * b.height - inter)


def settings(**changes: object) -> DetectorSettings:
    return DetectorSettings(proposals="yunet", yunet_model=str(need(YUNET)), device="cpu", **changes)


@pytest.fixture(scope="module")
def proposals() -> YunetProposalDetector:
    detector = build_detector(settings())
    assert isinstance(detector, YunetProposalDetector)
    return detector


@pytest.fixture(scope="module")
def mtcnn():
    return build_detector(DetectorSettings(device="cpu"))


@pytest.mark.parametrize("name, faces", [("justin.jpg", 1), ("two_people.jpg", 2), ("no-faces.jpg", 0)])
def test_finds_the_faces_mtcnn_finds(proposals, mtcnn, media: Path, name: str, faces: int) -> None:
    image = rgb(media / name)
    (found,) = proposals.detect([image])
    (reference,) = mtcnn.detect([image])
    assert len(reference) == faces and len(found) == faces
    for m in reference:
        assert max(iou(m, f) for f in found) > 0.7
    for f in found:
        assert f.score >= 0.9  # O-Net's probability, min_confidence as configured
        assert all(type(v) is float for v in (*f.xyxy, f.score))


def test_r_and_o_net_reject_what_yunet_proposes_at_a_low_score(media: Path) -> None:
    """At a near-zero YuNet score many candidates come (and a batch of several frames, one with no face): the
    checks keep only the faces."""
    eager = build_detector(settings(yunet_proposal_threshold=0.01))
    assert isinstance(eager, YunetProposalDetector)
    images = [rgb(media / "no-faces.jpg"), rgb(media / "two_people.jpg"), rgb(media / "justin.jpg")]
    assert len(eager.yunet.candidates(images[1])) > 2  # YuNet alone proposes more than the two faces
    assert [len(f) for f in eager.detect(images)] == [0, 2, 1]


def test_landmarks_lie_on_the_face(proposals, media: Path) -> None:
    image = rgb(media / "justin.jpg")
    (rows,) = proposals.rows([image], [proposals.yunet.candidates(image)])
    assert rows.shape == (1, 15)
    x1, y1, x2, y2 = rows[0, :4]
    xs, ys = rows[0, 5:10], rows[0, 10:15]
    assert ((x1 <= xs) & (xs <= x2) & (y1 <= ys) & (ys <= y2)).all()
    assert xs[0] < xs[1] and max(ys[0], ys[1]) < ys[2] < min(ys[3], ys[4])  # eyes, then nose, then mouth


@pytest.mark.parametrize("region_proposals", ["pnet", "yunet", "yunet_else_pnet"])
def test_regions_and_known_faces(media: Path, region_proposals: str) -> None:
    detector = build_detector(settings(region_proposals=region_proposals))
    assert isinstance(detector, PartialDetector)  # motion gating gives it parts, as it gives MTCNN
    image = rgb(media / "two_people.jpg")
    faces = detector.detect([image])[0]
    left = min(faces, key=lambda b: b.x1)
    region = FaceBox(left.x1 - 60, left.y1 - 20, left.x2 + 60, left.y2 + 60)
    (found,) = detector.detect_regions([image], [[region]])[0]
    assert iou(found, left) > 0.7
    assert detector.detect_regions([image], [[FaceBox(450, 300, 700, 600)]]) == [[]]  # no face in that region
    moved = FaceBox(left.x1 + 15, left.y1 + 10, left.x2 + 15, left.y2 + 10)
    (back,) = detector.refine([image], [[moved]])[0]
    assert iou(back, left) > iou(moved, left)


def test_needs_its_model_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='proposals = "yunet" needs detector.yunet_model'):
        load_settings(None, {"detector": {"proposals": "yunet"}})
    with pytest.raises(FileNotFoundError, match="detector.yunet_model: no file at"):
        build_detector(DetectorSettings(proposals="yunet", yunet_model=str(tmp_path / "missing.onnx")))
    with pytest.raises(ConfigError, match="region_proposals"):
        load_settings(None, {"detector": {"region_proposals": "tiles"}})
    assert DetectorSettings().proposals == "pnet"  # the default needs no YuNet file


def test_p_net_looks_where_yunet_leaves_no_face(media: Path) -> None:
    """``yunet_else_pnet``: a region where YuNet's candidates give no face (here YuNet proposes nothing at all, its
    threshold at 1) is searched by P-Net; ``yunet`` alone finds nothing there."""
    image = rgb(media / "justin.jpg")
    region = FaceBox(60, 40, 320, 340)
    blind = build_detector(settings(region_proposals="yunet", yunet_proposal_threshold=1.0))
    assert blind.detect_regions([image], [[region]]) == [[]]
    fallback = build_detector(settings(region_proposals="yunet_else_pnet", yunet_proposal_threshold=1.0))
    (face,) = fallback.detect_regions([image], [[region]])[0]
    (reference,) = build_detector(DetectorSettings(device="cpu")).detect([image])[0]
    assert iou(face, reference) > 0.7


def test_non_finite_yunet_rows_are_dropped(media: Path) -> None:
    """OpenCV's YuNet has returned NaN rows on the crowd clip: they are neither proposed nor reported."""
    detector = build_detector(settings())
    assert isinstance(detector, YunetProposalDetector)
    good = [10, 10, 50, 60, *([30.0] * 10), 0.9]

    class Net:
        def setInputSize(self, size: tuple[int, int]) -> None:
            pass

        def detect(self, image: np.ndarray) -> tuple[int, np.ndarray]:
            return 1, np.array([good, [np.nan, 10, 50, 60, *([30.0] * 10), 0.9]], np.float32)

    detector.yunet.net = Net()
    image = rgb(media / "justin.jpg")
    (row,) = detector.yunet.candidates(image, None, 1.0)
    assert row.tolist() == pytest.approx([10, 10, 60, 70, 0.9])
    assert len(detector.yunet.detect([image])[0]) == 1
