"""``gating.discover_every_s``: motion away from known faces is searched for new faces at most that often; the
frames between refine the known faces, and the next search covers everything that changed since the last one, so a
face that walks in and stops between two searches is still found. On real MTCNN and real 1080p pictures: the crowd
clip's figures are in docs/performance.md (``deepfer bench crowd --variants configured,discover-0.2``)."""

from __future__ import annotations

import numpy as np
import pytest

from deepfer_core.settings import DetectorSettings, GatingSettings
from deepfer_core.types import FaceBox
from detectors.schedule import DetectionScheduler, Plan, run_jobs

pytestmark = pytest.mark.timeout(240)

W, H, FPS = 1920, 1080, 25
KNOWN = FaceBox(100, 100, 180, 180, 0.99)  # a face standing still at the top left
SETTINGS = DetectorSettings(device="cpu")


@pytest.fixture(scope="module")
def detector():
    from detectors import build_detector

    return build_detector(SETTINGS)


def frame(blob_x: int | None, blob_y: int = 600, size: int = 80) -> np.ndarray:
    """A grey 1080p picture, with a bright square at ``blob_x`` (something moving, away from the known face)."""
    image = np.full((H, W, 3), 60, np.uint8)
    if blob_x is not None:
        image[blob_y : blob_y + size, blob_x : blob_x + size] = 220
    return image


def plans(scheduler: DetectionScheduler, frames: list[np.ndarray]) -> list[Plan]:
    return [scheduler.plan(f, i / FPS, lambda: [KNOWN]) for i, f in enumerate(frames)]


def covers(regions: list[FaceBox], x: int, y: int, size: int = 80) -> bool:
    return any(r.x1 <= x and r.y1 <= y and r.x2 >= x + size and r.y2 >= y + size for r in regions)


@pytest.mark.parametrize("every, searched", [(0.0, list(range(1, 13))), (0.12, [3, 6, 9, 12]), (0.2, [5, 10])])
def test_motion_away_from_known_faces_is_searched_at_most_every_discover_every_s(detector, every, searched):
    """Something moves across the picture on every frame: with 0 every frame searches its regions (as before the
    setting), with 0.12 s every third frame at 25 fps; the frames between refine the known face."""
    scheduler = DetectionScheduler(GatingSettings(discover_every_s=every), SETTINGS, detector)
    got = plans(scheduler, [frame(600 + 30 * i) for i in range(13)])
    assert got[0].kind == "full"  # the first frame: a full detection (it counts as a search)
    assert [i for i, p in enumerate(got) if p.kind == "regions"] == searched
    between = [p for i, p in enumerate(got[1:], 1) if i not in searched]
    assert all(p.kind == "refine" and p.now is not None and p.now.known == [KNOWN] for p in between)
    for i in searched:  # the search covers where the square is now
        now = got[i].now
        assert now is not None and covers(now.regions, 600 + 30 * i, 600) and now.known == [KNOWN]


def test_a_face_that_walks_in_and_stops_between_two_searches_is_searched_at_the_next(detector):
    """The square appears on frame 1 and stays put: the gate sees no motion from frame 2 on (it compares with the
    last frame it accepted), yet the next search (frame 3) looks where the square is; later frames do not."""
    scheduler = DetectionScheduler(GatingSettings(discover_every_s=0.12), SETTINGS, detector)
    got = plans(scheduler, [frame(None)] + [frame(900)] * 9)
    assert [p.kind for p in got[:4]] == ["full", "refine", "still", "regions"]
    now = got[3].now
    assert now is not None and covers(now.regions, 900, 600)
    assert all(p.kind == "still" for p in got[4:])  # searched once: nothing changed since


def test_a_real_face_that_appears_between_searches_is_found_at_the_next(detector, media):
    """justin.jpg pasted onto an empty 1080p picture on frame 1: run_jobs with real MTCNN finds it on frame 3, the
    first search after it appeared, with the plans discover_every_s = 0.12 makes."""
    from PIL import Image

    face = np.asarray(Image.open(media / "justin.jpg").convert("RGB").resize((240, 240)))
    empty, with_face = frame(None), frame(None)
    with_face[500:740, 1200:1440] = face
    scheduler = DetectionScheduler(GatingSettings(discover_every_s=0.12), SETTINGS, detector)
    found: list[list[FaceBox]] = []
    for i, image in enumerate([empty] + [with_face] * 4):
        plan = scheduler.plan(image, i / FPS, lambda: [KNOWN])
        found.append(run_jobs(detector, [plan.now])[0] if plan.now is not None else [])
    assert [len([b for b in f if b.x1 > 1000]) for f in found] == [0, 0, 0, 1, 0]
    (new,) = [b for b in found[3] if b.x1 > 1000]
    assert 1200 <= new.x1 + 1 and new.x2 <= 1441 and 500 <= new.y1 + 1 and new.y2 <= 741
