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
from typing import Any

import numpy as np
import psutil

from classifier.inference import Classifier
from detectors.base import FaceDetector
from streamer.config import Settings
from streamer.pipeline import Pipeline
from streamer.run import default_tracker_factory
from streamer.sources import FileSource, probe_file


def _warm_up(path: str, detector: FaceDetector, classifier: Classifier) -> None:
    """One untimed pass through each model (first calls allocate and pick kernels)."""
    import av

    with av.open(path) as c:
        image = next(c.decode(video=0)).to_ndarray(format="rgb24")
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


async def bench_pipeline(settings: Settings, detector: FaceDetector, classifier: Classifier, path: str,
                         streams: int, seconds: float | None = None) -> dict[str, Any]:
    fps, size = probe_file(path)
    await asyncio.to_thread(_warm_up, path, detector, classifier)
    live_q = settings.pipeline.live_queue_size
    sources = [FileSource(path, f"stream-{i}", settings.sources, live_q, live=True) for i in range(streams)]
    pipeline = Pipeline(settings, detector, classifier, default_tracker_factory(settings))
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
            "detector": settings.detector.kind, "detect_every": settings.detector.detect_every,
            "max_side": settings.detector.max_side, "min_face_size": settings.detector.min_face_size,
            "detector_batch": settings.detector.batch_size, "classifier": classifier.name,
            "classifier_batch": settings.classifier.batch_size, "classify_carried": settings.pipeline.classify_carried,
            "max_in_flight": settings.pipeline.max_in_flight, "device": str(classifier.device),
        },
        "per_stream": [{k: s[k] for k in ("camera_id", "frames_read", "frames_processed", "frames_dropped", "frames_detected",
                                          "faces", "frames_with_faces", "fps", "latency_p50_ms", "latency_p95_ms")}
                       for s in stats],
        "total": {
            "frames_read": read,
            "frames_processed": processed,
            "frames_dropped": sum(s["frames_dropped"] for s in stats),
            "fps_per_stream_mean": round(float(np.mean([s["fps"] for s in stats])), 2),
            "fps_per_stream_min": round(float(min(s["fps"] for s in stats)), 2),
            "fps_total": round(processed / wall, 2) if wall > 0 else 0.0,
            "latency_p50_ms_max": max(lat50) if lat50 else None,
            "latency_p95_ms_max": max(lat95) if lat95 else None,
            "face_frame_fraction": round(sum(s["frames_with_faces"] for s in stats) / processed, 4) if processed else 0.0,
        },
        "time_split": {
            "note": "decode: decode-thread CPU; detect/classify: wall time of the worker running the batched call "
                    "(torch uses every core inside it); per processed frame unless said otherwise",
            "decode_ms_per_frame_read": round(1000 * decode_s / read, 2) if read else None,
            "detect_ms_per_frame": round(1000 * detect_s / processed, 2) if processed else None,
            "detect_ms_per_call": round(1000 * detect_s / timing["detect"]["calls"], 2) if timing["detect"]["calls"] else None,
            "classify_ms_per_frame": round(1000 * classify_s / processed, 2) if processed else None,
            "decode_s": round(decode_s, 2),
            "detect_s": round(detect_s, 2),
            "classify_s": round(classify_s, 2),
            "batches": timing,
        },
        "utilisation": {
            "process_cores_busy": round(process_cpu_s / wall, 2) if wall > 0 else None,
            "process_cpu_s": round(process_cpu_s, 2),
            "machine_cpu_percent": psutil.cpu_percent(None),  # all cores, every process (100 = all busy)
            "cores": psutil.cpu_count(),
            "gpu_percent_mean": round(float(np.mean(gpu_samples)), 1) if gpu_samples else None,
        },
    }


