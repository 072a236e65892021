"""MTCNN with tensor-only post-processing: facenet's P/R/O-Nets, but no per-box Python loop between stages.

Stock facenet crops every candidate box with its own resize call and runs the
last NMS in NumPy; on a GPU that is hundreds of tiny launches and host syncs per
batch. Here all candidates of a batch are cropped by one ``roi_align`` call and
NMS is torchvision's ``batched_nms``, so the work stays on the device. The
networks, pyramid and thresholds are facenet's; the crops are sampled bilinearly
instead of area-averaged, so scores differ in the third decimal.
"""

from __future__ import annotations

import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import generateBoundingBox, imresample
from torchvision.ops import batched_nms, roi_align

from detectors.mtcnn import MtcnnDetector


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each (x1, y1, x2, y2) box to a square around its centre (facenet's ``rerec``)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply the network's box offsets, relative to the box size (facenet's ``bbreg``)."""
    w = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
    h = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
    return boxes + reg * torch.cat([w, h, w, h], dim=1)


def _crops(
    imgs: torch.Tensor, boxes: torch.Tensor, image_inds: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` x ``size`` patches of every box, clipped to its frame as facenet does, in one call; and which boxes
    had any."""
    h, w = imgs.shape[2:]
    x1 = boxes[:, 0].trunc().clamp(min=1) - 1
    y1 = boxes[:, 1].trunc().clamp(min=1) - 1
    x2 = boxes[:, 2].trunc().clamp(max=w)
    y2 = boxes[:, 3].trunc().clamp(max=h)
    valid = (x2 > x1) & (y2 > y1)
    rois = torch.stack([image_inds.to(boxes.dtype), x1, y1, x2, y2], dim=1)[valid]
    return roi_align(imgs, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True), valid


def _nms_min(boxes: torch.Tensor, scores: torch.Tensor, image_inds: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS on intersection over the smaller box, per image (MTCNN's last step); few boxes, so on the host."""
    b, s, idx = boxes.cpu().numpy(), scores.cpu().numpy(), image_inds.cpu().numpy()
    order = np.argsort(-s, kind="stable")
    b, idx = b[order], idx[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = np.maximum(0.0, np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]) + 1)
    ih = np.maximum(0.0, np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]) + 1)
    overlap = (iw * ih) / np.minimum(area[:, None], area[None, :])
    overlap[idx[:, None] != idx[None, :]] = 0
    removed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in range(len(b)):
        if not removed[i]:
            keep.append(order[i])
            removed |= overlap[i] > threshold
    return torch.as_tensor(np.asarray(keep, dtype=np.int64), device=boxes.device)


class BatchedMtcnnDetector(MtcnnDetector):
    """``MtcnnDetector`` whose batch call keeps every stage as whole-batch tensor operations."""

    name = "mtcnn"

    @torch.inference_mode()
    def _call(self, smalls: list[np.ndarray]) -> list[np.ndarray]:
        m = self.mtcnn
        t0, t1, t2 = m.thresholds
        imgs = torch.from_numpy(np.stack(smalls)).to(self.device).permute(0, 3, 1, 2).float()
        n, _, h, w = imgs.shape
        empty = [np.zeros((0, 5), np.float32) for _ in smalls]

        # Stage 1: P-Net over the image pyramid, NMS per scale and image, then per image.
        scale = 12.0 / m.min_face_size
        side = min(h, w) * scale
        found, inds = [], []
        while side >= 12:
            reg, probs = m.pnet(_normalize(imresample(imgs, (int(h * scale + 1), int(w * scale + 1)))))
            boxes, image_inds = generateBoundingBox(reg, probs[:, 1], scale, t0)
            pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.5)
            found.append(boxes[pick])
            inds.append(image_inds[pick])
            scale *= m.factor
            side *= m.factor
        if not found:
            return empty
        boxes, image_inds = torch.cat(found), torch.cat(inds)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[pick], image_inds[pick]
        rw = (boxes[:, 2] - boxes[:, 0]).unsqueeze(1)
        rh = (boxes[:, 3] - boxes[:, 1]).unsqueeze(1)
        boxes = _square(boxes[:, :4] + boxes[:, 5:9] * torch.cat([rw, rh, rw, rh], dim=1))

        # Stage 2: R-Net on 24x24 crops of every candidate at once.
        crops, valid = _crops(imgs, boxes, image_inds, 24)
        if len(crops) == 0:
            return empty
        boxes, image_inds = boxes[valid], image_inds[valid]
        reg, probs = m.rnet(_normalize(crops))
        keep = probs[:, 1] > t1
        boxes, image_inds, reg, scores = boxes[keep], image_inds[keep], reg[keep], probs[keep, 1]
        pick = batched_nms(boxes, scores, image_inds, 0.7)
        boxes = _square(_regress(boxes[pick], reg[pick]))
        image_inds = image_inds[pick]

        # Stage 3: O-Net on 48x48 crops, regression, NMS over the smaller box.
        crops, valid = _crops(imgs, boxes, image_inds, 48)
        if len(crops) == 0:
            return empty
        boxes, image_inds = boxes[valid], image_inds[valid]
        reg, _landmarks, probs = m.onet(_normalize(crops))
        keep = probs[:, 1] > t2
        boxes, image_inds, scores = _regress(boxes[keep], reg[keep]), image_inds[keep], probs[keep, 1]
        pick = _nms_min(boxes, scores, image_inds, 0.7)
        rows = torch.cat([boxes[pick], scores[pick, None]], dim=1).float().cpu().numpy()
        image_inds = image_inds[pick].cpu().numpy()
        largest_first = np.argsort(-(rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1]), kind="stable")  # as stock
        rows, image_inds = rows[largest_first], image_inds[largest_first]
        return [rows[image_inds == i] for i in range(n)]
