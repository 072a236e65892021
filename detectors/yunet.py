"""YuNet (OpenCV's ``cv2.FaceDetectorYN``): a 55-76k parameter CNN face detector, far cheaper than MTCNN's image
pyramid on big frames. Its weights are not shipped: ``detector.yunet_model`` names the ONNX file (OpenCV model zoo's
``face_detection_yunet_2023mar.onnx``, or ``yunet_s_640_640.onnx`` / ``yunet_n_640_640.onnx`` of libfacedetection)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from core.settings import DetectorSettings
from core.types import FaceBox
from detectors.scaling import check_frame, downscale, to_original

NMS_THRESHOLD = 0.3  # OpenCV's sample value: boxes overlapping more are one face
TOP_K = 5000  # candidates kept before NMS


class YunetDetector:
    """YuNet on each (downscaled) frame, one frame at a time (OpenCV's network takes one image); boxes in original
    pixels, scores above ``detector.yunet_score_threshold``, faces below ``detector.min_face_size`` dropped."""

    name = "yunet"

    def __init__(self, settings: DetectorSettings):
        if not settings.yunet_model:
            raise ValueError("detector.kind = \"yunet\" needs detector.yunet_model: the path of a YuNet ONNX file "
                             "(download face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
        path = Path(settings.yunet_model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"detector.yunet_model: no file at {path}")
        self.settings = settings
        if settings.threads:
            cv2.setNumThreads(settings.threads)
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), settings.yunet_score_threshold,
                                                 NMS_THRESHOLD, TOP_K)
        except cv2.error as exc:
            raise ValueError(f"detector.yunet_model: OpenCV cannot load {path} as YuNet ({exc.err.strip()}); use a "
                             "fixed-size export such as yunet_s_640_640.onnx") from None
        self._size: tuple[int, int] | None = None
        self._lock = threading.Lock()  # one network, and its input size, shared by the pipeline's worker threads

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: np.ndarray) -> list[FaceBox]:
        check_frame(frame)
        small, scale = downscale(frame, self.settings.max_side)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        with self._lock:
            if self._size != (w, h):
                self.net.setInputSize((w, h))
                self._size = (w, h)
            _, rows = self.net.detect(bgr)
        if rows is None:
            return []
        boxes = []
        for x, y, bw, bh, *_, score in rows[:, :15]:  # box, 5 landmarks (x, y), score
            box = to_original(x, y, x + bw, y + bh, float(score), scale, frame.shape)
            if box is not None and max(box.width, box.height) >= self.settings.min_face_size:
                boxes.append(box)
        return boxes
