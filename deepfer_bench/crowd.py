"""``deepfer bench crowd``: the walking-crowd clip through the whole pipeline (as ``deepfer run --file-rate asap``
runs a file) for each detector setting compared, and stock facenet-pytorch MTCNN on the same frames; fps, faces,
share of stock's faces, true recall and precision by face size, and tracks per person.

Every run is in this process, one after the other, on the same clip, so the ratios hold on a busy machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from deepfer_bench.crowd_clip import CrowdClip
from deepfer_bench.crowd_score import Found, score
from deepfer_bench.machine import machine_info
from deepfer_bench.stock import matched_faces
from deepfer_core.settings import Settings
from deepfer_core.types import FrameResult
from streamer.assembly import build_pipeline, load_models
from streamer.media import read_frames
from streamer.sources import open_source


class FoundFaces:
    """A ``ResultSink`` keeping each frame's boxes and track ids by frame number (no pixels)."""

    def __init__(self) -> None:
        self.frames: dict[int, list[Found]] = {}

    async def handle(self, result: FrameResult) -> None:
        self.frames[result.frame.seq] = [Found(*f.box.xyxy, f.track_id) for f in result.faces]

    async def close(self) -> None:
        pass

    def in_order(self, count: int) -> list[list[Found]]:
        return [self.frames.get(i, []) for i in range(count)]


async def _analyse(settings: Settings, path: Path) -> tuple[FoundFaces, dict]:
    models = await asyncio.to_thread(load_models, settings)
    pipeline = build_pipeline(settings, models, track=True)
    found = FoundFaces()
    pipeline.add_sink(found)
    pipeline.add_source(open_source(str(path), "crowd", settings.sources, settings.pipeline))
    started = time.perf_counter()
    await pipeline.run(until_idle=True)
    seconds = time.perf_counter() - started
    stats = next(iter(pipeline.stats().values()))
    return found, {"detector": models.detector.name, "seconds": round(seconds, 3),
                   "frames": stats.frames_processed, "fps": round(stats.frames_processed / seconds, 2)}


def run_pipeline(settings: Settings, clip: CrowdClip) -> tuple[list[list[Found]], dict]:
    """Every frame of the clip through the pipeline with ``settings`` (tracked); faces per frame and the timing."""
    found, timing = asyncio.run(_analyse(settings, clip.video))
    return found.in_order(len(clip.truth.frames)), timing


def stock_frame_indices(total: int, count: int, spread: bool = True) -> list[int]:
    """The frames stock MTCNN runs on: ``count`` spread evenly over the clip (its first second is a start, where
    every face is new at once, not the clip's typical frame), or the first ``count``."""
    count = min(count, total)
    if not spread or count >= total:
        return list(range(count))
    return sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(count)})


def run_stock(clip: CrowdClip, frames: int | Sequence[int], min_prob: float = 0.9) -> tuple[list[list[Found]], dict]:
    """Stock ``facenet_pytorch.MTCNN()`` (its defaults: min face 20, full resolution) on the first ``frames`` frames
    or on the frames numbered in ``frames``, frame by frame; only the detection is timed (decoding is not)."""
    import torch
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(device=torch.device("cpu"))
    wanted = range(frames) if isinstance(frames, int) else frames
    chosen, last = set(wanted), max(wanted, default=-1)
    out: list[list[Found]] = []
    seconds = 0.0
    for n, (image, _) in enumerate(read_frames(clip.video, last + 1)):
        if n not in chosen:
            continue
        if not out:
            mtcnn.detect(image)  # first-call overhead out of the timing
        started = time.perf_counter()
        boxes, probs = mtcnn.detect(image)
        seconds += time.perf_counter() - started
        out.append([] if boxes is None else
                   [Found(float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                    for b, p in zip(boxes, probs) if p is not None and p >= min_prob])
    return out, {"detector": "stock facenet_pytorch.MTCNN()", "seconds": round(seconds, 3), "frames": len(out),
                 "fps": round(len(out) / seconds, 2) if seconds else None}


def _boxes(found: Sequence[Found]) -> np.ndarray:
    return np.array([f.xyxy for f in found], float).reshape(-1, 4)


def _brief(scored: dict) -> dict:
    """The headline figures of a score (to compare runs on the frames stock saw)."""
    return {k: scored[k] for k in ("frames", "faces", "recall", "precision", "recall_32_up")} | {
        "recall_by_size": {k: v["recall"] for k, v in scored["by_size"].items()}}


def bench_crowd(variants: Sequence[tuple[str, Settings]], clip: CrowdClip, stock_frames: int | None = None,
                min_iou: float = 0.5, say: Callable[[str], None] = print, stock_spread: bool = True) -> dict:
    """Stock MTCNN on ``stock_frames`` frames (all when None; spread over the clip, or its first ones), then each
    named setting on the whole clip; each run scored against the truth; share of stock's faces on the frames stock
    saw."""
    total = len(clip.truth.frames)
    picked = stock_frame_indices(total, total if stock_frames is None else stock_frames, stock_spread)
    count = len(picked)
    on_stock = replace(clip.truth, frames=[clip.truth.frames[i] for i in picked])  # the truth of those frames
    where = "spread over" if picked != list(range(count)) else "at the start of"
    say(f"stock facenet-pytorch MTCNN on {count} frames {where} {clip.video.name} "
        f"({clip.truth.width}x{clip.truth.height})")
    stock, stock_timing = run_stock(clip, picked)
    stock_faces = sum(len(f) for f in stock)
    rows = [{"name": "stock", **stock_timing, "faces": stock_faces, "share_of_stock": 1.0,
             "truth": score(on_stock, stock, min_iou), "truth_on_stock_frames": _brief(score(on_stock, stock))}]
    for name, settings in variants:
        say(f"{name}: the pipeline on {total} frames")
        found, timing = run_pipeline(settings, clip)
        seen = [found[i] for i in picked]
        matched = sum(matched_faces(_boxes(s), _boxes(o), min_iou) for s, o in zip(stock, seen))
        rows.append({"name": name, **timing, "faces": sum(len(f) for f in found),
                     "faces_on_stock_frames": sum(len(f) for f in seen),
                     "share_of_stock": round(matched / stock_faces, 4) if stock_faces else None,
                     "speedup_vs_stock": round(timing["fps"] / stock_timing["fps"], 2) if stock_timing["fps"] else None,
                     "settings": {"detector": settings.detector.model_dump(mode="json"),
                                  "gating": settings.gating.model_dump(mode="json")},
                     "truth": score(clip.truth, found, min_iou),
                     "truth_on_stock_frames": _brief(score(on_stock, seen, min_iou))})
    return {"benchmark": "crowd", "clip": {"video": clip.video.name, "frames": total, "fps": clip.truth.fps,
                                           "width": clip.truth.width, "height": clip.truth.height,
                                           "seed": clip.truth.seed, "people": len(clip.truth.people)},
            "stock_frames": count, "stock_frame_numbers": picked, "min_iou": min_iou, "runs": rows,
            "machine": machine_info()}
