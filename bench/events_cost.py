"""``deepfer bench events``: what events out (MQTT, webhooks, the events sink) cost next to the pipeline itself.

N live copies of a file run through ``build_stored_pipeline`` with ``[mqtt]`` (and webhooks, when given) on. The
events' CPU is the sink's ``handle`` and tick on the loop (thread CPU time around each call) plus the CPU of the
publishers' threads (ours and paho's), read per thread from the kernel just before the stop; the share is that over
the whole process's CPU in the same window.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from bench.machine import machine_info
from core.settings import Settings
from streamer.assembly import build_stored_pipeline, load_models
from streamer.media import probe_video
from streamer.sources import FileSource

_EVENT_THREADS = ("deepfer-mqtt", "deepfer-webhook", "paho-mqtt")


def _thread_cpu(prefixes: tuple[str, ...]) -> float:
    """CPU seconds of this process's threads whose names start with one of ``prefixes``."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads()
               if names.get(t.id, "").startswith(prefixes))


def bench_events(settings: Settings, path: str, streams: int, seconds: float,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    probe_video(path)
    models = load_models(settings)
    say(f"events cost: {streams} live stream(s) of {path} for {seconds:g} s, MQTT at {settings.mqtt.host}:"
        f"{settings.mqtt.port}, {len(settings.webhooks.hooks)} webhook(s)")
    result = asyncio.run(_run(settings, models, path, streams, seconds))
    result["machine"] = machine_info()
    return result


async def _run(settings: Settings, models: Any, path: str, streams: int, seconds: float) -> dict[str, Any]:
    stored = build_stored_pipeline(settings, models, None)
    events, pipeline = stored.events, stored.pipeline
    if events is None:
        raise ValueError("events out are off: enable [mqtt] or give a webhook")
    loop_cpu = [0.0]
    handle, tick = events.handle, events.tick

    async def timed_handle(result: Any) -> None:
        t = time.thread_time()
        await handle(result)
        loop_cpu[0] += time.thread_time() - t

    def timed_tick() -> Any:
        t = time.thread_time()
        try:
            return tick()
        finally:
            loop_cpu[0] += time.thread_time() - t

    events.handle, events.tick = timed_handle, timed_tick  # type: ignore[method-assign]
    q = settings.pipeline.live_queue_size
    for i in range(streams):
        pipeline.add_source(FileSource(path, f"cam-{i}", settings.sources, q, live=True))
    proc = psutil.Process()
    snapshot: dict[str, float] = {}

    def stop() -> None:
        cpu = proc.cpu_times()
        snapshot.update(process=cpu.user + cpu.system, threads=_thread_cpu(_EVENT_THREADS), loop=loop_cpu[0],
                        wall=time.monotonic())
        snapshot["counters"] = events.stats_payload()  # type: ignore[assignment]
        pipeline.request_stop()

    await stored.start()
    cpu0 = proc.cpu_times()
    began = time.monotonic()
    asyncio.get_running_loop().call_later(seconds, stop)
    await pipeline.run()
    events_cpu = snapshot["threads"] + snapshot["loop"]
    process_cpu = snapshot["process"] - (cpu0.user + cpu0.system)
    stats = pipeline.stats().values()
    counters: Any = snapshot["counters"]
    return {
        "benchmark": "events",
        "source": path,
        "streams": streams,
        "wall_s": round(snapshot["wall"] - began, 2),
        "frames_processed": sum(s.frames_processed for s in stats),
        "faces": sum(s.faces for s in stats),
        "payloads": counters["sent"],
        "publishers": counters["publishers"],
        "events_cpu_s": round(events_cpu, 4),
        "events_loop_cpu_s": round(snapshot["loop"], 4),
        "events_threads_cpu_s": round(snapshot["threads"], 4),
        "process_cpu_s": round(process_cpu, 3),
        "events_share_pct": round(100 * events_cpu / process_cpu, 3) if process_cpu > 0 else None,
    }
