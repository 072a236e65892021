"""OpenCV's Haar cascade: a fast, dependency-light fallback for frontal faces (no scores, more misses)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors.scaling import check_frame, downscale, to_original

CASCADE = "haarcascade_frontalface_default.xml"


class HaarDetector:
    """Viola-Jones frontal face cascade on the (downscaled) grayscale frame, one frame at a time."""

    name = "haar"

    def __init__(self, settings: DetectorSettings):
        self.settings = settings
        data_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
        path = Path(data_dir) / CASCADE
        if not data_dir or not path.is_file():
            raise ValueError(f"Haar cascade {CASCADE} not found in OpenCV's data folder ({data_dir or 'none'}); "
                             "install opencv-python-headless 4.x (5.x wheels ship no cascade files) or use --detector "
                             "mtcnn")
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise ValueError(f"OpenCV could not load the Haar cascade {path}")

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: np.ndarray) -> list[FaceBox]:
        check_frame(frame)
        small, scale = downscale(frame, self.settings.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        side = max(12, round(self.settings.min_face_size * scale))
        found = self.cascade.detectMultiScale(gray, scaleFactor=self.settings.haar_scale_factor,
                                              minNeighbors=self.settings.haar_min_neighbors, minSize=(side, side))
        boxes = [to_original(x, y, x + w, y + h, 1.0, scale, frame.shape) for x, y, w, h in found]
        return [b for b in boxes if b is not None]
