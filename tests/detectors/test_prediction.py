"""``gating.follow_motion``: refinement looks for each known face where its velocity puts it now, so a walker on a
camera that analyses frames far apart stays under its box (``detectors/prediction.py``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aggregator.kalman import iou_matrix
from deepfer_core.settings import DetectorSettings, GatingSettings
from deepfer_core.types import FaceBox
from detectors.prediction import FaceMotion
from detectors.schedule import DetectionScheduler, run_jobs

pytestmark = pytest.mark.timeout(240)


def box(x: float, y: float, size: float = 40) -> FaceBox:
    return FaceBox(x, y, x + size, y + size, 0.99)


def at(boxes: list[FaceBox]) -> list[tuple[float, ...]]:
    """Corners to a thousandth of a pixel (the velocity is a ratio of float seconds)."""
    return [tuple(round(v, 3) for v in b.xyxy) for b in boxes]


def test_a_face_moves_on_by_its_velocity_since_the_detection_before() -> None:
    motion = FaceMotion(max_shift=1.0)
    assert motion.predict([box(100, 100)], at=0.0, t=0.2) == [box(100, 100)]  # one detection: no velocity yet
    moved = motion.predict([box(120, 90)], at=0.2, t=0.4)  # 20 px right, 10 up in 0.2 s: the same again by 0.4 s
    assert at(moved) == at([box(140, 80)]) and moved[0].score == 0.99
    assert at(motion.predict([box(120, 90)], at=0.2, t=0.3)) == at([box(130, 85)])  # half the time, half the way
    assert motion.predict([box(120, 90)], at=0.2, t=0.2) == [box(120, 90)]  # no time passed


def test_a_face_expected_within_refinements_reach_stays_where_it_was_detected() -> None:
    """Refinement follows a fifth of a box by itself; below that, a small face's velocity is mostly jitter."""
    motion = FaceMotion(max_shift=1.0)
    motion.predict([box(100, 100)], 0.0, 0.04)
    assert motion.predict([box(103, 101)], 0.04, 0.08) == [box(103, 101)]  # 3 px of a 40 px box: not moved
    assert at(motion.predict([box(103, 101)], 0.04, 0.2)) == at([box(115, 105)])  # 4 frames on: 12.6 px, moved


def test_the_shift_is_capped_at_max_shift_box_sizes() -> None:
    motion = FaceMotion(max_shift=0.5)
    motion.predict([box(100, 100)], 0.0, 0.1)
    moved = motion.predict([box(130, 100)], 0.1, 0.5)  # 30 px in 0.1 s: 120 px more by 0.5 s, capped to 20
    assert at(moved) == at([box(150, 100)])


def test_faces_pair_with_the_nearest_box_of_a_similar_size_or_stay() -> None:
    motion = FaceMotion(max_shift=2.0)
    motion.predict([box(100, 100), box(400, 100, 120), box(800, 800)], 0.0, 0.1)
    near, big, alone = motion.predict([box(110, 100), box(400, 100, 40), box(1500, 100)], 0.1, 0.2)
    assert at([near]) == at([box(120, 100)])
    assert big == box(400, 100, 40)  # only a box three times its size was near: not the same face
    assert alone == box(1500, 100)  # nobody near before: a new face stays where it was found


@pytest.fixture(scope="module")
def walker(media: Path) -> tuple[list[np.ndarray], list[FaceBox]]:
    """justin.jpg's face at about 80 px walking right 30 px per frame (a 150 px/s walk seen every 0.2 s, as a live
    1080p crowd camera short of CPU analyses it) on a grey 1080p picture; its box per frame."""
    from detectors.mtcnn import MtcnnDetector

    photo = cv2.cvtColor(cv2.imread(str(media / "justin.jpg")), cv2.COLOR_BGR2RGB)
    face = MtcnnDetector(DetectorSettings(device="cpu", max_side=4000)).detect([photo])[0][0]
    x1, y1 = max(0, int(face.x1 - 0.5 * face.width)), max(0, int(face.y1 - 0.5 * face.height))
    x2, y2 = int(face.x2 + 0.5 * face.width), int(face.y2 + 0.5 * face.height)
    k = 80 / face.width
    crop = cv2.resize(photo[y1:y2, x1:x2], None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    frames, truth = [], []
    for i in range(10):
        frame = np.full((1080, 1920, 3), 110, np.uint8)
        ox, oy = 500 + 30 * i, 480
        frame[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
        frames.append(frame)
        fx, fy = ox + (face.x1 - x1) * k, oy + (face.y1 - y1) * k
        truth.append(FaceBox(fx, fy, fx + face.width * k, fy + face.height * k))
    return frames, truth


def _walk(frames: list[np.ndarray], follow: bool, detector) -> tuple[list[list[FaceBox]], list[list[FaceBox]]]:
    """The scheduler and real MTCNN over the walk, frames 0.2 s apart; each frame's known boxes (where refinement
    looked) and its faces."""
    scheduler = DetectionScheduler(GatingSettings(follow_motion=follow), detector.settings, detector)
    boxes: list[FaceBox] = []
    looked, found = [], []
    for i, frame in enumerate(frames):
        plan = scheduler.plan(frame, 0.2 * i, lambda b=boxes: b)
        assert plan.now is not None
        looked.append(plan.now.known)
        boxes = run_jobs(detector, [plan.now])[0]
        found.append(boxes)
    return looked, found


def test_refinement_looks_where_a_walker_is_now_not_where_it_was(walker) -> None:
    from detectors.mtcnn import MtcnnDetector

    frames, truth = walker
    detector = MtcnnDetector(DetectorSettings(device="cpu"))

    def overlap(boxes: list[FaceBox], true: FaceBox) -> float:
        return float(iou_matrix(np.array([b.xyxy for b in boxes]), np.array([true.xyxy])).max()) if boxes else 0.0

    looked, found = _walk(frames, True, detector)
    assert all(overlap(f, t) > 0.7 for f, t in zip(found, truth))  # the face on every frame
    following = [overlap(k, t) for k, t in zip(looked[2:], truth[2:])]  # a velocity from the second frame on
    assert min(following) > 0.7, following

    looked_off, found_off = _walk(frames, False, detector)
    assert all(overlap(f, t) > 0.7 for f, t in zip(found_off, truth))  # found too (a search where it was) ...
    behind = [overlap(k, t) for k, t in zip(looked_off[2:], truth[2:])]
    assert max(behind) < 0.6, behind  # ... but refinement looked a third of a face behind it
