"""Detector speed on real video frames, per max_side and batch size: the numbers behind the detector defaults."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deepfer_bench.machine import machine_info
from deepfer_core.settings import DetectorSettings
from detectors import build_detector
from streamer.media import MediaError, read_frames


def time_detector(settings: DetectorSettings, frames: Sequence[np.ndarray], max_sides: Sequence[int],
                  batch_sizes: Sequence[int], warmup: int = 1) -> list[dict]:
    """One row per (max_side, batch size): frames/s over all ``frames`` and what was found."""
    rows = []
    for max_side in max_sides:
        for bs in batch_sizes:
            detector = build_detector(settings.model_copy(update={"max_side": max_side, "batch_size": bs}))
            for _ in range(warmup):
                detector.detect(list(frames[:bs]))
            times, found = [], []
            for start in range(0, len(frames), bs):
                chunk = list(frames[start : start + bs])
                t0 = time.perf_counter()
                found.extend(detector.detect(chunk))
                times.append(time.perf_counter() - t0)
            total = sum(times)
            counts = [len(f) for f in found]
            rows.append({
                "detector": detector.name, "device": str(getattr(detector, "device", "cpu")), "max_side": max_side,
                "batch_size": bs, "frames": len(frames), "min_face_size": settings.min_face_size,
                "mtcnn_batched": settings.mtcnn_batched, "fps": len(frames) / total,
                "ms_per_frame": 1000 * total / len(frames), "ms_per_batch_mean": 1000 * total / len(times),
                "faces_found": int(sum(counts)), "frames_with_face": int(sum(c > 0 for c in counts)),
                "max_faces_in_frame": int(max(counts, default=0)),
            })
    return rows


def bench_detector(settings: DetectorSettings, source: Path, frames: int, max_sides: Sequence[int],
                   batch_sizes: Sequence[int]) -> dict:
    """``deepfer bench detector``: the first ``frames`` frames of ``source`` decoded once, then detected."""
    clip = [image for image, _ in read_frames(source, frames)]
    if not clip:
        raise MediaError(f"{source}: no frame could be decoded")
    h, w = clip[0].shape[:2]
    rows = time_detector(settings, clip, max_sides, batch_sizes)
    return {"benchmark": "detector", "source": str(source), "frame_size": [w, h], "frames": len(clip),
            "settings": settings.model_dump(mode="json"), "machine": machine_info(), "results": rows}
