"""``deepfer bench stock``: the whole DeepFER pipeline against stock facenet-pytorch MTCNN on the same frames.

Stock is what a user gets from ``facenet_pytorch.MTCNN()`` out of the box: its defaults, every frame, full
resolution, one frame per call. DeepFER is the real pipeline with the configured defaults (detection schedule,
carried and refined boxes, classifier), as fast as it goes. Both run in the same process, one after the other, on
the same decoded frames, so the ratio holds on a busy machine too; recall is the share of stock's confident faces
(prob >= ``min_prob``) that the pipeline also gives on that frame (IoU >= ``min_iou``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from aggregator.kalman import iou_matrix
from deepfer_bench.machine import machine_info
from deepfer_bench.tracking import analyse_file
from deepfer_core.settings import Settings
from streamer.assembly import load_models
from streamer.media import probe_video, read_frames


def matched_faces(reference: np.ndarray, found: np.ndarray, min_iou: float) -> int:
    """How many ``reference`` boxes ``[N, 4]`` have their own ``found`` box ``[M, 4]`` at IoU >= ``min_iou`` (one-to
    -one, the assignment that maximises the total IoU)."""
    if len(reference) == 0 or len(found) == 0:
        return 0
    iou = iou_matrix(np.asarray(reference, float), np.asarray(found, float))
    rows, cols = linear_sum_assignment(-iou)
    return int((iou[rows, cols] >= min_iou).sum())


def stock_faces(frames: Sequence[np.ndarray], min_prob: float) -> tuple[list[np.ndarray], float]:
    """Stock MTCNN's confident boxes per frame, and the seconds it took (frame by frame, models already loaded)."""
    import torch
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(device=torch.device("cpu"))
    mtcnn.detect(frames[0])  # first-call overhead out of the timing, as the pipeline's models are loaded too
    boxes = []
    started = time.perf_counter()
    for frame in frames:
        found, probs = mtcnn.detect(frame)
        keep = [] if found is None else [b for b, p in zip(found, probs) if p is not None and p >= min_prob]
        boxes.append(np.array(keep, float).reshape(-1, 4))
    return boxes, time.perf_counter() - started


def bench_stock(settings: Settings, source: Path, frames: int, min_prob: float = 0.9, min_iou: float = 0.5,
                say: Callable[[str], None] = print) -> dict:
    info = probe_video(source)
    images = [image for image, _ in read_frames(source, frames)]
    say(f"stock facenet-pytorch MTCNN on {len(images)} frames of {source} ({info.width}x{info.height})")
    reference, stock_s = stock_faces(images, min_prob)
    models = load_models(settings)
    say(f"DeepFER pipeline ({models.detector.name} + {models.classifier.name}, defaults) on the same frames")
    started = time.perf_counter()
    results = asyncio.run(analyse_file(settings, models, source, max_frames=len(images)))
    pipeline_s = time.perf_counter() - started
    ours = [np.array([f.box.xyxy for f in r.faces], float).reshape(-1, 4) for r in results]
    total = sum(len(r) for r in reference)
    matched = sum(matched_faces(r, o, min_iou) for r, o in zip(reference, ours))
    stock_fps, pipeline_fps = len(images) / stock_s, len(results) / pipeline_s
    return {"benchmark": "stock", "source": str(source), "width": info.width, "height": info.height,
            "frames": len(images), "min_prob": min_prob, "min_iou": min_iou,
            "stock": {"what": "facenet_pytorch.MTCNN() defaults, every frame, full resolution, one frame per call",
                      "seconds": round(stock_s, 3), "fps": round(stock_fps, 2), "faces": total},
            "pipeline": {"what": "deepfer pipeline with the configured defaults, asap (file source)",
                         "detector": settings.detector.model_dump(mode="json"),
                         "gating": settings.model_dump(mode="json").get("gating"),
                         "frames": len(results), "seconds": round(pipeline_s, 3), "fps": round(pipeline_fps, 2),
                         "faces": int(sum(len(o) for o in ours))},
            "speedup": round(pipeline_fps / stock_fps, 2),
            "recall_of_stock_faces": round(matched / total, 4) if total else None,
            "machine": machine_info()}
