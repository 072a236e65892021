"""Detect only where and when needed (gating.*), on real clips: the motion gate skips still frames and wakes on
motion, refinement keeps the tracks full detection gives, and a person who stands still for 30 s is not lost."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from aggregator.motion import iou_matrix
from core.settings import DetectorSettings, GatingSettings, Settings
from core.types import FaceBox, FrameResult
from streamer.assembly import tracker_factory
from streamer.media import read_frames
from streamer.pipeline import Pipeline
from streamer.sources import FileSource

pytestmark = pytest.mark.timeout(240)

# woman2's face is ~110 px wide: a small detector pass keeps these clips quick on 2 shared cores.
FAST = DetectorSettings(device="cpu", max_side=320, min_face_size=60)


@pytest.fixture(scope="module")
def detector():
    from detectors import build_detector

    return build_detector(FAST)


@pytest.fixture(scope="module")
def classifier(tiny_checkpoint: Path):
    from classifier.inference import EmotionClassifier

    return EmotionClassifier.load(tiny_checkpoint, "cpu")


class Collect:
    def __init__(self):
        self.results: list[FrameResult] = []

    async def handle(self, result: FrameResult) -> None:
        self.results.append(result)

    async def close(self) -> None:
        pass


def run_clip(path: Path, detector, classifier, gating: GatingSettings, detect_every: int = 1):
    """Every frame of ``path`` through the real pipeline (tracker on); the results in order and the camera's stats."""
    s = Settings(detector=FAST.model_copy(update={"detect_every": detect_every}), gating=gating)
    sink = Collect()
    pipeline = Pipeline(s, detector, classifier, tracker_factory=tracker_factory(s), sinks=[sink])
    pipeline.add_source(FileSource(str(path), "cam", s.sources, 8))

    async def go():
        async with asyncio.timeout(200):
            await pipeline.run(until_idle=True)

    asyncio.run(go())
    return sink.results, pipeline.stats()["cam"]


def test_refine_moves_a_box_onto_the_face_and_drops_one_where_there_is_none(detector, media: Path) -> None:
    from PIL import Image

    justin = np.asarray(Image.open(media / "justin.jpg").convert("RGB"))
    empty = np.asarray(Image.open(media / "no-faces.jpg").convert("RGB"))
    (face,) = detector.detect([justin])[0]
    shift = 0.15 * face.width
    nudged = FaceBox(face.x1 + shift, face.y1 - shift, face.x2 + shift, face.y2 - shift, face.score)
    h, w = empty.shape[:2]
    refined, nothing = detector.refine([justin, empty], [[nudged], [FaceBox(w / 3, h / 3, w / 2, h / 2)]])
    assert len(refined) == 1 and nothing == []
    before = iou_matrix(np.array([nudged.xyxy]), np.array([face.xyxy]))[0, 0]
    after = iou_matrix(np.array([refined[0].xyxy]), np.array([face.xyxy]))[0, 0]
    assert after > 0.8 > before and refined[0].score >= FAST.min_confidence


def test_regions_find_the_face_full_detection_finds_in_original_pixels(detector, media: Path) -> None:
    from PIL import Image

    justin = np.asarray(Image.open(media / "justin.jpg").convert("RGB"))
    (face,) = detector.detect([justin])[0]
    region = FaceBox(face.x1 - face.width, face.y1 - face.height / 2, face.x2 + face.width / 2, face.y2 + face.height)
    h, w = justin.shape[:2]
    elsewhere = FaceBox(0, 0, min(w, 2 * FAST.min_face_size), min(h, 2 * FAST.min_face_size))
    (found,), none = detector.detect_regions([justin, justin], [[region], [elsewhere]])
    assert none == [] and iou_matrix(np.array([found.xyxy]), np.array([face.xyxy]))[0, 0] > 0.9


def test_gate_skips_the_still_scene_and_wakes_when_a_person_walks_in(detector, clips: dict[str, Path]) -> None:
    """static_scene: 10 s of an empty, still room (real H.264 noise), then a person slides in from the right."""
    from detectors.schedule import DetectionScheduler, run_jobs

    gating = GatingSettings()
    scheduler = DetectionScheduler(gating, FAST, detector)
    boxes: list[FaceBox] = []
    kinds: list[tuple[float, str]] = []
    first_face_at = None
    for image, t in read_frames(clips["static_scene"], 30 * 14):
        job = scheduler.plan(image, t, lambda b=boxes: b)
        kinds.append((t, job.kind if job else "still"))
        if job is not None:
            boxes = run_jobs(detector, [job])[0]
        if boxes and first_face_at is None:
            first_face_at = t
    before = Counter(k for t, k in kinds if t < 9.9)
    assert before["still"] >= 290 and set(before) == {"still", "full"}  # codec noise never wakes the gate
    assert before["full"] == 5  # t = 0, 2, 4, 6, 8: a full detection every gating.full_every_s
    woke = next(t for t, k in kinds if t >= 9.9 and k != "still")
    assert woke < 10.2  # the first frames of the walk-in wake the gate
    assert first_face_at is not None and first_face_at < 11.5  # and the face is found while she walks
    after = Counter(k for t, k in kinds if t >= 10.5)
    assert after["full"] <= 5 and after["regions"] + after["refine"] > 3 * after["full"], after


def test_still_person_for_30_s_keeps_her_face_and_track(detector, classifier, clips: dict[str, Path]) -> None:
    """still_person: 2 s of woman2, then the same frame for 30 s."""
    results, stats = run_clip(clips["still_person"], detector, classifier, GatingSettings())
    assert len(results) == stats.frames_processed > 30 * 30
    born = [r for r in results if any(f.track_id is not None for f in r.faces)]
    assert born and born[0].frame.seq < 15
    after_birth = results[born[0].frame.seq:]
    assert all(len(r.faces) == 1 and r.faces[0].track_id == 1 for r in after_birth)  # never lost, never renamed
    assert results[-1].frame.captured_at - results[0].frame.captured_at > 31
    frozen = len(results) - 2 * 30
    assert stats.frames_still > 0.9 * frozen  # the frozen 30 s are carried, not detected ...
    assert 14 <= stats.frames_full <= 20  # ... but a full detection still looks every 2 s


def test_refinement_keeps_the_tracks_of_full_detection_on_woman2(detector, classifier, media: Path) -> None:
    full, full_stats = run_clip(media / "woman2.mp4", detector, classifier, GatingSettings(enabled=False))
    gated, gated_stats = run_clip(media / "woman2.mp4", detector, classifier, GatingSettings())
    assert full_stats.frames_full == full_stats.frames_processed == gated_stats.frames_processed == 464
    assert gated_stats.frames_full < 20 and gated_stats.frames_refined > 0.6 * 464  # refinement did the work
    tracks = [{f.track_id for r in run for f in r.faces if f.track_id is not None} for run in (full, gated)]
    assert tracks[0] == tracks[1] == {1}  # one woman, one track, as with full detection on every frame
    ious = []
    for a, b in zip(full, gated):
        assert a.frame.seq == b.frame.seq and len(a.faces) == len(b.faces) == 1
        ious.append(iou_matrix(np.array([a.faces[0].box.xyxy]), np.array([b.faces[0].box.xyxy]))[0, 0])
    assert np.mean(ious) > 0.85 and np.percentile(ious, 5) > 0.7
