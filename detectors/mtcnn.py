"""MTCNN face detector: facenet-pytorch's P/R/O-Nets (weights ship inside the wheel, nothing is downloaded)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from core.device import pick_device
from core.settings import DetectorSettings
from core.types import FaceBox
from detectors.scaling import check_frame, downscale, to_original

log = logging.getLogger(__name__)


class MtcnnDetector:
    """Batched MTCNN. Frames are shrunk to ``max_side`` first (detection cost grows with pixels),
    grouped by size (facenet batches only equal-size frames), and boxes come back in original pixels."""

    name = "mtcnn"

    def __init__(self, settings: DetectorSettings):
        from facenet_pytorch import MTCNN

        self.settings = settings
        self.device = pick_device(settings.device, "detector.device")
        if settings.threads and self.device.type == "cpu":
            torch.set_num_threads(settings.threads)
        self.mtcnn = MTCNN(keep_all=True, min_face_size=settings.min_face_size, thresholds=list(settings.thresholds),
                           factor=settings.mtcnn_scale_factor, device=self.device).eval()
        if self.device.type == "cpu":  # measured ~1.5x faster on CPU: oneDNN's NHWC convolutions and pooling
            for net in (self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet):
                net.to(memory_format=torch.channels_last)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        results: list[list[FaceBox]] = [[] for _ in frames]
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray, float]]] = defaultdict(list)
        for i, frame in enumerate(frames):
            check_frame(frame)
            small, scale = downscale(frame, self.settings.max_side)
            groups[(*small.shape, round(scale, 6))].append((i, small, scale))
        for items in groups.values():
            scale = items[0][2]
            min_face = max(12, round(self.settings.min_face_size * scale))
            for start in range(0, len(items), self.settings.batch_size):
                chunk = items[start : start + self.settings.batch_size]
                raw = self._detect_group([small for _, small, _ in chunk], min_face)
                for (i, _, _), found in zip(chunk, raw):
                    results[i] = self._boxes(found, scale, frames[i].shape)
        return results

    def _detect_group(self, smalls: list[np.ndarray], min_face: int) -> list[np.ndarray]:
        """Rows of (x1, y1, x2, y2, p) per frame; one batched call, per frame if the batch call fails."""
        h, w = smalls[0].shape[:2]
        if min(h, w) < min_face:  # facenet builds an empty scale pyramid and crashes on frames below the face size
            return [np.zeros((0, 5), np.float32) for _ in smalls]
        self.mtcnn.min_face_size = min_face
        try:
            return self._call(smalls)
        except Exception:  # facenet issue #224: some batches crash; each frame alone is the safe path
            if len(smalls) == 1:
                log.warning("MTCNN failed on a %dx%d frame; reporting no face", w, h, exc_info=True)
                return [np.zeros((0, 5), np.float32)]
            log.debug("batched MTCNN failed; retrying frame by frame", exc_info=True)
            return [self._detect_group([s], min_face)[0] for s in smalls]

    def _call(self, smalls: list[np.ndarray]) -> list[np.ndarray]:
        batch = torch.from_numpy(np.stack(smalls)).to(self.device)
        boxes, probs = self.mtcnn.detect(batch)
        out = []
        for b, p in zip(boxes, probs):
            if b is None:
                out.append(np.zeros((0, 5), np.float32))
            else:
                out.append(
                    np.column_stack([np.asarray(b, np.float32).reshape(-1, 4), np.asarray(p, np.float32).reshape(-1)])
                )
        return out

    def _boxes(self, rows: np.ndarray, scale: float, shape: tuple[int, ...]) -> list[FaceBox]:
        keep = []
        for x1, y1, x2, y2, p in rows:
            if p < self.settings.min_confidence:
                continue
            box = to_original(x1, y1, x2, y2, p, scale, shape)
            # MTCNN's min_face_size only sets the pyramid, so smaller faces slip through; make it the promised floor
            if box is not None and max(box.width, box.height) >= self.settings.min_face_size:
                keep.append(box)
        return keep
