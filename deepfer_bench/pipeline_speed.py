"""``deepfer bench pipeline``: N copies of a file played as live cameras through the whole pipeline.

Each stream is paced at the file's own frame rate with newest-wins buffers, so
a pipeline that cannot keep up drops frames (counted) instead of slowing the
clock: per-stream fps, drops and capture-to-result latency are what a camera
deployment would see. Where the time goes is measured per stage: decode-thread
CPU per frame, and the detector's and classifier's busy time in their workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from deepfer_bench.crowd_clip import CrowdTruth
from deepfer_bench.crowd_score import BUCKETS, Found, score
from deepfer_bench.machine import machine_info
from deepfer_core.protocols import EmotionModel, FaceDetector
from deepfer_core.settings import Settings
from deepfer_core.types import FrameResult
from streamer.assembly import Models, build_pipeline, load_models
from streamer.media import probe_video, read_frames
from streamer.sources import FileSource


def warm_up(path: str, detector: FaceDetector, classifier: EmotionModel) -> None:
    """One untimed pass through each model (first calls allocate and pick kernels)."""
    image, _ = next(read_frames(path, 1))
    detector.detect([image])
    classifier.predict_faces(np.zeros((1, 48, 48), np.uint8))


def _gpu_sampler(samples: list[float]):
    import torch

    if not torch.cuda.is_available():
        return None

    async def sample() -> None:
        while True:
            try:
                samples.append(float(torch.cuda.utilization()))
            except Exception:  # needs NVML (pynvml); leave the figure out rather than guess
                return
            await asyncio.sleep(0.5)

    return asyncio.create_task(sample())


class ReportedFaces:
    """A ``ResultSink`` keeping the boxes (and track ids) each camera reported, by frame number (no pixels)."""

    def __init__(self) -> None:
        self.frames: dict[str, dict[int, list[Found]]] = {}

    async def handle(self, result: FrameResult) -> None:
        self.frames.setdefault(result.camera_id, {})[result.frame.seq] = [
            Found(*f.box.xyxy, f.track_id) for f in result.faces]

    async def close(self) -> None:
        pass


def score_reported(truth: CrowdTruth, reported: dict[int, list[Found]], min_iou: float = 0.5) -> dict[str, Any]:
    """``deepfer_bench/crowd_score.score`` over the frames a camera reported (its analysed frames, in clip order): a
    live camera drops the frames the pipeline had no time for, and those are not scored."""
    seqs = sorted(i for i in reported if 0 <= i < len(truth.frames))
    sub = CrowdTruth(truth.fps, truth.width, truth.height, truth.seed, truth.people, [truth.frames[i] for i in seqs])
    scored = score(sub, [reported[i] for i in seqs], min_iou)
    scored["frames_scored"] = len(seqs)
    scored["clip_frames"] = len(truth.frames)
    return scored


def _pooled(per_camera: dict[str, dict[str, Any]], buckets: list[str]) -> float | None:
    """Recall over ``buckets`` with every camera's hits and misses added up (each camera plays the same clip)."""
    hits = sum(s["by_size"][b]["found"] for s in per_camera.values() for b in buckets)
    faces = sum(s["by_size"][b]["faces"] for s in per_camera.values() for b in buckets)
    return round(hits / faces, 4) if faces else None


def _accuracy(truth: CrowdTruth, reported: dict[str, dict[int, list[Found]]], cameras: list[str]) -> dict[str, Any]:
    per_camera = {cam: score_reported(truth, reported.get(cam, {})) for cam in cameras}
    buckets = [name for name, _, _ in BUCKETS]
    found = sum(s["found"] for s in per_camera.values())
    false = sum(s["false"] for s in per_camera.values())
    return {
        "note": "scored only on the frames each camera analysed (those the pipeline reported a result for; a live "
                "camera drops the frames it has no time for, and they are not scored): frame = the decoder's frame "
                "number in the clip (the source's seq), matched to the clip's ground truth with "
                "deepfer_bench/crowd_score.py (IoU >= 0.5, one-to-one); sizes are the true face's long side; all "
                "cameras pooled, per_camera for each",
        "frames_scored": sum(s["frames_scored"] for s in per_camera.values()),
        "clip_frames": len(truth.frames),
        "recall": _pooled(per_camera, buckets),
        "recall_32_up": _pooled(per_camera, buckets[1:]),
        "precision": round(found / (found + false), 4) if found + false else None,
        "recall_by_size": {b: _pooled(per_camera, [b]) for b in buckets},
        "faces_by_size": {b: sum(s["by_size"][b]["faces"] for s in per_camera.values()) for b in buckets},
        "per_camera": per_camera,
    }


