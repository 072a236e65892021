"""The typed values that move between the stages, and the emotion names: the floor everything else stands on.

source -> Frame -> detector -> FaceBox -> crops -> classifier -> FaceResult -> tracker (fills track_id, smoothed,
label) -> FrameResult -> sinks (Redis, annotated video, summary, dashboard preview, WebRTC).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Class index order used everywhere (folder layout of the Kaggle FER2013 release, alphabetical).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# What a face shows instead of an emotion when it is too small or the model too unsure (issue 32): it is tracked and
# counted as a person, but enters no emotion mix. Not a class: the model still scores the seven EMOTIONS.
UNCERTAIN = "uncertain"


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


class Pixels:
    """A decoded picture whose RGB copy is made on first use, once, by whichever thread asks first.

    Turning a decoder's YUV frame into RGB costs several times the decoding itself, and a gated camera never looks at
    most of its frames in colour: the motion gate reads the luma plane, frames between detections reuse earlier
    results. Whoever needs colour (detector, classifier, drawing) calls ``rgb()``, in a worker thread.
    """

    __slots__ = ("width", "height", "luma", "luma_limited", "_make", "_rgb", "_lock")

    def __init__(self, rgb: np.ndarray | Callable[[], np.ndarray], width: int | None = None,
                 height: int | None = None, luma: np.ndarray | None = None, luma_limited: bool = True):
        """``rgb``: the RGB array, or a function making it (then ``width`` and ``height`` are needed). ``luma``: the
        decoder's 8-bit Y plane (H x W), ``luma_limited`` when it is in video range (16-235)."""
        if isinstance(rgb, np.ndarray):
            self._rgb: np.ndarray | None = rgb
            self._make: Callable[[], np.ndarray] | None = None
            height, width = rgb.shape[:2]
        else:
            if width is None or height is None:
                raise ValueError("a lazily converted picture needs its width and height")
            self._rgb, self._make = None, rgb
        self.width, self.height = int(width), int(height)
        self.luma, self.luma_limited = luma, luma_limited
        self._lock = threading.Lock()

    @staticmethod
    def of(picture: Pixels | np.ndarray) -> Pixels:
        """``picture`` as ``Pixels`` (an RGB array is wrapped)."""
        return picture if isinstance(picture, Pixels) else Pixels(picture)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def converted(self) -> bool:
        """Whether the RGB copy exists (made, or given)."""
        return self._rgb is not None

    def rgb(self) -> np.ndarray:
        """RGB uint8 H x W x 3 (made now if nobody asked before: call it off the event loop)."""
        if self._rgb is None:
            with self._lock:
                if self._rgb is None:
                    assert self._make is not None
                    self._rgb, self._make = self._make(), None
        return self._rgb


@dataclass(frozen=True)
class Frame:
    """One decoded picture from a camera. ``image`` is RGB uint8 H x W x 3, made from ``pixels`` on first use."""

    camera_id: str
    seq: int
    captured_at: float  # unix seconds when the frame was read (live) or its stream time mapped to wall time (file)
    pixels: Pixels  # an RGB array is wrapped as it comes
    pts: float | None = None  # seconds since the start of the stream, when known

    def __post_init__(self) -> None:
        object.__setattr__(self, "pixels", Pixels.of(self.pixels))

    @property
    def image(self) -> np.ndarray:
        """RGB uint8 H x W x 3; the first call may convert the decoder's frame (~1 ms at 596x336): not on the loop."""
        return self.pixels.rgb()

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.pixels.shape


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
    label: str | None = None  # the shown label (smoothed, with hysteresis; UNCERTAIN when not confident)
    confident: bool = True  # False: too small or too unsure to read (deepfer_core.confidence); the emotion is UNCERTAIN

    @property
    def raw_label(self) -> str:
        return EMOTIONS[int(np.argmax(self.probabilities))]

    @property
    def emotion(self) -> str:
        """What to show: UNCERTAIN for a face not confidently read, else the tracked label, else this frame's
        argmax."""
        if not self.confident:
            return UNCERTAIN
        return self.label or self.raw_label

    @property
    def confidence(self) -> float:
        """The probability of the shown emotion (the top probability for an uncertain face)."""
        probs = self.smoothed if self.smoothed is not None else self.probabilities
        if self.emotion not in EMOTIONS:
            return float(np.max(probs))
        return float(probs[EMOTIONS.index(self.emotion)])

    def to_dict(self) -> dict[str, Any]:
        probs = self.smoothed if self.smoothed is not None else self.probabilities
        return {
            "track_id": self.track_id,
            "box": self.box.to_dict(),
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "probabilities": {e: round(float(p), 4) for e, p in zip(EMOTIONS, probs)},
            "raw_probabilities": {e: round(float(p), 4) for e, p in zip(EMOTIONS, self.probabilities)},
            "detected": self.detected,
            "confident": self.confident,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera_id": self.frame.camera_id,
            "seq": self.frame.seq,
            "captured_at": self.frame.captured_at,
            "processed_at": self.processed_at,
            "faces": [f.to_dict() for f in self.faces],
        }
