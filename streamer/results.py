"""The one typed interface by which frames and emotion results move between stages.

source -> Frame -> detector -> FaceBox -> crops -> classifier -> FaceResult ->
tracker (fills track_id / smoothed / label) -> FrameResult -> sinks (Redis,
annotated video, summary, dashboard, WebRTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from classifier import EMOTIONS
from detectors.base import FaceBox


@dataclass(frozen=True)
class Frame:
    """One decoded picture from a camera. ``image`` is RGB uint8 H x W x 3."""

    camera_id: str
    seq: int
    captured_at: float  # unix seconds when the frame was read (live) or its stream time mapped to wall time (file)
    image: np.ndarray
    pts: float | None = None  # seconds since the start of the stream, when known


@dataclass(frozen=True)
class FaceResult:
    """One face in one frame: raw per-frame probabilities, and once tracked, its identity and smoothed emotion."""

    box: FaceBox
    probabilities: np.ndarray  # float32[7] in EMOTIONS order, this frame only
    detected: bool = True  # False when the box was carried from an earlier detection (detect every k-th frame)
    track_id: int | None = None
    smoothed: np.ndarray | None = None  # float32[7] after temporal smoothing
    label: str | None = None  # the shown label (smoothed, with hysteresis); None until tracked

    @property
    def raw_label(self) -> str:
        return EMOTIONS[int(np.argmax(self.probabilities))]

    @property
    def emotion(self) -> str:
        """What to show: the tracked label when there is one, else this frame's argmax."""
        return self.label or self.raw_label

    @property
    def confidence(self) -> float:
        probs = self.smoothed if self.smoothed is not None else self.probabilities
        return float(probs[EMOTIONS.index(self.emotion)])

    def to_dict(self) -> dict:
        probs = self.smoothed if self.smoothed is not None else self.probabilities
        return {
            "track_id": self.track_id,
            "box": self.box.to_dict(),
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "probabilities": {e: round(float(p), 4) for e, p in zip(EMOTIONS, probs)},
            "raw_probabilities": {e: round(float(p), 4) for e, p in zip(EMOTIONS, self.probabilities)},
            "detected": self.detected,
        }


@dataclass(frozen=True)
class FrameResult:
    """Everything the pipeline learned about one frame."""

    frame: Frame
    faces: list[FaceResult] = field(default_factory=list)
    processed_at: float = 0.0  # unix seconds when classification finished

    @property
    def camera_id(self) -> str:
        return self.frame.camera_id

    @property
    def latency_s(self) -> float:
        return self.processed_at - self.frame.captured_at

    def to_dict(self) -> dict:
        return {
            "camera_id": self.frame.camera_id,
            "seq": self.frame.seq,
            "captured_at": self.frame.captured_at,
            "processed_at": self.processed_at,
            "faces": [f.to_dict() for f in self.faces],
        }


class ResultSink(Protocol):
    """A consumer at the end of the pipeline (Redis writer, annotated video, summary, live preview, WebRTC)."""

    async def handle(self, result: FrameResult) -> None: ...

    async def close(self) -> None: ...
