"""Detector speed on real video frames, per max_side and batch size: the numbers behind the detector defaults."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from detectors import build_detector
from streamer.config import DetectorSettings


def read_frames(source: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of a video file as RGB uint8 arrays (PyAV)."""
    import av

    if not source.is_file():
        raise ValueError(f"video not found: {source}")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(source)) as container:
            if not container.streams.video:
                raise ValueError(f"{source} has no video stream")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= count:
                    break
    except av.FFmpegError as exc:
        raise ValueError(f"{source}: cannot decode video ({exc})") from None
    if not frames:
        raise ValueError(f"{source}: no frame could be decoded")
    return frames


def bench_detector(settings: DetectorSettings, frames: Sequence[np.ndarray], max_sides: Sequence[int],
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
                "detector": detector.name, "device": str(getattr(detector, "device", "cpu")), "max_side": max_side, "batch_size": bs, "frames": len(frames),
                "min_face_size": settings.min_face_size, "mtcnn_batched": settings.mtcnn_batched,
                "fps": len(frames) / total, "ms_per_frame": 1000 * total / len(frames),
                "ms_per_batch_mean": 1000 * total / len(times),
                "faces_found": int(sum(counts)), "frames_with_face": int(sum(c > 0 for c in counts)),
                "max_faces_in_frame": int(max(counts, default=0)),
            })
    return rows
