"""Issue 32: a face too small or too unsure to read is a person with no emotion, kept out of the mix."""

from __future__ import annotations

import time

import numpy as np
import pytest

from aggregator import analytics
from aggregator.redis_sink import RedisSink
from aggregator.timeseries import EmotionTimeSeries
from aggregator.tracker import FaceTracker
from deepfer_core.confidence import is_confident
from deepfer_core.settings import ConfidenceSettings, SmoothingSettings, TrackerSettings
from deepfer_core.types import EMOTIONS, UNCERTAIN, FaceBox, FaceResult, Frame, FrameResult
from tests.redis_helpers import redis_settings

pytestmark = pytest.mark.timeout(60)


def peaked(emotion: str = "happy", p: float = 0.97) -> np.ndarray:
    probs = np.full(7, (1 - p) / 6, np.float32)
    probs[EMOTIONS.index(emotion)] = p
    return probs


def frame(seq: int, t: float, boxes: list[FaceBox], probs: list[np.ndarray]) -> FrameResult:
    faces = [FaceResult(b, p) for b, p in zip(boxes, probs)]
    return FrameResult(Frame("door", seq, t, np.zeros((2, 2, 3), np.uint8)), faces, processed_at=t)


def test_the_rule() -> None:
    s = ConfidenceSettings(min_face_px=20, min_probability=0.5)
    assert is_confident(FaceBox(0, 0, 40, 40), peaked(), s)
    assert not is_confident(FaceBox(0, 0, 12, 12), peaked(p=1.0), s)  # tiny: no probability is enough
    assert not is_confident(FaceBox(0, 0, 40, 40), peaked(p=0.45), s)  # big but unsure
    assert is_confident(FaceBox(0, 0, 12, 12), peaked(p=0.3), ConfidenceSettings(enabled=False))


def test_a_tiny_face_never_gets_a_confident_label() -> None:
    tracker = FaceTracker(TrackerSettings(min_hits=1), SmoothingSettings(), ConfidenceSettings())
    tiny, big = FaceBox(10, 10, 22, 22), FaceBox(100, 10, 180, 90)
    out = None
    for i in range(30):
        out = tracker.update(frame(i, 100 + i / 10, [tiny, big], [peaked("happy", 0.99), peaked("sad", 0.99)]))
        small = out.faces[0]
        assert small.track_id is not None  # tracked and counted as a person
        assert not small.confident and small.label == UNCERTAIN and small.emotion == UNCERTAIN
        assert small.to_dict()["emotion"] == UNCERTAIN and small.to_dict()["confident"] is False
        assert 0 < small.confidence <= 1
    assert out is not None
    assert out.faces[1].confident and out.faces[1].emotion == "sad"
    assert tracker.track_count == 2


def test_an_unsure_face_is_uncertain_until_it_is_sure() -> None:
    tracker = FaceTracker(TrackerSettings(min_hits=1), SmoothingSettings(), ConfidenceSettings(min_probability=0.5))
    box = FaceBox(10, 10, 90, 90)
    flat = np.full(7, 1 / 7, np.float32)
    assert tracker.update(frame(0, 100.0, [box], [flat])).faces[0].emotion == UNCERTAIN
    shown = [tracker.update(frame(i, 100 + i / 10, [box], [peaked("happy")])).faces[0].emotion for i in range(1, 60)]
    assert shown[-1] == "happy" and UNCERTAIN in shown[:3]


def test_the_tracker_without_settings_gates_nothing() -> None:
    tracker = FaceTracker(TrackerSettings(min_hits=1), SmoothingSettings())
    out = tracker.update(frame(0, 100.0, [FaceBox(0, 0, 8, 8)], [peaked(p=0.2)]))
    assert out.faces[0].confident and out.faces[0].emotion == "happy"


def test_uncertain_points_are_people_but_not_mix() -> None:
    counts = {e: {"happy": 3, "sad": 1}.get(e, 0) for e in EMOTIONS}
    b = analytics.bucket_dict(0.0, 60, points=10, counts=counts, people=4, dwell=8.0)
    assert b["emotion_mix"]["happy"] == 0.75 and b["satisfaction"] == 0.5
    assert b["confident_share"] == 0.4 and b["points"] == 10 and b["unique_people"] == 4
    t = analytics.totals([b], 4)
    assert t["points"] == 10 and t["confident_share"] == 0.4 and t["satisfaction"] == 0.5
    assert analytics.bucket_dict(0.0, 60, 0, dict.fromkeys(EMOTIONS, 0), 0, 0.0)["confident_share"] is None


async def test_uncertain_faces_do_not_enter_the_stored_mix(redis_url, key_prefix, tmp_path) -> None:
    settings = redis_settings(key_prefix, points_per_s=0)
    sink = RedisSink(settings, redis_url, tmp_path)
    tracker = FaceTracker(TrackerSettings(min_hits=1), SmoothingSettings(), ConfidenceSettings())
    t0 = float(int(time.time()) // 60 * 60)
    tiny, big = FaceBox(10, 10, 22, 22), FaceBox(100, 10, 180, 90)
    for i in range(20):
        await sink.handle(tracker.update(frame(i, t0 + i / 10, [tiny, big], [peaked("sad"), peaked("happy")])))
    assert await sink.flush(10)
    await sink.close()
    ts = EmotionTimeSeries.from_url(redis_url, settings)
    try:
        (m,) = await ts.rollup("door", "minute", t0, t0 + 60)
        assert m.points == 40 and m.unique_people == 2  # the tiny face is a person
        assert m.emotion_points["happy"] == 20 and m.emotion_points["sad"] == 0
        row = analytics.from_bucket(m)
        assert row["emotion_mix"]["happy"] == 1.0 and row["satisfaction"] == 1.0 and row["confident_share"] == 0.5
        people = {p.track_id: p for p in await ts.people("door")}
        assert people[1].label == UNCERTAIN and people[2].label == "happy"
        series = await ts.series("door", people[1].person_id)
        assert series[-1].label == UNCERTAIN
    finally:
        await ts.aclose()


def test_a_still_image_marks_its_tiny_face_uncertain() -> None:
    from streamer.analysis import analyse_images

    class Detector:
        name = "fixed"

        def detect(self, images):
            return [[FaceBox(5, 5, 17, 17), FaceBox(40, 40, 140, 140)] for _ in images]

    class Classifier:
        name = "peaked"

        def predict_faces(self, faces, batch_size=256):
            return np.stack([peaked() for _ in faces])

    image = np.zeros((200, 200, 3), np.uint8)
    (faces,) = analyse_images([image], Detector(), Classifier(), 0.2, confidence=ConfidenceSettings())
    assert [f.emotion for f in faces] == [UNCERTAIN, "happy"] and [f.confident for f in faces] == [False, True]
    (plain,) = analyse_images([image], Detector(), Classifier(), 0.2)  # no settings: nothing gated
    assert [f.emotion for f in plain] == ["happy", "happy"]
