"""``deepfer bench webrtc``: the live demo's path, measured with scripted visitors over loopback WebRTC."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

from deepfer_bench.machine import machine_info
from deepfer_bench.pipeline_speed import warm_up
from deepfer_bench.visitor import VisitorProcess
from deepfer_core.settings import Settings
from deepfer_core.stats import percentile_ms
from streamer.assembly import Models, build_pipeline, load_models
from streamer.media import probe_video
from streamer.webrtc.candidates import machine_networks
from streamer.webrtc.gateway import WebRtcSessions


def bench_webrtc(settings: Settings, path: str, visitors: int, seconds: float,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """``deepfer bench webrtc``: N scripted visitors send ``path`` over loopback WebRTC (VP8 both ways) through the
    pipeline and the annotated track back. Each visitor runs in a process of its own, as a browser would."""
    probe_video(path)
    models = load_models(settings)
    say(f"benchmarking {visitors} WebRTC visitor(s) sending {path} for {seconds:g} s")
    result = asyncio.run(run_visitors(settings, models, path, visitors, seconds))
    result["machine"] = machine_info()
    return result


async def run_visitors(settings: Settings, models: Models, path: str, visitors: int, seconds: float,
                       warm_s: float = 3.0) -> dict[str, Any]:
    """Counters and latencies are taken after ``warm_s`` of steady state."""
    info = probe_video(path)
    fps, size = info.fps, info.size
    classifier = models.classifier
    await asyncio.to_thread(warm_up, path, models.detector, classifier)
    pipeline = build_pipeline(settings, models)
    w = settings.webrtc  # the visitors are processes of this machine: its own addresses are where they are
    gateway = WebRtcSessions(settings.model_copy(update={"webrtc": w.model_copy(
        update={"max_sessions": max(visitors, w.max_sessions),
                "allowed_networks": [*w.allowed_networks, *machine_networks()] if w.allowed_networks else []})}),
        pipeline)
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
    per_visitor: list[dict] = []
    for b, a, lat, (f0, m0), (f1, m1) in zip(before, after, latencies, got_before, got_after):
        def rate(key: str, a=a, b=b) -> float:
            return round((getattr(a, key) - getattr(b, key)) / wall, 2)

        per_visitor.append(
            {
                "camera_id": a.camera_id,
                "received_fps": rate("frames_received"),
                "processed_fps": rate("frames_processed"),
                "sent_fps": rate("frames_sent"),
                "dropped_fps": rate("frames_dropped"),
                "client_frames_back_fps": round((f1 - f0) / wall, 2),
                "client_messages_per_s": round((m1 - m0) / wall, 2),
                "latency_p50_ms": percentile_ms(lat, 50),
                "latency_p95_ms": percentile_ms(lat, 95),
                "latency_max_ms": round(max(lat) * 1000, 1) if lat else None,
                "pipeline_latency_p50_ms": pipe[a.camera_id].latency_p50_ms if a.camera_id in pipe else None,
                "pipeline_latency_p95_ms": pipe[a.camera_id].latency_p95_ms if a.camera_id in pipe else None,
            }
        )
    process_cpu_s = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    p50 = [v["latency_p50_ms"] for v in per_visitor if v["latency_p50_ms"] is not None]
    p95 = [v["latency_p95_ms"] for v in per_visitor if v["latency_p95_ms"] is not None]
    return {
        "benchmark": "webrtc",
        "source": path,
        "source_fps": fps,
        "width": size[0],
        "height": size[1],
        "visitors": visitors,
        "visitors_in": "a process each",
        "measured_s": round(wall, 2),
        "warm_s": warm_s,
        "latency_definition": "a frame's arrival at the server (decoded by aiortc) to its annotated frame being handed "
        "to the VP8 encoder of the returned track; loopback, so no network time",
        "settings": {
            "detector": settings.detector.kind,
            "detect_every": settings.detector.detect_every,
            "classifier": classifier.name,
            "max_in_flight": settings.webrtc.max_in_flight,
            "batch_wait_ms": settings.webrtc.batch_wait_ms,
            "device": str(classifier.device),
            "redis": False,
        },
        "first_result_s": first_s,
        "per_visitor": per_visitor,
        "total": {
            "latency_p50_ms_max": max(p50) if p50 else None,
            "latency_p95_ms_max": max(p95) if p95 else None,
            "processed_fps_mean": round(float(np.mean([v["processed_fps"] for v in per_visitor])), 2),
        },
        "utilisation": {
            "server_process_cores_busy": round(process_cpu_s / wall, 2) if wall > 0 else None,
            "machine_cpu_percent": psutil.cpu_percent(None),
            "cores": psutil.cpu_count(),
        },
    }