async def bench_webrtc(settings: Settings, detector: FaceDetector, classifier: Classifier, path: str,
                       visitors: int, seconds: float, warm_s: float = 3.0) -> dict[str, Any]:
    """``deepfer bench webrtc``: N scripted visitors send ``path`` over loopback WebRTC (VP8 both ways) through the
    pipeline and the annotated track back. Counters and latencies are taken after ``warm_s`` of steady state.
    Each visitor runs in a process of its own, as a browser would."""
    from streamer.webrtc import WebRtcSessions, percentile_ms
    from streamer.webrtc_client import VisitorProcess

    fps, size = probe_file(path)
    await asyncio.to_thread(_warm_up, path, detector, classifier)
    pipeline = Pipeline(settings, detector, classifier, default_tracker_factory(settings))
    gateway = WebRtcSessions(settings.model_copy(update={"webrtc": settings.webrtc.model_copy(
        update={"max_sessions": max(visitors, settings.webrtc.max_sessions)})}), pipeline)
    pipeline.add_sink(gateway)
    await pipeline.start()
    clients = [VisitorProcess(path, loop=True) for _ in range(visitors)]

    async def signal(offer: dict) -> dict:
        session, sdp, kind = await gateway.answer(offer["sdp"], offer["type"], "127.0.0.1")
        return {"sdp": sdp, "type": kind, "session_id": session.id, "camera_id": session.camera_id}

    try:
        answers = [await c.connect(signal) for c in clients]
        first_s = [round(f, 2) for f in await asyncio.gather(*(c.wait_first(120) for c in clients))]
        await asyncio.sleep(warm_s)
        sessions = [gateway.sessions[a["session_id"]] for a in answers]
        for s in sessions:
            s.track.latencies.clear()
        before = [s.stats() for s in sessions]
        got_before = [await c.counts() for c in clients]
        proc = psutil.Process()
        proc.cpu_percent(None)
        psutil.cpu_percent(None)
        cpu_before = proc.cpu_times()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - started
        cpu_after = proc.cpu_times()
        after = [s.stats() for s in sessions]
        latencies = [list(s.track.latencies) for s in sessions]
        pipe = pipeline.stats()
        got_after = [await c.counts() for c in clients]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await gateway.close()
        await pipeline.stop()
    per_visitor = []
    for b, a, lat, (f0, m0), (f1, m1) in zip(before, after, latencies, got_before, got_after):
        rate = lambda key: round((getattr(a, key) - getattr(b, key)) / wall, 2)  # noqa: E731
        per_visitor.append({
            "camera_id": a.camera_id, "received_fps": rate("frames_received"), "processed_fps": rate("frames_processed"),
            "sent_fps": rate("frames_sent"), "dropped_fps": rate("frames_dropped"),
            "client_frames_back_fps": round((f1 - f0) / wall, 2), "client_messages_per_s": round((m1 - m0) / wall, 2),
            "latency_p50_ms": percentile_ms(lat, 50), "latency_p95_ms": percentile_ms(lat, 95),
            "latency_max_ms": round(max(lat) * 1000, 1) if lat else None,
            "pipeline_latency_p50_ms": pipe[a.camera_id].latency_p50_ms if a.camera_id in pipe else None,
            "pipeline_latency_p95_ms": pipe[a.camera_id].latency_p95_ms if a.camera_id in pipe else None,
        })
    process_cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    p50 = [v["latency_p50_ms"] for v in per_visitor if v["latency_p50_ms"] is not None]
    p95 = [v["latency_p95_ms"] for v in per_visitor if v["latency_p95_ms"] is not None]
    return {
        "benchmark": "webrtc",
        "source": path, "source_fps": fps, "width": size[0], "height": size[1],
        "visitors": visitors, "visitors_in": "a process each",
        "measured_s": round(wall, 2), "warm_s": warm_s,
        "latency_definition": "a frame's arrival at the server (decoded by aiortc) to its annotated frame being handed "
                              "to the VP8 encoder of the returned track; loopback, so no network time",
        "settings": {"detector": settings.detector.kind, "detect_every": settings.detector.detect_every,
                     "classifier": classifier.name, "max_in_flight": settings.webrtc.max_in_flight,
                     "batch_wait_ms": settings.webrtc.batch_wait_ms,
                     "device": str(classifier.device), "redis": False},
        "first_result_s": first_s,
        "per_visitor": per_visitor,
        "total": {"latency_p50_ms_max": max(p50) if p50 else None, "latency_p95_ms_max": max(p95) if p95 else None,
                  "processed_fps_mean": round(float(np.mean([v["processed_fps"] for v in per_visitor])), 2)},
        "utilisation": {"server_process_cores_busy": round(process_cpu_s / wall, 2) if wall > 0 else None,
                        "machine_cpu_percent": psutil.cpu_percent(None), "cores": psutil.cpu_count()},
    }
