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

from deepfer_bench.machine import machine_info
from deepfer_core.protocols import EmotionModel, FaceDetector
from deepfer_core.settings import Settings
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


def bench_pipeline(settings: Settings, path: str, streams: int, seconds: float | None = None,
                   say: Callable[[str], None] = print) -> dict[str, Any]:
    """``deepfer bench pipeline``: ``streams`` live copies of ``path`` for ``seconds`` (default: the file's length)."""
    probe_video(path)
    models = load_models(settings)
    say(f"benchmarking {streams} live stream(s) of {path} with {models.detector.name} (detect every "
        f"{settings.detector.detect_every}) + {models.classifier.name} on {models.classifier.device}")
    result = asyncio.run(run_streams(settings, models, path, streams, seconds))
    result["machine"] = machine_info()
    return result


async def run_streams(settings: Settings, models: Models, path: str, streams: int,
                      seconds: float | None = None) -> dict[str, Any]:
    info = probe_video(path)
    fps, size = info.fps, info.size
    classifier = models.classifier
    await asyncio.to_thread(warm_up, path, models.detector, classifier)
    live_q = settings.pipeline.live_queue_size
    sources = [FileSource(path, f"stream-{i}", settings.sources, live_q, live=True) for i in range(streams)]
    pipeline = build_pipeline(settings, models)
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
    return {
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


SCENES = ("crowd", "single", "empty")


def scene_clip(scene: str, cache: Path, media: Path, fer: Path, seconds: float = 20.0) -> str:
    """A 1920x1080 25 fps clip for ``--scene``: the walking crowd, one person (woman2.mp4 padded), or nobody."""
    from deepfer_bench.clips import empty_1080p, single_1080p
    from deepfer_bench.crowd_clip import make_crowd_clip

    if scene == "crowd":
        return str(make_crowd_clip(cache, media, fer, seconds, 25).video)
    if scene == "single":
        out = cache / "single-1080p.mp4"
        return str(out if out.is_file() else single_1080p(media / "woman2.mp4", out))
    out = cache / f"empty-1080p-{seconds:g}.mp4"
    return str(out if out.is_file() else empty_1080p(media / "no-faces.jpg", out, seconds))
