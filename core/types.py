"""The typed values that move between the stages, and the emotion names: the floor everything else stands on.

source -> Frame -> detector -> FaceBox -> crops -> classifier -> FaceResult -> tracker (fills track_id, smoothed,
label) -> FrameResult -> sinks (Redis, annotated video, summary, dashboard preview, WebRTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Class index order used everywhere (folder layout of the Kaggle FER2013 release, alphabetical).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


@dataclass(frozen=True)
class FaceBox:
    """A face in original-frame pixel coordinates (x1, y1) top-left, (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    def rounded(self) -> FaceBox:
        """The box as answers show it: pixels to 0.1, score to 4 places."""
        return FaceBox(round(self.x1, 1), round(self.y1, 1), round(self.x2, 1), round(self.y2, 1), round(self.score, 4))

    def to_dict(self) -> dict[str, float]:
        b = self.rounded()
        return {"x1": b.x1, "y1": b.y1, "x2": b.x2, "y2": b.y2, "score": b.score}


@dataclass(frozen=True)
class Frame:
    """One decoded picture from a camera. ``image`` is RGB uint8 H x W x 3."""

    camera_id: str
    seq: int
    captured_at: float  # unix seconds when the frame was read (live) or its stream time mapped to wall time (file)
    image: np.ndarray
    pts: float | None = None  # seconds since the start of the stream, when known


@dataclass(frozen=True)
class TimedFrame:
    """A frame as a source hands it to the pipeline."""

    frame: Frame
    read_at: float  # time.monotonic() when the frame left the decoder: the start of its end-to-end latency


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
