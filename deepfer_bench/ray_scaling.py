"""``deepfer bench cluster``: the same cameras on 1 or more Ray workers of a local test cluster, through the real
``streamer.runtime`` ``ClusterRunner`` and ``CameraWorker`` (whose pipeline is ``build_stored_pipeline``'s), with a
private redis-server so its write load per camera can be measured.

On one machine every worker shares the same cores: with W workers the machine's CPUs are split into W nodes
(``ray.cluster_utils.Cluster``), each worker reserving and using its node's share. The figures say what splitting a box
into workers costs or gains, and what each camera asks of Redis (points/s, bytes/s, commands/s), which is what the
the sizing table in docs/cluster.md for N GPU nodes is built from.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import redis

from deepfer_bench.machine import machine_info
from deepfer_core.settings import Settings
from streamer.media import probe_video
from streamer.preview import PreviewSink
from streamer.runtime.camera_store import CameraOptions, StoredCamera
from streamer.runtime.ray_runner import ClusterRunner


def _redis_counters(url: str) -> dict:
    info = redis.Redis.from_url(url).info()
    return {k: info[k] for k in ("total_net_input_bytes", "total_net_output_bytes", "total_commands_processed")}


async def _worker_stats(runner: ClusterRunner) -> dict[str, dict]:
    workers = [w for w in runner.workers_by_name.values() if w.state == "ready"]
    stats = await asyncio.gather(*(runner._call(w.handle.stats.remote(), 30) for w in workers))
    return {w.name: s for w, s in zip(workers, stats)}


async def bench_config(settings: Settings, redis_url: str, source: str, cameras: int, workers: int, warmup_s: float,
                       seconds: float) -> dict:
    """One configuration: ``workers`` nodes of ``cpus // workers`` CPUs each, ``cameras`` copies of ``source`` as
    live cameras."""
    from ray.cluster_utils import Cluster

    cpus = len(os.sched_getaffinity(0))
    per = max(1, cpus // workers)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(workers):
        cluster.add_node(num_cpus=per)
    cluster.wait_for_nodes()
    s = settings.model_copy(
        update={
            "cluster": settings.cluster.model_copy(
                update={
                    "address": cluster.address,
                    "num_cpus": float(per),
                    "max_workers_per_node": 1,
                    "cameras_per_worker": cameras,
                    "poll_s": 1.0,
                }
            ),
            "redis": settings.redis.model_copy(
                update={"url": redis_url, "key_prefix": f"bench-{uuid.uuid4().hex[:8]}"}
            ),
        }
    )
    runner = ClusterRunner(s, redis_url, PreviewSink(75, 1))
    try:
        await runner.start()
        t0 = time.monotonic()
        while sum(w.state == "ready" for w in runner.workers_by_name.values()) < workers:
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"workers not ready after 300 s: {runner.workers()}")
            await asyncio.sleep(0.5)
        start_s = round(time.monotonic() - t0, 1)
        for i in range(cameras):
            await runner.add(StoredCamera(id=f"cam{i}", url=source, options=CameraOptions(realtime=True)))
        await asyncio.sleep(warmup_s)
        before, r0, t_a = await _worker_stats(runner), _redis_counters(redis_url), time.monotonic()
        await asyncio.sleep(seconds)
        after, r1, t_b = await _worker_stats(runner), _redis_counters(redis_url), time.monotonic()
        span = t_b - t_a
        per_camera = []
        for name, st in after.items():
            for cid, cam in st["cameras"].items():
                a, b = cam["stats"], before.get(name, {}).get("cameras", {}).get(cid, {}).get("stats", {})
                per_camera.append(
                    {
                        "camera_id": cid,
                        "worker": name,
                        "fps": round((a["frames_processed"] - b.get("frames_processed", 0)) / span, 2),
                        "frames_dropped": a["frames_dropped"] - b.get("frames_dropped", 0),
                        "latency_p50_ms": a["latency_p50_ms"],
                        "latency_p95_ms": a["latency_p95_ms"],
                    }
                )
        points = sum(st["redis"]["written"] for st in after.values()) - sum(
            st["redis"]["written"] for st in before.values()
        )
        delta = {k: r1[k] - r0[k] for k in r0}
        return {
            "workers": workers,
            "cpus_per_worker": per,
            "cameras": cameras,
            "workers_ready_after_s": start_s,
            "window_s": round(span, 2),
            "per_camera": sorted(per_camera, key=lambda c: c["camera_id"]),
            "total_fps": round(sum(c["fps"] for c in per_camera), 2),
            "redis": {
                "points_per_s_per_camera": round(points / span / cameras, 2),
                "bytes_in_per_s_per_camera": round(delta["total_net_input_bytes"] / span / cameras),
                "commands_per_s_per_camera": round(delta["total_commands_processed"] / span / cameras, 1),
                "note": "points and live events (one PUBLISH per processed frame), no preview watched",
            },
        }
    finally:
        await runner.stop()
        cluster.shutdown()


def bench_cluster(settings: Settings, source: str, cameras: int, workers: list[int], seconds: float) -> dict:
    from aggregator.embedded_redis import EmbeddedRedis

    info = probe_video(source)
    fps, size = info.fps, info.size
    data = Path(tempfile.mkdtemp(prefix="deepfer-bench-"))
    server = EmbeddedRedis(data, settings.redis.connect_timeout_s)
    url = server.start()  # a private Redis: its byte counters see only this benchmark
    settings = settings.model_copy(update={"paths": settings.paths.model_copy(update={"data_dir": data})})
    try:
        runs = [asyncio.run(bench_config(settings, url, source, cameras, w, 3.0, seconds)) for w in workers]
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    return {
        "benchmark": "cluster",
        "source": source,
        "source_fps": fps,
        "width": size[0],
        "height": size[1],
        "settings": {
            "detect_every": settings.detector.detect_every,
            "points_per_s": settings.redis.points_per_s,
            "events": settings.redis.events,
            "device": settings.detector.device,
        },
        "machine": machine_info(),
        "runs": runs,
    }