BATCH_KEYS = ("calls", "mean_batch", "batch_p50", "batch_p95", "batch_max", "max_items", "fill", "closed_full",
              "closed_deadline", "wait_ms_mean", "wait_ms_p95", "fill_ms_mean", "fill_ms_p95")


def batching_summary(timing: dict[str, dict[str, Any]], settings: Settings) -> dict[str, Any]:
    """Whether the cross-camera batches fill: per batcher the batch sizes (mean, p50, p95, max, and ``fill``, the
    mean over the capacity), how many started full or at their deadline, and the waits (``wait_ms``: submitted to
    the call starting in the worker, queue included; ``fill_ms``: the first item's wait for the batch to close)."""
    out: dict[str, Any] = {name: {k: stats.get(k) for k in BATCH_KEYS} for name, stats in timing.items()}
    out["deadline_ms"] = {"detect": settings.pipeline.detect_max_wait_ms, "classify": settings.classifier.max_wait_ms}
    return out


def feeding_in_effect(settings: Settings, models: Models) -> dict[str, Any]:
    """How frames and crops reach the device: decode threads, the staging buffers (pinned, non-blocking), and
    whether torchcodec (NVDEC) could be imported (it is not used by the pipeline yet)."""
    import importlib.util

    def staging(model: object) -> dict[str, Any] | None:
        found = getattr(model, "staging", None)
        members = getattr(model, "members", None)
        if found is None and members:
            found = getattr(members[0], "staging", None)
        return found.describe() if found is not None else None

    return {"decode_threads": settings.sources.decode_threads, "detector": staging(models.detector),
            "classifier": staging(models.classifier),
            "torchcodec_importable": importlib.util.find_spec("torchcodec") is not None}


def detector_in_effect(settings: Settings) -> dict[str, Any]:
    """The detector and gating settings a run used (the keys that decide what is found at 1080p)."""
    d, g = settings.detector, settings.gating
    return {"kind": d.kind, "detect_every": d.detect_every, "detect_every_large": d.detect_every_large,
            "refine_between": d.refine_between, "region_native": d.region_native,
            "region_min_face_size": d.region_min_face_size,
            "max_side": d.max_side, "min_face_size": d.min_face_size, "min_confidence": d.min_confidence,
            "gating": g.enabled, "gating_refine": g.refine, "full_every_s": g.full_every_s,
            "full_min_interval_s": g.full_min_interval_s, "full_beside_live": g.full_beside_live}


def bench_pipeline(settings: Settings, path: str, streams: int, seconds: float | None = None,
                   say: Callable[[str], None] = print, truth: CrowdTruth | None = None) -> dict[str, Any]:
    """``deepfer bench pipeline``: ``streams`` live copies of ``path`` for ``seconds`` (default: the file's length);
    with ``truth`` (the crowd clip's), recall and precision of the boxes each camera reported."""
    probe_video(path)
    models = load_models(settings)
    say(f"benchmarking {streams} live stream(s) of {path} with {models.detector.name} (detect every "
        f"{settings.detector.detect_every}) + {models.classifier.name} on {models.classifier.device}")
    result = asyncio.run(run_streams(settings, models, path, streams, seconds, truth))
    result["machine"] = machine_info()
    return result


