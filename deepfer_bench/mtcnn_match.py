"""Our batched MTCNN against stock facenet-pytorch MTCNN, face by face, on the same frames.

Per frame, the confident faces (score >= ``min_prob``) of both detectors are paired one-to-one by the assignment that
maximises the total IoU; a pair at IoU >= ``min_iou`` is a match. Recall is the share of stock's faces we match,
precision the share of ours that stock has; the mean IoU and the score gap are over the matches. Frames come from
``../shared/media`` (the photos and frames of the two clips) and from the walking-crowd clip
(deepfer_bench/crowd_clip.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

from aggregator.kalman import iou_matrix
from deepfer_core.protocols import FaceDetector
from deepfer_core.types import FaceBox

MEDIA_CLIPS = {"woman2.mp4": (0, 60, 120, 180, 240, 300, 360), "fer_test.mp4": (0, 30, 60, 90, 110)}


def match_faces(stock: Sequence[FaceBox], ours: Sequence[FaceBox], min_prob: float = 0.9,
                min_iou: float = 0.5) -> tuple[list[float], list[float], int, int]:
    """IoUs and score gaps of the matched pairs, and how many confident faces each side has."""
    a = [b for b in stock if b.score >= min_prob]
    b = [f for f in ours if f.score >= min_prob]
    if not a or not b:
        return [], [], len(a), len(b)
    iou = iou_matrix(np.array([f.xyxy for f in a], float), np.array([f.xyxy for f in b], float))
    rows, cols = linear_sum_assignment(-iou)
    ious, gaps = [], []
    for r, c in zip(rows, cols):
        if iou[r, c] >= min_iou:
            ious.append(float(iou[r, c]))
            gaps.append(abs(a[r].score - b[c].score))
    return ious, gaps, len(a), len(b)


def compare(ours: FaceDetector, stock: FaceDetector, frames: Sequence[np.ndarray], min_prob: float = 0.9,
            min_iou: float = 0.5, batch: int = 8) -> dict:
    """Mean and lowest IoU of matched faces, recall and precision of ``ours`` against ``stock`` on ``frames``
    (detected in batches of ``batch`` equal-size frames by both, as the pipeline calls them)."""
    ious: list[float] = []
    gaps: list[float] = []
    n_stock = n_ours = 0
    for start in range(0, len(frames), batch):
        chunk = list(frames[start : start + batch])
        for theirs, mine in zip(stock.detect(chunk), ours.detect(chunk)):
            i, g, a, b = match_faces(theirs, mine, min_prob, min_iou)
            ious += i
            gaps += g
            n_stock += a
            n_ours += b
    return {"frames": len(frames), "stock_faces": n_stock, "our_faces": n_ours, "matched": len(ious),
            "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
            "min_iou": round(min(ious), 4) if ious else None,
            "recall": round(len(ious) / n_stock, 4) if n_stock else None,
            "precision": round(len(ious) / n_ours, 4) if n_ours else None,
            "max_score_gap": round(max(gaps), 5) if gaps else None}


def media_frames(media: Path) -> dict[str, list[np.ndarray]]:
    """The shared photos (each its own size), and a few frames of each shared clip."""
    from streamer.media import read_frames

    sets = {"photos": [np.asarray(Image.open(media / n).convert("RGB"))
                       for n in ("justin.jpg", "two_people.jpg", "no-faces.jpg")]}
    for name, picks in MEDIA_CLIPS.items():
        wanted = set(picks)
        sets[name] = [f for i, (f, _) in enumerate(read_frames(media / name, max(picks) + 1)) if i in wanted]
    return sets


def crowd_frames(video: Path, picks: Sequence[int]) -> list[np.ndarray]:
    """Frames ``picks`` of a crowd clip (1920x1080)."""
    from streamer.media import read_frames

    wanted = set(picks)
    return [f for i, (f, _) in enumerate(read_frames(video, max(picks) + 1)) if i in wanted]
