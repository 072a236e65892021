"""Detect only where and when needed (gating.*), on real clips: the motion gate skips still frames and wakes on
motion, refinement keeps the tracks full detection gives, and a person who stands still for 30 s is not lost."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from aggregator.kalman import iou_matrix
from deepfer_core.settings import DetectorSettings, GatingSettings, Settings
from deepfer_core.types import FaceBox, FrameResult
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
        plan = scheduler.plan(image, t, lambda b=boxes: b)
        job = plan.now
        kinds.append((t, plan.kind))
        if job is not None:
            boxes = run_jobs(detector, [job])[0]
        if boxes and first_face_at is None:
            first_face_at = t
    before = Counter(k for t, k in kinds if t < 9.9)
    assert before["still"] >= 290 and set(before) == {"still", "full"}  # codec noise never wakes the gate
    # t = 0 only: at 2, 4, 6 and 8 s the picture is as the full detection at 0 saw it (gating.still_full_every_s: 10 s)
    assert before["full"] == 1 and kinds[0] == (0.0, "full")
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
    # ... a full detection still looks every gating.still_full_every_s (10 s) while the picture is unchanged since the
    # last one (every 2 s, full_every_s, it would be 16 or more)
    assert 4 <= stats.frames_full <= 7


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


def test_the_gate_reads_the_luma_plane_as_it_would_read_rgb(clips: dict[str, Path]) -> None:
    """Cheaper pixels: the gate reads the decoder's Y plane (no RGB conversion) and sees what it saw in RGB."""
    import av

    from detectors.motion import MotionGate
    from streamer.media import picture

    gates = {"luma": MotionGate(GatingSettings()), "rgb": MotionGate(GatingSettings())}
    still: dict[str, list[bool]] = {"luma": [], "rgb": []}
    with av.open(str(clips["static_scene"])) as container:
        for frame in container.decode(video=0):
            pixels = picture(frame)
            assert pixels.luma is not None and not pixels.converted
            for name, seen in (("luma", pixels), ("rgb", frame.to_ndarray(format="rgb24"))):
                motion = gates[name].check(seen)
                still[name].append(motion.still)
                if not motion.still:
                    gates[name].accept(motion)
            assert not pixels.converted  # the gate never asked for colour
    grey_gap = np.abs(gates["luma"].reference.astype(int) - gates["rgb"].reference.astype(int))
    assert grey_gap.max() < GatingSettings().pixel_threshold  # the same grey levels, within codec rounding
    walk_in = 300  # 10 s at 30 fps
    luma, rgb = np.array(still["luma"]), np.array(still["rgb"])
    assert luma[1:walk_in].all() and rgb[1:walk_in].all()  # the empty room: still for both, codec noise and all
    assert not luma[walk_in:walk_in + 6].all() and not rgb[walk_in:walk_in + 6].all()  # both wake as she walks in
    # after that each gate's reference follows its own accepted frames, so single frames differ; the totals do not
    assert abs(int(luma[walk_in:].sum()) - int(rgb[walk_in:].sum())) <= 0.05 * (len(luma) - walk_in)


def test_still_frames_are_never_converted_to_rgb(detector, classifier, clips: dict[str, Path]) -> None:
    """Frames nothing moved on reach the sinks as decoded (YUV): the gate, the tracker and the carried emotions need
    no colour; the frames the detector looked at were converted, once."""
    results, stats = run_clip(clips["static_scene"], detector, classifier, GatingSettings())
    empty_room = [r for r in results if r.frame.captured_at - results[0].frame.captured_at < 9.9]
    assert len(empty_room) > 290
    converted = [r.frame.seq for r in empty_room if r.frame.pixels.converted]
    # the full detection at t = 0 and the one gating.still_full_every_s later (the camera's phase puts it at 9 s)
    assert converted[0] == 0 and len(converted) <= 2, converted
    later = [r for r in results if r.faces]
    assert later and all(r.frame.pixels.converted for r in later if r.faces[0].detected)


