"""FaceTracker and EmotionSmoother on constructed box sequences and signals (no video needed)."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.smoothing import EmotionSmoother
from aggregator.tracker import FaceTracker
from deepfer_core.settings import SmoothingSettings, TrackerSettings
from deepfer_core.types import EMOTIONS, FaceBox, FaceResult, Frame, FrameResult

IMAGE = np.zeros((4, 4, 3), np.uint8)  # the tracker never looks at pixels
NEUTRAL = np.eye(7, dtype=np.float32)[EMOTIONS.index("neutral")]


def frame(seq: int, t: float, boxes: list[tuple[float, float, float, float]], detected: bool = True,
          probs: np.ndarray = NEUTRAL) -> FrameResult:
    faces = [FaceResult(FaceBox(*b, score=0.99), probs, detected=detected) for b in boxes]
    return FrameResult(Frame("cam", seq, t, IMAGE), faces, processed_at=t)


def square(x: float, y: float, side: float = 80) -> tuple[float, float, float, float]:
    return (x, y, x + side, y + side)


def ids(result: FrameResult) -> list[int | None]:
    return [f.track_id for f in result.faces]


def test_birth_after_min_hits_and_carried_boxes_do_not_count():
    tracker = FaceTracker(TrackerSettings(min_hits=3), SmoothingSettings())
    box = [square(100, 100)]
    assert ids(tracker.update(frame(0, 0.0, box))) == [None]
    assert ids(tracker.update(frame(1, 0.1, box, detected=False))) == [None]  # carried: alive, not a hit
    assert ids(tracker.update(frame(2, 0.2, box))) == [None]
    out = tracker.update(frame(3, 0.3, box))
    assert ids(out) == [1]
    face = out.faces[0]
    assert face.smoothed is not None and face.smoothed.dtype == np.float32 and face.smoothed.shape == (7,)
    assert face.label == "neutral"
    assert tracker.track_count == 1


def test_one_frame_false_detection_never_becomes_a_track():
    tracker = FaceTracker(TrackerSettings(min_hits=2), SmoothingSettings())
    tracker.update(frame(0, 0.0, [square(300, 50)]))
    for i in range(1, 5):
        assert ids(tracker.update(frame(i, i / 10, [square(10, 10)])))[0] in (None, 1)
    assert tracker.track_count == 1  # the face at (10, 10); the lone box at (300, 50) was dropped
    assert ids(tracker.update(frame(5, 0.5, [square(10, 10), square(300, 50)]))) == [1, None]


def crossing(fps: float, hidden: range = range(0), offset: float = 30) -> list[FrameResult]:
    """A moves right, B moves left (B a little lower); they cross at x=200. B is not detected in frames ``hidden``."""
    frames = []
    for i in range(41):
        t = i / fps
        a = square(40 + 8 * i, 100)
        b = square(360 - 8 * i, 100 + offset)
        frames.append(frame(i, t, [a] if i in hidden else [a, b]))
    return frames


def track_of(tracker: FaceTracker, frames: list[FrameResult]) -> list[dict[str, int | None]]:
    """Per frame: which id the left-to-right face (first box) and the right-to-left face (second box) got."""
    out = []
    for f in frames:
        r = tracker.update(f)
        out.append({"a": r.faces[0].track_id, "b": r.faces[1].track_id if len(r.faces) > 1 else None})
    return out


@pytest.mark.parametrize("use_kalman", [True, False])
def test_crossing_faces_keep_their_ids(use_kalman):
    tracker = FaceTracker(TrackerSettings(min_hits=2, use_kalman=use_kalman), SmoothingSettings())
    seen = track_of(tracker, crossing(fps=25))
    assert {s["a"] for s in seen[2:]} == {1} and {s["b"] for s in seen[2:]} == {2}
    assert tracker.track_count == 2


def test_crossing_with_one_face_hidden_keeps_ids_thanks_to_motion_model():
    """B is hidden behind A while they cross; the Kalman prediction carries B across the gap."""
    hidden = range(17, 25)  # B hidden around the crossing at frame 20
    tracker = FaceTracker(TrackerSettings(min_hits=2, use_kalman=True), SmoothingSettings())
    seen = track_of(tracker, crossing(fps=25, hidden=hidden, offset=0))
    assert {s["a"] for s in seen[2:]} == {1}
    assert {s["b"] for i, s in enumerate(seen[2:], 2) if i not in hidden} == {2}
    assert tracker.track_count == 2

    # Without a motion model, B reappears far from where it was lost and is counted again.
    still = FaceTracker(TrackerSettings(min_hits=2, use_kalman=False), SmoothingSettings())
    track_of(still, crossing(fps=25, hidden=hidden, offset=0))
    assert still.track_count == 3


@pytest.mark.parametrize("use_kalman", [True, False])
def test_occlusion_gap_shorter_than_max_age_keeps_id_longer_gives_new_id(use_kalman):
    settings = TrackerSettings(min_hits=2, max_age_s=1.0, use_kalman=use_kalman)
    tracker = FaceTracker(settings, SmoothingSettings())
    t = 0.0
    for i in range(10):  # 1 s in view, slight jitter
        t = i * 0.1
        last = tracker.update(frame(i, t, [square(100 + (i % 2), 100)]))
    assert ids(last) == [1]
    for i in range(10, 18):  # 0.8 s with no face
        assert tracker.update(frame(i, i * 0.1, [])).faces == []
    back = tracker.update(frame(18, 1.8, [square(101, 100)]))
    assert ids(back) == [1]  # gap 0.9 s < max_age_s: same person

    for i in range(19, 35):  # 1.6 s away: the track dies
        tracker.update(frame(i, i * 0.1, []))
    assert tracker.tracks == []
    reentry = [tracker.update(frame(i, i * 0.1, [square(101, 100)])) for i in range(35, 38)]
    assert ids(reentry[0]) == [None] and ids(reentry[-1]) == [2]
    assert tracker.track_count == 2


def test_two_faces_far_apart_get_distinct_stable_ids_in_detection_order():
    tracker = FaceTracker(TrackerSettings(min_hits=1), SmoothingSettings())
    first = tracker.update(frame(0, 0.0, [square(0, 0), square(300, 0)]))
    assert ids(first) == [1, 2]
    swapped = tracker.update(frame(1, 0.04, [square(302, 0), square(2, 0)]))  # detector order changes
    assert ids(swapped) == [2, 1]


def step_signal(fps: float, seconds: float = 4.0) -> list[tuple[float, np.ndarray]]:
    """Happy for 2 s, then sad."""
    happy, sad = np.eye(7, dtype=np.float32)[[EMOTIONS.index("happy"), EMOTIONS.index("sad")]]
    n = int(round(seconds * fps))
    return [(i / fps, happy if i / fps < 2.0 - 1e-9 else sad) for i in range(n + 1)]


def smoothed_at(samples: list[tuple[float, np.ndarray]], times: list[float], settings: SmoothingSettings) -> np.ndarray:
    smoother = EmotionSmoother(settings)
    out = {}
    for t, p in samples:
        out[round(t, 6)] = smoother.update(p, t)[0]
    return np.array([out[round(t, 6)] for t in times])


def test_smoothing_is_frame_rate_independent():
    settings = SmoothingSettings(half_life_s=0.5)
    times = [1.0, 2.5, 3.0, 4.0]  # present at both rates
    at10 = smoothed_at(step_signal(10), times, settings)
    at30 = smoothed_at(step_signal(30), times, settings)
    sad = EMOTIONS.index("sad")
    assert np.abs(at10 - at30).max() < 0.03  # what is left: a step seen at 10 fps is only known to within 0.1 s
    # One half-life after the step the new emotion has about half the weight, whatever the rate.
    assert 0.45 < at30[1, sad] < 0.55 and 0.45 < at10[1, sad] < 0.6

    # A smooth change (happy fading into sad over 2 s) gives the same curve at both rates.
    def fade(fps):
        hs = np.eye(7, dtype=np.float32)[[EMOTIONS.index("happy"), EMOTIONS.index("sad")]]
        return [(i / fps, (1 - w) * hs[0] + w * hs[1]) for i in range(int(4 * fps) + 1)
                for w in [float(np.clip((i / fps - 1.0) / 2.0, 0, 1))]]

    assert np.abs(smoothed_at(fade(10), times, settings) - smoothed_at(fade(30), times, settings)).max() < 0.005

    # A per-frame EMA (fixed weight per frame) would differ a lot between the two rates.
    def per_frame(samples):
        s, out = None, {}
        for t, p in samples:
            s = p if s is None else 0.8 * s + 0.2 * p
            out[round(t, 6)] = s
        return np.array([out[round(t, 6)] for t in times])

    assert np.abs(per_frame(step_signal(10)) - per_frame(step_signal(30))).max() > 0.2


def test_hysteresis_suppresses_flicker_but_follows_a_clear_change():
    settings = SmoothingSettings(half_life_s=0.5, switch_margin=0.1)
    smoother = EmotionSmoother(settings)
    h, n, s = (EMOTIONS.index(e) for e in ("happy", "neutral", "sad"))
    raw_changes = shown_changes = 0
    prev_raw = prev_shown = None
    for i in range(90):  # 3 s at 30 fps; happy and neutral swap the lead every frame
        p = np.full(7, 0.02, np.float32)
        p[h], p[n] = (0.47, 0.43) if i % 2 else (0.43, 0.47)
        smoothed, shown = smoother.update(p, i / 30)
        raw = EMOTIONS[int(np.argmax(p))]
        raw_changes += prev_raw is not None and raw != prev_raw
        shown_changes += prev_shown is not None and shown != prev_shown
        prev_raw, prev_shown = raw, shown
    assert raw_changes == 89 and shown_changes == 0

    switched_at = None
    for i in range(90, 150):  # then clearly sad for 2 s
        p = np.full(7, 0.02, np.float32)
        p[s] = 0.9
        _, shown = smoother.update(p, i / 30)
        if shown == "sad" and switched_at is None:
            switched_at = i / 30 - 3.0
    assert switched_at is not None and switched_at < 0.6

    # Without a margin the shown label follows the smoothed argmax.
    free = EmotionSmoother(SmoothingSettings(half_life_s=0.01, switch_margin=0.0))
    labels = []
    for i in range(10):
        p = np.full(7, 0.02, np.float32)
        p[h], p[n] = (0.47, 0.43) if i % 2 else (0.43, 0.47)
        labels.append(free.update(p, i / 30)[1])
    assert len(set(labels)) == 2


def test_first_label_is_not_pinned_by_one_odd_frame():
    smoother = EmotionSmoother(SmoothingSettings(half_life_s=0.5, switch_margin=0.3))
    h, s = EMOTIONS.index("happy"), EMOTIONS.index("sad")
    first = np.zeros(7, np.float32)
    first[s], first[h] = 0.55, 0.45
    assert smoother.update(first, 0.0)[1] == "sad"
    steady = np.zeros(7, np.float32)
    steady[h], steady[s] = 0.62, 0.38  # happy leads by less than the margin, but from the start
    labels = [smoother.update(steady, i / 30)[1] for i in range(1, 60)]
    assert labels[-1] == "happy" and labels.count("happy") >= 50


def test_smoother_ignores_time_going_backwards():
    smoother = EmotionSmoother(SmoothingSettings(half_life_s=1.0))
    a, b = np.eye(7, dtype=np.float32)[:2]
    smoother.update(a, 10.0)
    out, _ = smoother.update(b, 9.0)  # dt treated as 0: no weight for the late sample
    assert np.allclose(out, a)
