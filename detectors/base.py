"""What every face detector returns, and the one method it must have."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


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

    def to_dict(self) -> dict[str, float]:
        return {"x1": round(self.x1, 1), "y1": round(self.y1, 1), "x2": round(self.x2, 1), "y2": round(self.y2, 1),
                "score": round(self.score, 4)}


class FaceDetector(Protocol):
    """Detects faces in a batch of RGB uint8 frames (H x W x 3); one list of boxes per frame."""

    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]: ...
