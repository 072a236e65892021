"""YuNet (OpenCV's ``cv2.FaceDetectorYN``): a 55-76k parameter CNN face detector, far cheaper than MTCNN's image
pyramid on big frames. Its weights are not shipped: ``detector.yunet_model`` names the ONNX file (OpenCV model zoo's
``face_detection_yunet_2023mar.onnx``, or ``yunet_s_640_640.onnx`` / ``yunet_n_640_640.onnx`` of libfacedetection)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors.scaling import check_frame, dedupe, downscale, to_original

NMS_THRESHOLD = 0.3  # OpenCV's sample value: boxes overlapping more are one face
TOP_K = 5000  # candidates kept before NMS
REGION_STEP = 32  # region sizes (detector pixels) are rounded up to this, so the network's input size is reused
REFINE_CONTEXT = 0.6  # refinement looks at a known face's box grown by this many box sizes on each side
REFINE_MIN_IOU = 0.2  # the face found there must overlap the known box this much to be its new place


class YunetDetector:
    """YuNet on each (downscaled) frame, one frame at a time (OpenCV's network takes one image); boxes in original
    pixels, scores above ``detector.yunet_score_threshold``, faces below ``detector.min_face_size`` dropped.

    It is a ``PartialDetector``, so motion gating gives it regions and known faces as it gives MTCNN: regions are
    detected at the scale the whole frame would get, and a known face is refined by detecting in its box grown by
    ``REFINE_CONTEXT`` (YuNet needs the head around the face) and keeping the face that overlaps it."""

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
        return self._boxes(self._run(small), scale, 0, 0, frame.shape)

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        """Rows of (x, y, w, h, 5 landmarks, score) in ``rgb``'s pixels."""
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        with self._lock:
            if self._size != (w, h):
                self.net.setInputSize((w, h))
                self._size = (w, h)
            _, rows = self.net.detect(bgr)
        if rows is None:
            return np.zeros((0, 15), np.float32)
        return rows[np.isfinite(rows[:, :15]).all(axis=1)]  # OpenCV's network has given NaN rows on a crowd clip

    def _boxes(self, rows: np.ndarray, scale: float, x0: int, y0: int, shape: tuple[int, ...]) -> list[FaceBox]:
        boxes = []
        for x, y, bw, bh, *_, score in rows[:, :15]:  # box, 5 landmarks (x, y), score
            x, y = x + x0 * scale, y + y0 * scale
            box = to_original(x, y, x + bw, y + bh, float(score), scale, shape)
            if box is not None and max(box.width, box.height) >= self.settings.min_face_size:
                boxes.append(box)
        return boxes

    def _in_region(self, frame: np.ndarray, r: FaceBox) -> list[FaceBox]:
        """YuNet on one region of the frame (original pixels), at the frame's detection scale."""
        h, w = frame.shape[:2]
        scale = min(1.0, self.settings.max_side / max(h, w))
        crop, x1, y1 = self._crop(frame, r, scale)
        return self._boxes(self._run(crop), scale, x1, y1, frame.shape)

    def _crop(self, frame: np.ndarray, r: FaceBox, scale: float) -> tuple[np.ndarray, int, int]:
        """The region grown to whole ``REGION_STEP``s at ``scale`` (so input sizes repeat), resized by ``scale``,
        and its top-left corner in original pixels."""
        h, w = frame.shape[:2]
        cw = min(w, round(math.ceil(max(r.width, 1.0) * scale / REGION_STEP) * REGION_STEP / scale))
        ch = min(h, round(math.ceil(max(r.height, 1.0) * scale / REGION_STEP) * REGION_STEP / scale))
        x1 = int(min(max(round((r.x1 + r.x2 - cw) / 2), 0), w - cw))
        y1 = int(min(max(round((r.y1 + r.y2 - ch) / 2), 0), h - ch))
        crop = frame[y1:y1 + ch, x1:x1 + cw]
        if scale < 1.0:
            crop = cv2.resize(crop, (max(1, round(cw * scale)), max(1, round(ch * scale))),
                              interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(crop), x1, y1

    def candidates(self, frame: np.ndarray, region: FaceBox | None = None, scale: float | None = None
                   ) -> np.ndarray:
        """YuNet's rows (x1, y1, x2, y2, score) in original pixels, unfiltered by size, on the whole frame or one
        region of it, at ``scale`` (default: the frame's ``max_side`` scale): candidates for another stage."""
        h, w = frame.shape[:2]
        if scale is None:
            scale = min(1.0, self.settings.max_side / max(h, w))
        if region is None:
            region = FaceBox(0.0, 0.0, float(w), float(h))
        image, x0, y0 = self._crop(frame, region, scale)
        rows = self._run(image)
        out = np.empty((len(rows), 5), np.float32)
        out[:, 0] = rows[:, 0] / scale + x0
        out[:, 1] = rows[:, 1] / scale + y0
        out[:, 2] = (rows[:, 0] + rows[:, 2]) / scale + x0
        out[:, 3] = (rows[:, 1] + rows[:, 3]) / scale + y0
        out[:, 4] = rows[:, 14]
        return out

    def detect_regions(self, frames: Sequence[np.ndarray], regions: Sequence[Sequence[FaceBox]],
                       min_sizes: Sequence[Sequence[float]] | None = None) -> list[list[FaceBox]]:
        out = []
        for i, (frame, rs) in enumerate(zip(frames, regions)):
            check_frame(frame)
            hints = min_sizes[i] if min_sizes is not None else [0.0] * len(rs)
            out.append(dedupe([b for r, hint in zip(rs, hints) for b in self._in_region(frame, r)
                               if max(b.width, b.height) >= hint]))
        return out

    def refine(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[FaceBox]]) -> list[list[FaceBox]]:
        out = []
        for frame, known in zip(frames, boxes):
            check_frame(frame)
            h, w = frame.shape[:2]
            kept = []
            for k in known:
                m = REFINE_CONTEXT * max(k.width, k.height)
                area = FaceBox(max(0.0, k.x1 - m), max(0.0, k.y1 - m), min(float(w), k.x2 + m), min(float(h), k.y2 + m))
                best = max(((iou(k, b), b) for b in self._in_region(frame, area)), default=(0.0, None),
                           key=lambda p: p[0])
                if best[1] is not None and best[0] >= REFINE_MIN_IOU:
                    kept.append(best[1])
            out.append(dedupe(kept))
        return out


def iou(a: FaceBox, b: FaceBox) -> float:
    iw = min(a.x2, b.x2) - max(a.x1, b.x1)
    ih = min(a.y2, b.y2) - max(a.y1, b.y1)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a.width * a.height + b.width * b.height - inter)