async def run_streams(settings: Settings, models: Models, path: str, streams: int,
                      seconds: float | None = None, truth: CrowdTruth | None = None) -> dict[str, Any]:
    info = probe_video(path)
    fps, size = info.fps, info.size
    classifier = models.classifier
    await asyncio.to_thread(warm_up, path, models.detector, classifier)
    live_q = settings.pipeline.live_queue_size
    sources = [FileSource(path, f"stream-{i}", settings.sources, live_q, live=True) for i in range(streams)]
    reported = ReportedFaces()
    pipeline = build_pipeline(settings, models, [reported] if truth is not None else ())
    for s in sources:
        pipeline.add_source(s)
    proc = psutil.Process()
    proc.cpu_percent(None)
    psutil.cpu_percent(None)
    cpu_before = proc.cpu_times()
    gpu_samples: list[float] = []
    gpu_task = _gpu_sampler(gpu_samples)
    started = time.monotonic()
    if seconds:
        asyncio.get_running_loop().call_later(seconds, pipeline.request_stop)
    await pipeline.run(until_idle=True)
    wall = time.monotonic() - started
    if gpu_task is not None:
        gpu_task.cancel()
    cpu_after = proc.cpu_times()
    process_cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    stats = [s.to_dict() for s in pipeline.stats().values()]
    timing = pipeline.timing()
    processed = sum(s["frames_processed"] for s in stats)
    read = sum(s["frames_read"] for s in stats)
    decode_s = sum(src.decode_cpu_s for src in sources)
    detect_s, classify_s = timing["detect"]["busy_s"], timing["classify"]["busy_s"]
    lat50 = [s["latency_p50_ms"] for s in stats if s["latency_p50_ms"] is not None]
    lat95 = [s["latency_p95_ms"] for s in stats if s["latency_p95_ms"] is not None]
    result: dict[str, Any] = {
        "benchmark": "pipeline",
        "source": path,
        "source_fps": fps,
        "width": size[0],
        "height": size[1],
        "streams": streams,
        "wall_s": round(wall, 2),
        "settings": {
            "detector": settings.detector.kind,
            "detect_every": settings.detector.detect_every,
            "max_side": settings.detector.max_side,
            "min_face_size": settings.detector.min_face_size,
            "detector_batch": settings.detector.batch_size,
            "classifier": classifier.name,
            "classifier_batch": settings.classifier.batch_size,
            "classify_carried": settings.pipeline.classify_carried,
            "max_in_flight": settings.pipeline.max_in_flight,
            "device": str(classifier.device),
            "in_effect": detector_in_effect(settings),
        },
        "per_stream": [
            {
                k: s[k]
                for k in (
                    "camera_id",
                    "frames_read",
                    "frames_processed",
                    "frames_dropped",
                    "frames_detected",
                    "faces",
                    "frames_with_faces",
                    "fps",
                    "latency_p50_ms",
                    "latency_p95_ms",
                )
            }
            for s in stats
        ],
        "total": {
            "frames_read": read,
            "frames_processed": processed,
            "frames_dropped": sum(s["frames_dropped"] for s in stats),
            "fps_per_stream_mean": round(float(np.mean([s["fps"] for s in stats])), 2),
            "fps_per_stream_min": round(float(min(s["fps"] for s in stats)), 2),
            "fps_total": round(processed / wall, 2) if wall > 0 else 0.0,
            "latency_p50_ms_max": max(lat50) if lat50 else None,
            "latency_p95_ms_max": max(lat95) if lat95 else None,
            "face_frame_fraction": round(sum(s["frames_with_faces"] for s in stats) / processed, 4)
            if processed
            else 0.0,
        },
        "time_split": {
            "note": "decode: decode-thread CPU; detect/classify: wall time of the worker running the batched call "
            "(torch uses every core inside it); per processed frame unless said otherwise",
            "decode_ms_per_frame_read": round(1000 * decode_s / read, 2) if read else None,
            "detect_ms_per_frame": round(1000 * detect_s / processed, 2) if processed else None,
            "detect_ms_per_call": round(1000 * detect_s / timing["detect"]["calls"], 2)
            if timing["detect"]["calls"]
            else None,
            "classify_ms_per_frame": round(1000 * classify_s / processed, 2) if processed else None,
            "decode_s": round(decode_s, 2),
            "detect_s": round(detect_s, 2),
            "classify_s": round(classify_s, 2),
            "batches": timing,
        },
        "batching": batching_summary(timing, settings),
        "feeding": feeding_in_effect(settings, models),
        "utilisation": {
            "process_cores_busy": round(process_cpu_s / wall, 2) if wall > 0 else None,
            "process_cpu_s": round(process_cpu_s, 2),
            "cpu_s_per_camera": round(process_cpu_s / streams, 2),
            "cores_busy_per_camera": round(process_cpu_s / wall / streams, 3) if wall > 0 else None,
            "load_average": [round(x, 2) for x in psutil.getloadavg()],
            "machine_cpu_percent": psutil.cpu_percent(None),  # all cores, every process (100 = all busy)
            "cores": psutil.cpu_count(),
            "gpu_percent_mean": round(float(np.mean(gpu_samples)), 1) if gpu_samples else None,
        },
    }
    if truth is not None:
        result["accuracy"] = _accuracy(truth, reported.frames, [src.camera_id for src in sources])
    return result


SCENES = ("crowd", "single", "empty")


def scene_clip(scene: str, cache: Path, media: Path, fer: Path, seconds: float = 20.0
               ) -> tuple[str, CrowdTruth | None]:
    """A 1920x1080 25 fps clip for ``--scene``: the walking crowd (with its ground truth), one person (woman2.mp4
    padded), or nobody; the clip's path and the truth (None but for the crowd)."""
    from deepfer_bench.clips import empty_1080p, single_1080p
    from deepfer_bench.crowd_clip import make_crowd_clip

    if scene == "crowd":
        clip = make_crowd_clip(cache, media, fer, seconds, 25)
        return str(clip.video), clip.truth
    if scene == "single":
        out = cache / "single-1080p.mp4"
        return str(out if out.is_file() else single_1080p(media / "woman2.mp4", out)), None
    out = cache / f"empty-1080p-{seconds:g}.mp4"
    return str(out if out.is_file() else empty_1080p(media / "no-faces.jpg", out, seconds)), None
