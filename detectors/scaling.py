"""Shared by every detector: shrink big frames before detection, map boxes back, pick the torch device."""

from __future__ import annotations

import cv2
import numpy as np

from deepfer_core.types import FaceBox


def downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame shrunk so its long side is at most ``max_side`` (INTER_AREA), and the factor applied (<= 1)."""
    h, w = frame.shape[:2]
    long_side = max(h, w)
    if long_side <= max_side:
        return frame, 1.0
    scale = max_side / long_side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def to_original(
    x1: float, y1: float, x2: float, y2: float, score: float, scale: float, shape: tuple[int, ...]
) -> FaceBox | None:
    """A box found on a frame resized by ``scale``, in original pixels and clipped to the frame; None if nothing is
    left."""
    h, w = shape[:2]
    x1, x2 = (min(max(float(v) / scale, 0.0), float(w)) for v in (x1, x2))
    y1, y2 = (min(max(float(v) / scale, 0.0), float(h)) for v in (y1, y2))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return FaceBox(x1, y1, x2, y2, float(score))


def check_frame(frame: np.ndarray) -> None:
    """Detectors take RGB uint8 H x W x 3; anything else is a caller bug worth a clear message."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"detector input must be an RGB uint8 H x W x 3 array, got {got}")


def dedupe(boxes: list[FaceBox], iou: float = 0.5) -> list[FaceBox]:
    """Highest score first; a box overlapping a kept one by more than ``iou`` (IoU) is the same face and dropped."""
    kept: list[FaceBox] = []
    for b in sorted(boxes, key=lambda b: -b.score):
        for k in kept:
            iw = min(b.x2, k.x2) - max(b.x1, k.x1)
            ih = min(b.y2, k.y2) - max(b.y1, k.y1)
            if iw > 0 and ih > 0:
                inter = iw * ih
                if inter / (b.width * b.height + k.width * k.height - inter) > iou:
                    break
        else:
            kept.append(b)
    return kept
