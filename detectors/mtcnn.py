"""MTCNN face detector: facenet-pytorch's P/R/O-Nets (weights ship inside the wheel, nothing is downloaded)."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from deepfer_core.device import HostStaging, pick_device
from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors.scaling import check_frame, dedupe, downscale, to_original

log = logging.getLogger(__name__)

# Region sizes (in detector pixels) are rounded up to a multiple of this, so regions of similar size batch together.
REGION_STEP = 16


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
        self.staging = HostStaging(self.device, settings.pinned_upload)  # each batch stacked once, sent once
        self.mtcnn = MTCNN(keep_all=True, min_face_size=settings.min_face_size, thresholds=list(settings.thresholds),
                           factor=settings.mtcnn_scale_factor, device=self.device).eval()
        if self.device.type == "cpu":  # measured ~1.5x faster on CPU: oneDNN's NHWC convolutions and pooling
            for net in (self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet):
                net.to(memory_format=torch.channels_last)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        results: list[list[FaceBox]] = [[] for _ in frames]
        groups: dict[tuple[float, ...], list[tuple[int, np.ndarray, float]]] = defaultdict(list)  # shape and scale
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
                    results[i] = self._boxes(found, scale, frames[i].shape, self.settings.min_face_size)
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
        batch = self.staging.upload(smalls)
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

    def _boxes(self, rows: np.ndarray, scale: float, shape: tuple[int, ...], min_face: int) -> list[FaceBox]:
        keep = []
        for x1, y1, x2, y2, p in rows:
            if p < self.settings.min_confidence:
                continue
            box = to_original(x1, y1, x2, y2, p, scale, shape)
            # MTCNN's min_face_size only sets the pyramid, so smaller faces slip through; make it the promised floor
            if box is not None and max(box.width, box.height) >= min_face:
                keep.append(box)
        return keep

    # --- detect only where needed (gating.*): regions of a frame, or the known faces' boxes ---

    def _native(self, frame: np.ndarray) -> bool:
        """Regions of this frame are detected at its own resolution: ``region_native`` and a frame that ``detect``
        shrinks (smaller frames are detected as they are anyway)."""
        return self.settings.region_native and max(frame.shape[:2]) > self.settings.max_side

    def _floor(self, frame: np.ndarray) -> int:
        """The smallest face kept from regions and refinement of this frame (a face the regions found is kept)."""
        s = self.settings
        return min(s.region_min_face_size, s.min_face_size) if self._native(frame) else s.min_face_size

    def detect_regions(self, frames: Sequence[np.ndarray], regions: Sequence[Sequence[FaceBox]],
                       min_sizes: Sequence[Sequence[float]] | None = None) -> list[list[FaceBox]]:
        """The whole MTCNN on the given regions of each frame only (original pixels); boxes in original pixels.
        With ``detector.region_native`` at the frame's own resolution down to ``detector.region_min_face_size``
        (the faces a downscaled full pass is too coarse for: regions are small, so their pyramid is cheap), else
        at the scale ``detect`` would use for the frame, so a face is found in a region as it would be in it.
        ``min_sizes[i][j]``: look in region j of frame i only for faces of at least that size (a lost face of a
        known size: the pyramid's small scales, most of its cost, are skipped)."""
        results: list[list[FaceBox]] = [[] for _ in frames]
        groups: dict[tuple[float, ...], list[tuple[int, np.ndarray, float, int, int]]] = defaultdict(list)
        for i, (frame, boxes) in enumerate(zip(frames, regions)):
            check_frame(frame)
            h, w = frame.shape[:2]
            native = self._native(frame)
            scale = 1.0 if native else min(1.0, self.settings.max_side / max(h, w))
            frame_floor = self._floor(frame)
            hints = min_sizes[i] if min_sizes is not None else [0.0] * len(boxes)
            for r, hint in zip(boxes, hints):
                floor = max(frame_floor, int(hint) // REGION_STEP * REGION_STEP)  # few sizes: regions batch
                cw = min(w, round(math.ceil(max(r.width, 1.0) * scale / REGION_STEP) * REGION_STEP / scale))
                ch = min(h, round(math.ceil(max(r.height, 1.0) * scale / REGION_STEP) * REGION_STEP / scale))
                x1 = int(min(max(round((r.x1 + r.x2 - cw) / 2), 0), w - cw))
                y1 = int(min(max(round((r.y1 + r.y2 - ch) / 2), 0), h - ch))
                crop = frame[y1 : y1 + ch, x1 : x1 + cw]
                if scale < 1.0:
                    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
                    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
                groups[(*crop.shape, round(scale, 6), floor)].append((i, np.ascontiguousarray(crop), scale, x1, y1))
        for key, items in groups.items():
            scale, floor = items[0][2], int(key[-1])
            min_face = max(12, round(floor * scale))
            for start in range(0, len(items), self.settings.batch_size):
                chunk = items[start : start + self.settings.batch_size]
                raw = self._detect_group([crop for _, crop, _, _, _ in chunk], min_face)
                for (i, _, _, x1, y1), rows in zip(chunk, raw):
                    rows = rows.copy()
                    rows[:, [0, 2]] += x1 * scale
                    rows[:, [1, 3]] += y1 * scale
                    results[i] += self._boxes(rows, scale, frames[i].shape, floor)
        return [dedupe(found) for found in results]

    def refine(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[FaceBox]]) -> list[list[FaceBox]]:
        """R-Net then O-Net on each given box (where a known face is expected), as MTCNN's second and third stages
        run on P-Net's candidates: a box comes back moved onto the face and scored, or not at all when no face is
        there any more. A few 24 and 48 pixel crops instead of an image pyramid."""
        for frame in frames:
            check_frame(frame)
        owners = [i for i, bs in enumerate(boxes) for _ in bs]
        candidates = torch.tensor([[*b.xyxy, b.score] for bs in boxes for b in bs], dtype=torch.float32)
        rows = self.verify(frames, owners, candidates.reshape(-1, 5))
        return [dedupe(self._boxes(r[:, :5], 1.0, f.shape, self._floor(f))) for f, r in zip(frames, rows)]

    @torch.inference_mode()
    def verify(self, frames: Sequence[np.ndarray], owners: Sequence[int], candidates: torch.Tensor
               ) -> list[np.ndarray]:
        """MTCNN's second and third stages on candidate boxes ``[K, 5]`` (x1, y1, x2, y2, score in original pixels;
        ``owners[k]`` is the frame of box k), whatever proposed them: one R-Net and one O-Net call for all frames.
        Per frame, rows of (x1, y1, x2, y2, p, 5 landmark x, 5 landmark y) in original pixels for the boxes O-Net
        passed (``thresholds``), before ``min_confidence``, floors and NMS."""
        from facenet_pytorch.models.utils.detect_face import bbreg, rerec

        results = [np.zeros((0, 15), np.float32) for _ in frames]
        owner_list = list(owners)
        if not owner_list:
            return results
        m = self.mtcnn
        candidates = rerec(candidates.clone())
        landmarks = torch.zeros((0, 10))
        for net, size, threshold in ((m.rnet, 24, m.thresholds[1]), (m.onet, 48, m.thresholds[2])):
            crops, kept = self._crops(frames, owner_list, candidates, size)
            if not kept:
                return results
            candidates, owner_list = candidates[kept], [owner_list[k] for k in kept]
            out = net(((torch.cat(crops) - 127.5) * 0.0078125).to(self.device))
            reg, probs = out[0].cpu(), out[-1].cpu()
            passed = probs[:, 1] > threshold
            candidates[:, 4] = probs[:, 1]
            if net is m.onet:  # facenet's landmarks: fractions of the box O-Net saw, before its regression
                seen = candidates[passed]
                w = (seen[:, 2] - seen[:, 0] + 1)[:, None]
                h = (seen[:, 3] - seen[:, 1] + 1)[:, None]
                points = out[1].cpu()[passed]
                landmarks = torch.cat([w * points[:, :5] + seen[:, :1] - 1, h * points[:, 5:] + seen[:, 1:2] - 1], 1)
            candidates = bbreg(candidates[passed], reg[passed])
            owner_list = [o for o, p in zip(owner_list, passed.tolist()) if p]
            if net is m.rnet:
                candidates = rerec(candidates)
        rows = torch.cat([candidates[:, :5], landmarks], 1).numpy().astype(np.float32)
        owned = np.asarray(owner_list)
        return [rows[owned == i] for i in range(len(frames))]

    @staticmethod
    def _crops(frames: Sequence[np.ndarray], owners: list[int], boxes: torch.Tensor,
               size: int) -> tuple[list[torch.Tensor], list[int]]:
        """``size`` x ``size`` crops of each box, clipped to its frame as facenet clips them, area-averaged by OpenCV
        (facenet's adaptive pooling on a float copy costs ten times more; scores differ in the second decimal)."""
        crops, kept = [], []
        for k, (i, box) in enumerate(zip(owners, boxes[:, :4].trunc().int().tolist())):
            h, w = frames[i].shape[:2]
            x1, y1, x2, y2 = max(box[0], 1), max(box[1], 1), min(box[2], w), min(box[3], h)
            if x2 > x1 - 1 and y2 > y1 - 1 and x2 >= 1 and y2 >= 1 and x1 <= w and y1 <= h:
                patch = cv2.resize(frames[i][y1 - 1 : y2, x1 - 1 : x2], (size, size), interpolation=cv2.INTER_AREA)
                crops.append(patch)
                kept.append(k)
        if not crops:
            return [], kept
        return [torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()], kept
