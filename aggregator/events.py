"""Events out of the tracked faces: a person's ``enter`` and ``leave`` (dwell, dominant and mean emotion while
present; no images) and each camera's rolling state (people now, emotion mix, satisfaction over a window).

An ``uncertain`` face (issue 32: too small, blurred or unsure to read; ``FaceResult.confident`` is False) is a person
(enter/leave, people now, ``people_above`` rules) but no emotion sample: it is kept out of the mix, satisfaction and
negative share (so out of the alert rules on them), and out of the person's dominant and mean emotions. The window
counts it in ``uncertain``.

Pure: no I/O, no clock of its own (every call is given ``now``), so MQTT, webhooks, alert rules and tests share it.
Every payload carries ``"v": PAYLOAD_VERSION``; a change that breaks readers bumps it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from deepfer_core.types import EMOTIONS, UNCERTAIN, FrameResult

PAYLOAD_VERSION = 1
POSITIVE = ("happy", "surprise")
NEGATIVE = ("angry", "disgust", "fear", "sad")
_POS = [EMOTIONS.index(e) for e in POSITIVE]
_NEG = [EMOTIONS.index(e) for e in NEGATIVE]


@dataclass(frozen=True)
class PersonEvent:
    """A tracked person entered or left a camera's view."""

    type: Literal["enter", "leave"]
    camera: str
    person: int  # the tracker's id, unique per camera while the process runs
    at: float  # unix seconds: first seen (enter) or last seen (leave)
    emotion: str  # enter: the label when first seen; leave: the dominant label while present ("uncertain": never read)
    dwell_s: float = 0.0
    mean: dict[str, float] | None = None  # leave: mean smoothed probabilities over the confident frames (absent: none)
    frames: int = 0
    confident_frames: int | None = None  # leave: frames with a confident emotion (the rest were uncertain)
    v: int = PAYLOAD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class WindowStats:
    """Face samples (one per face per frame) of a camera over a window."""

    points: int  # confident samples only: the mix, satisfaction and negative share are over these
    mix: dict[str, float]  # share of each shown label
    satisfaction: float | None  # (positive - negative) / all, -1..1; None without points
    negative_share: float | None
    uncertain: int = 0  # samples of uncertain faces in the window (people, but no emotion)


@dataclass(frozen=True)
class CameraState:
    """What a camera looks like now; sent at most once a second, retained on MQTT."""

    camera: str
    at: float
    status: str  # the source's status (connected, reconnecting, ended, ...)
    up: bool
    people_now: int
    dominant: str | None  # the most shown label in the window
    mix: dict[str, float]
    satisfaction: float | None
    points: int
    window_s: float
    fps: float = 0.0
    uncertain: int = 0  # face samples in the window whose emotion was uncertain (not in points, mix, satisfaction)
    type: str = "state"
    v: int = PAYLOAD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


UP_STATUSES = frozenset({"connected", "running", "starting"})
DOWN_STATUSES = frozenset({"connecting", "reconnecting", "failed"})


@dataclass
class _Presence:
    first: float
    last: float
    first_label: str
    sums: np.ndarray
    labels: np.ndarray  # confident frames shown with each label
    frames: int = 0


@dataclass
class CameraEvents:
    """One camera: who is present (enter/leave) and per-second label counts for windowed mixes."""

    camera: str
    leave_after_s: float
    keep_s: float  # longest window asked of ``window`` (older seconds are forgotten)
    present: dict[int, _Presence] = field(default_factory=dict)
    seconds: deque[tuple[int, np.ndarray]] = field(default_factory=deque)  # per second: label counts + uncertain

    def observe(self, result: FrameResult) -> list[PersonEvent]:
        """Feed one tracked frame; returns the ``enter`` events of people seen for the first time."""
        at = result.frame.captured_at
        out = []
        counts = np.zeros(len(EMOTIONS) + 1, dtype=np.int64)  # the last one: uncertain samples
        for face in result.faces:
            if face.track_id is None:
                continue
            label = EMOTIONS.index(face.emotion) if face.confident and face.emotion in EMOTIONS else None
            counts[len(EMOTIONS) if label is None else label] += 1
            p = self.present.get(face.track_id)
            if p is None:
                p = self.present[face.track_id] = _Presence(at, at, face.emotion, np.zeros(len(EMOTIONS)),
                                                            np.zeros(len(EMOTIONS), dtype=np.int64))
                out.append(PersonEvent("enter", self.camera, face.track_id, round(at, 3), face.emotion))
            p.last = max(p.last, at)
            p.frames += 1
            if label is not None:
                p.sums += face.smoothed if face.smoothed is not None else face.probabilities
                p.labels[label] += 1
        if counts.any():
            second = int(at)
            if self.seconds and self.seconds[-1][0] == second:
                self.seconds[-1][1][:] += counts
            else:
                self.seconds.append((second, counts))
        return out

    def expire(self, now: float) -> list[PersonEvent]:
        """``leave`` events of people unseen for ``leave_after_s``; also forgets seconds older than ``keep_s``."""
        gone = [tid for tid, p in self.present.items() if now - p.last >= self.leave_after_s]
        while self.seconds and self.seconds[0][0] < now - self.keep_s - 1:
            self.seconds.popleft()
        return [self._leave(tid) for tid in gone]

    def close(self) -> list[PersonEvent]:
        """Everyone still present leaves (the camera stopped or ended)."""
        return [self._leave(tid) for tid in list(self.present)]

    def _leave(self, tid: int) -> PersonEvent:
        p = self.present.pop(tid)
        read = int(p.labels.sum())
        if read == 0:  # never confidently read: no dominant or mean emotion to tell
            return PersonEvent("leave", self.camera, tid, round(p.last, 3), UNCERTAIN, round(p.last - p.first, 3),
                               None, p.frames, 0)
        mean = p.sums / read
        return PersonEvent("leave", self.camera, tid, round(p.last, 3), EMOTIONS[int(np.argmax(p.labels))],
                           round(p.last - p.first, 3), {e: round(float(x), 4) for e, x in zip(EMOTIONS, mean)},
                           p.frames, read)

    def window(self, now: float, window_s: float) -> WindowStats:
        counts = np.zeros(len(EMOTIONS) + 1, dtype=np.int64)
        start = now - window_s
        for second, c in reversed(self.seconds):
            if second < start:  # a second counts when it began inside the window
                break
            counts += c
        uncertain = int(counts[-1])
        n = int(counts[:-1].sum())
        if n == 0:
            return WindowStats(0, {e: 0.0 for e in EMOTIONS}, None, None, uncertain)
        pos, neg = int(counts[_POS].sum()), int(counts[_NEG].sum())
        return WindowStats(n, {e: round(float(c) / n, 4) for e, c in zip(EMOTIONS, counts)},
                           round((pos - neg) / n, 4), round(neg / n, 4), uncertain)

    def state(self, now: float, window_s: float, status: str, fps: float = 0.0) -> CameraState:
        w = self.window(now, window_s)
        dominant = max(w.mix, key=lambda e: w.mix[e]) if w.points else None
        return CameraState(self.camera, round(now, 3), status, status in UP_STATUSES, len(self.present), dominant,
                           w.mix, w.satisfaction, w.points, window_s, round(fps, 2), w.uncertain)
