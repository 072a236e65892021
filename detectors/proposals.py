"""MTCNN with YuNet as its proposal stage (``detector.proposals = "yunet"``): YuNet, far cheaper than P-Net's image
pyramid on a big frame, proposes candidate faces at a low score (``detector.yunet_proposal_threshold``), and MTCNN's
R-Net and O-Net check each one and move it onto the face on the full-resolution frame, as they check P-Net's: boxes,
probabilities and landmarks of MTCNN's kind, thresholds and ``min_confidence`` as configured.

Motion regions (gating) get P-Net's proposals, natively with ``detector.region_native`` (the small faces YuNet misses
are found where things move), or YuNet's (``detector.region_proposals``); known faces are refined as MTCNN refines
them. The networks run once per stage for every candidate of every frame; the 24/48 px crops are cut per box with
OpenCV (``MtcnnDetector._crops``): a summed-area table of a whole 1080p frame, as ``mtcnn_batched`` builds, took
150 ms on CPU against 3 ms for 30 crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deepfer_core.settings import DetectorSettings
from deepfer_core.types import FaceBox
from detectors.mtcnn import MtcnnDetector
from detectors.scaling import check_frame, dedupe
from detectors.yunet import YunetDetector

FINAL_NMS = 0.7  # MTCNN's last NMS (intersection over the smaller box), as stock runs it after O-Net


class YunetProposalDetector:
    """YuNet proposals, R-Net + O-Net verification (see the module). A ``PartialDetector``."""

    name = "mtcnn+yunet"

    def __init__(self, settings: DetectorSettings):
        self.settings = settings
        self.yunet = YunetDetector(settings.model_copy(update={
            "yunet_score_threshold": settings.yunet_proposal_threshold}))
        if settings.mtcnn_batched:
            from detectors.mtcnn_batched import BatchedMtcnnDetector

            self.mtcnn: MtcnnDetector = BatchedMtcnnDetector(settings)
        else:
            self.mtcnn = MtcnnDetector(settings)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """YuNet on each frame shrunk to ``yunet_proposal_max_side`` (0: ``max_side``), R-Net + O-Net at full
        resolution: a face is kept down to the size regions are searched for (``region_min_face_size`` with
        ``region_native``), since the check is native."""
        side = self.settings.yunet_proposal_max_side or self.settings.max_side
        proposals = []
        for frame in frames:
            check_frame(frame)
            proposals.append(self.yunet.candidates(frame, None, min(1.0, side / max(frame.shape[:2]))))
        return self._verified(frames, proposals)

    def detect_regions(self, frames: Sequence[np.ndarray], regions: Sequence[Sequence[FaceBox]],
                       min_sizes: Sequence[Sequence[float]] | None = None) -> list[list[FaceBox]]:
        """Faces in the given regions of each frame: P-Net's, YuNet's checked by R-Net + O-Net, or YuNet's and,
        in the regions where they leave no face, P-Net's (``region_proposals``); ``min_sizes`` as MTCNN's."""
        mode = self.settings.region_proposals
        if mode == "pnet":
            return self.mtcnn.detect_regions(frames, regions, min_sizes)
        owners, entries = [], []  # one entry per region: its frame, and YuNet's candidates in it
        for i, (frame, rs) in enumerate(zip(frames, regions)):
            check_frame(frame)
            h, w = frame.shape[:2]
            scale = 1.0 if self.mtcnn._native(frame) else min(1.0, self.settings.max_side / max(h, w))
            owners += [i] * len(rs)
            entries += [self.yunet.candidates(frame, r, scale) for r in rs]
        per_region = self.rows([frames[i] for i in owners], entries, nms=False)
        found: list[list[np.ndarray]] = [[] for _ in frames]
        missed: list[list[FaceBox]] = [[] for _ in frames]
        missed_sizes: list[list[float]] = [[] for _ in frames]
        hints = [h for i, rs in enumerate(regions)
                 for h in (min_sizes[i] if min_sizes is not None else [0.0] * len(rs))]
        for i, r, hint, rows in zip(owners, (r for rs in regions for r in rs), hints, per_region):
            rows = rows[np.maximum(rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1]) >= hint] if hint else rows
            found[i].append(rows)
            if mode == "yunet_else_pnet" and not self._faces(frames[i], rows):
                missed[i].append(r)
                missed_sizes[i].append(hint)
        per_frame = self._nms([np.concatenate(f) if f else np.zeros((0, 15), np.float32) for f in found])
        faces = [self._faces(frame, rows) for frame, rows in zip(frames, per_frame)]
        if any(missed):
            again = [i for i, m in enumerate(missed) if m]
            extra = self.mtcnn.detect_regions([frames[i] for i in again], [missed[i] for i in again],
                                              [missed_sizes[i] for i in again])
            for i, more in zip(again, extra):
                faces[i] = dedupe(faces[i] + more)
        return faces

    def refine(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[FaceBox]]) -> list[list[FaceBox]]:
        return self.mtcnn.refine(frames, boxes)

    def rows(self, frames: Sequence[np.ndarray], proposals: Sequence[np.ndarray], nms: bool = True
             ) -> list[np.ndarray]:
        """The faces R-Net + O-Net keep of each frame's proposals (rows of x1, y1, x2, y2, score), after MTCNN's
        last NMS (unless ``nms`` is false): rows of (x1, y1, x2, y2, p, 5 landmark x, 5 landmark y) in original
        pixels, highest p first. One R-Net and one O-Net call for all frames."""
        counts = [len(p) for p in proposals]
        owners = np.repeat(np.arange(len(frames)), counts)
        stacked = np.concatenate(proposals) if sum(counts) else np.zeros((0, 5), np.float32)
        per_frame = self.mtcnn.verify(frames, owners.tolist(), torch.from_numpy(stacked.astype(np.float32)))
        return self._nms(per_frame) if nms else per_frame

    @staticmethod
    def _nms(per_frame: Sequence[np.ndarray]) -> list[np.ndarray]:
        from detectors.mtcnn_batched import _nms_min

        out = []
        for rows in per_frame:
            if len(rows) < 2:
                out.append(rows)
                continue
            t = torch.from_numpy(rows)
            keep = _nms_min(t[:, :4], t[:, 4], torch.zeros(len(t), dtype=torch.long), FINAL_NMS)
            out.append(rows[keep.numpy()])
        return out

    def _faces(self, frame: np.ndarray, rows: np.ndarray) -> list[FaceBox]:
        """Rows as faces: ``min_confidence`` and the frame's size floor, duplicates dropped."""
        return dedupe(self.mtcnn._boxes(rows[:, :5], 1.0, frame.shape, self.mtcnn._floor(frame)))

    def _verified(self, frames: Sequence[np.ndarray], proposals: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self._faces(frame, rows) for frame, rows in zip(frames, self.rows(frames, proposals))]