def test_a_still_scene_is_looked_at_whole_every_still_full_every_s(detector, clips: dict[str, Path]) -> None:
    from detectors.schedule import DetectionScheduler

    scheduler = DetectionScheduler(GatingSettings(still_full_every_s=3.0), FAST, detector)
    fulls = [t for image, t in read_frames(clips["static_scene"], 290) if scheduler.plan(image, t, list).kind == "full"]
    assert [round(t) for t in fulls] == [0, 3, 6, 9]


def test_a_full_detection_beside_a_live_stream_adds_the_faces_it_finds(detector, media: Path) -> None:
    """Live cameras: the frame a full detection was planned on gets its known face refined at once; the face the full
    pass finds that nobody knew is refined from the next frame on; no second full pass starts before it answers."""
    from PIL import Image

    from detectors.schedule import DetectionScheduler, run_jobs

    picture = np.asarray(Image.open(media / "two_people.jpg").convert("RGB"))
    left, right = sorted(detector.detect([picture])[0], key=lambda b: b.x1)
    scheduler = DetectionScheduler(GatingSettings(), FAST, detector, beside=True)
    plan = scheduler.plan(picture, 0.0, lambda: [right])  # the camera knows one of the two
    assert plan.kind == "full" and plan.beside is not None and plan.beside.full
    assert plan.now is not None and plan.now.kind == "refine" and plan.now.known == [right]
    assert len(run_jobs(detector, [plan.now])[0]) == 1  # the frame's own answer: its known face, refined
    for t in (0.1, 2.5, 5.0):  # the same picture while the full pass runs: nothing to do, no second one
        assert scheduler.plan(picture, t, lambda: [right]).kind == "still"
    scheduler.found(run_jobs(detector, [plan.beside])[0])
    nxt = scheduler.plan(picture, 5.1, lambda: [right])
    assert nxt.now is not None and nxt.now.kind == "refine" and len(nxt.now.known) == 2  # right once, left joined
    refined = sorted(run_jobs(detector, [nxt.now])[0], key=lambda b: b.x1)
    for got, want in zip(refined, (left, right), strict=True):
        assert iou_matrix(np.array([got.xyxy]), np.array([want.xyxy]))[0, 0] > 0.8
    assert scheduler.counts.full == 1 and scheduler.counts.beside == 1


def test_a_live_camera_runs_its_full_detections_beside_the_stream(detector, classifier, media: Path) -> None:
    """woman2 played as a live camera: after the first (awaited) full detection every periodic one runs beside the
    stream, and her face and track are kept on every frame."""
    s = Settings(detector=FAST, gating=GatingSettings())
    sink = Collect()
    pipeline = Pipeline(s, detector, classifier, tracker_factory=tracker_factory(s), sinks=[sink])
    pipeline.add_source(FileSource(str(media / "woman2.mp4"), "cam", s.sources, 2, live=True))

    async def go():
        async with asyncio.timeout(60):
            await pipeline.run(until_idle=True)

    asyncio.run(go())
    stats = pipeline.stats()["cam"]
    assert stats.frames_full_beside >= 4 and stats.frames_full - stats.frames_full_beside <= 1
    results = sink.results
    assert len(results) > 0.8 * 464
    first = next(i for i, r in enumerate(results) if r.faces and r.faces[0].track_id is not None)
    assert first < 15 and all([f.track_id for f in r.faces] == [1] for r in results[first:])


