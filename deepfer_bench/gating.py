"""``deepfer bench gating``: what detecting only where and when needed saves, and what it misses, on real clips.

Each clip is decoded once, then detected as fast as possible twice: a full detection on every frame (the reference),
and with the pipeline's ``DetectionScheduler`` (motion gate, regions, refinement of the faces the previous detection
found, boxes carried between), on every ``detector.detect_every``-th frame as the pipeline does. Reported per clip:
detection fps of both, the speed-up, the share of the reference's faces the gated run still has (a face counts when a
box overlaps it by IoU >= 0.5 on the same frame, carried boxes included), extra boxes, and how many frames were full,
region, refined or still. Classification is left out: it costs the same per face either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aggregator.kalman import iou_matrix
from deepfer_bench.clips import standard_clips
from deepfer_bench.machine import machine_info
from deepfer_core.protocols import FaceDetector
from deepfer_core.settings import Settings
from deepfer_core.types import FaceBox
from detectors import build_detector
from detectors.schedule import DetectionScheduler, run_jobs
from streamer.media import MediaError, read_frames


def gated_run(settings: Settings, detector: FaceDetector, frames: Sequence[tuple[np.ndarray, float]],
              ) -> tuple[list[list[FaceBox]], float, dict[str, int]]:
    """Boxes per frame as the pipeline would have them, the detector's seconds, and the frames of each kind."""
    scheduler = DetectionScheduler(settings.gating, settings.detector, detector, phase_seed="bench",
                                   confirm=settings.tracker.min_hits - 1)
    boxes: list[FaceBox] = []
    out, busy = [], 0.0
    every = settings.detector.detect_every
    for n, (image, t) in enumerate(frames):
        if n % every == 0:
            started = time.perf_counter()

            def known(last: list[FaceBox] = boxes) -> list[FaceBox]:
                return last

            job = scheduler.plan(image, t, known).now
            if job is not None:
                boxes = run_jobs(detector, [job])[0]
            busy += time.perf_counter() - started
        out.append(boxes)
    c = scheduler.counts
    return out, busy, {"full": c.full, "regions": c.regions, "refined": c.refined, "still": c.still}


def recall(reference: list[list[FaceBox]], found: list[list[FaceBox]]) -> tuple[float, int]:
    """Share of the reference's faces found on the same frame (IoU >= 0.5), and boxes matching none."""
    hit = total = extra = 0
    for ref, got in zip(reference, found):
        total += len(ref)
        if not ref or not got:
            extra += len(got)
            continue
        iou = iou_matrix(np.array([b.xyxy for b in ref]), np.array([b.xyxy for b in got]))
        hit += int((iou.max(axis=1) >= 0.5).sum())
        extra += int((iou.max(axis=0) < 0.5).sum())
    return (hit / total if total else 1.0), extra


def bench_clip(settings: Settings, detector: FaceDetector, path: Path, max_frames: int | None) -> dict[str, Any]:
    frames = list(read_frames(path, max_frames))
    if not frames:
        raise MediaError(f"{path}: no frame could be decoded")
    detector.detect([frames[0][0]])  # warm-up
    started = time.perf_counter()
    reference = [detector.detect([image])[0] for image, _ in frames]
    full_s = time.perf_counter() - started
    found, gated_s, kinds = gated_run(settings, detector, frames)
    share, extra = recall(reference, found)
    h, w = frames[0][0].shape[:2]
    return {
        "clip": path.name, "frame_size": [w, h], "frames": len(frames),
        "full_fps": round(len(frames) / full_s, 2), "gated_fps": round(len(frames) / gated_s, 2) if gated_s else None,
        "speedup": round(full_s / gated_s, 2) if gated_s else None,
        "faces_reference": sum(len(b) for b in reference), "faces_gated": sum(len(b) for b in found),
        "recall": round(share, 4), "extra_boxes": extra, "frames_by_kind": kinds,
    }


def bench_gating(settings: Settings, media: Path, out_dir: Path, clips: Sequence[str], max_frames: int | None,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """``deepfer bench gating``: the standard clips (made with ffmpeg from ``media``) and woman2.mp4."""
    made = standard_clips(media, out_dir)
    paths = {**made, "woman2": media / "woman2.mp4"}
    unknown = [c for c in clips if c not in paths]
    if unknown:
        raise ValueError(f"unknown clip(s) {unknown}; choose from {sorted(paths)}")
    detector = build_detector(settings.detector)
    say(f"detecting {', '.join(clips)} with {detector.name}: every frame whole, then gated")
    rows = []
    for name in clips:
        row = bench_clip(settings, detector, paths[name], max_frames)
        say(f"{name}: {row['full_fps']} -> {row['gated_fps']} fps ({row['speedup']}x), "
            f"{100 * row['recall']:.1f}% of the faces, frames {row['frames_by_kind']}")
        rows.append(row)
    return {"benchmark": "gating", "settings": {"detector": settings.detector.model_dump(mode="json"),
                                                 "gating": settings.gating.model_dump(mode="json")},
            "machine": machine_info(), "results": rows}