def test_a_face_on_a_still_picture_becomes_a_track_at_once(detector, classifier, clips: dict[str, Path]) -> None:
    """expression_change: one still face for 6 s, then another still one at the same place. Nothing moves, yet the
    tracker needs tracker.min_hits detected frames to confirm a face: the faces a detection finds are refined on the
    next frames (DetectionScheduler confirm), instead of waiting for full detections gating.still_full_every_s
    apart."""
    results, stats = run_clip(clips["expression_change"], detector, classifier, GatingSettings())
    start = results[0].frame.captured_at
    born = [r.frame.captured_at - start for r in results if any(f.track_id is not None for f in r.faces)]
    assert born and born[0] < 0.3
    first = next(i for i, r in enumerate(results) if r.faces and r.faces[0].track_id is not None)
    assert all([f.track_id for f in r.faces] == [1] for r in results[first:])  # the same track across the cut
    assert stats.frames_still > 0.8 * stats.frames_processed  # and the still frames are still skipped


@pytest.mark.parametrize("lost_search_s", [1.0, 0.0])
def test_a_face_lost_on_one_frame_is_looked_for_where_it_was(detector, media: Path, lost_search_s: float) -> None:
    """Issue 31, bug 7: a face the detector missed on one frame (a blink) was not looked for again while nothing
    moved, so a still person vanished until the next full detection. Now it is refined where it was, on the frames
    the detector sees for ``gating.lost_search_s``; with 0 (the old behaviour) the still picture gets nothing."""
    from PIL import Image

    from detectors.schedule import DetectionScheduler

    picture = np.asarray(Image.open(media / "two_people.jpg").convert("RGB"))
    face = detector.detect([picture])[0][0]
    scheduler = DetectionScheduler(GatingSettings(lost_search_s=lost_search_s), FAST, detector, confirm=3)
    assert scheduler.plan(picture, 0.0, list).kind == "full"
    for t, known in ((0.1, [face]), (0.2, [face]), (0.3, [])):  # confirming; at 0.3 s the face was lost
        scheduler.plan(picture, t, lambda known=known: known)
    plans = [scheduler.plan(picture, t, list) for t in (0.4, 0.8, 1.6)]  # nothing moves; the face stays lost
    if lost_search_s:
        assert [p.kind for p in plans[:2]] == ["refine", "refine"]
        assert all(p.now is not None and p.now.known == [face] for p in plans[:2])
        assert plans[2].kind == "still"  # 1.3 s after it was lost: given up
    else:
        assert [p.kind for p in plans] == ["still", "still", "still"]


def test_a_lost_face_is_looked_for_at_sizes_near_its_own(media: Path) -> None:
    """``gating.lost_min_face``: the search where a lost face was skips the pyramid's small scales (most of MTCNN's
    cost); the face is found at its own size, and a face smaller than asked for is not."""
    from PIL import Image

    from detectors.mtcnn import MtcnnDetector
    from detectors.schedule import DetectJob, run_jobs

    detector = MtcnnDetector(DetectorSettings(device="cpu"))
    justin = np.asarray(Image.open(media / "justin.jpg").convert("RGB"))
    (face,) = detector.detect([justin])[0]
    size = max(face.width, face.height)
    region = FaceBox(face.x1 - face.width, face.y1 - face.height, face.x2 + face.width, face.y2 + face.height)
    (at_own,), (any_size,), (none,) = (detector.detect_regions([justin], [[region]], [[m]]) for m in
                                       (0.6 * size, 0.0, 1.5 * size))
    assert at_own and none == [] and iou_matrix(np.array([at_own[0].xyxy]), np.array([face.xyxy]))[0, 0] > 0.9
    assert iou_matrix(np.array([any_size[0].xyxy]), np.array([at_own[0].xyxy]))[0, 0] > 0.9
    # through run_jobs: a box refinement loses (moved off the face) is looked for with the job's lost_min_face
    off = FaceBox(face.x1 + 0.9 * face.width, face.y1, face.x2 + 0.9 * face.width, face.y2)
    for fraction, found in ((0.6, 1), (1.6, 0)):
        boxes = run_jobs(detector, [DetectJob(justin, full=False, known=[off], lost_min_face=fraction)])[0]
        assert len(boxes) == found, (fraction, boxes)
    assert GatingSettings().lost_min_face == 0.6
