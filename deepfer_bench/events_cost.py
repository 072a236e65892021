"""``deepfer bench events``: what events out (MQTT, webhooks, the events sink) cost next to the pipeline itself.

N live copies of a file run through ``build_stored_pipeline`` with ``[mqtt]`` on, every payload type POSTed to a
webhook receiver on loopback (``deepfer_bench.loopback_receiver``, a process of its own) and to any ``--webhook``, and
two
alert rules. Two measures, each run ``repeats`` times (with and without events alternating) and reported as medians:

- **share**: the events' CPU (the sink's ``handle`` and tick on the loop, timed with thread CPU time around each
  call, plus the CPU of the publishers' threads, ours and paho's, read per thread from the kernel just before the
  stop) over the whole process's CPU in the same window;
- **difference**: the process's CPU per processed frame with events on against the same pipeline with none
  (``mqtt.enabled = false``, no hooks, no rules: no events sink at all). On a loaded machine this one is noisy
  (other jobs change what a frame costs), hence the repeats, the medians and the load average in the JSON.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from deepfer_bench.machine import machine_info
from deepfer_core.settings import AlertRule, Settings, WebhookSettings
from streamer.assembly import build_stored_pipeline, load_models
from streamer.media import probe_video
from streamer.sources import FileSource

_EVENT_THREADS = ("deepfer-mqtt", "deepfer-webhook", "paho-mqtt")


def _thread_cpu(prefixes: tuple[str, ...]) -> float:
    """CPU seconds of this process's threads whose names start with one of ``prefixes``."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads()
               if names.get(t.id, "").startswith(prefixes))


BENCH_RULES = [  # exercised by every tick: an emotion rule and a people rule per camera
    AlertRule(name="bench-unhappy", kind="satisfaction_below", threshold=-0.5, window_s=60.0),
    AlertRule(name="bench-crowd", kind="people_above", threshold=5),
]


@contextmanager
def loopback_receiver() -> Iterator[str]:
    """``deepfer_bench.loopback_receiver`` in its own process; yields its URL, stops it at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "deepfer_bench.loopback_receiver"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/deepfer"
    finally:
        proc.terminate()
        proc.wait(10)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def bench_events(settings: Settings, path: str, streams: int, seconds: float,
                 say: Callable[[str], None] = print, repeats: int = 1,
                 loopback_webhook: bool = True) -> dict[str, Any]:
    """``repeats`` runs with events and as many without, alternating; the first with-events run's figures at the
    top level (as before), every run under ``runs``, medians under ``median``."""
    probe_video(path)
    models = load_models(settings)
    load_before = os.getloadavg()
    with loopback_receiver() if loopback_webhook else _no_receiver() as url:
        hooks = list(settings.webhooks.hooks)
        if url:
            hooks.append(WebhookSettings(url=url, secret="bench", events=["enter", "leave", "alert", "state"]))
        on = settings.model_copy(update={
            "webhooks": settings.webhooks.model_copy(update={"hooks": hooks}),
            "alerts": settings.alerts.model_copy(update={"rules": [*settings.alerts.rules, *BENCH_RULES]})})
        off = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"enabled": False}),
                                          "webhooks": settings.webhooks.model_copy(update={"hooks": []}),
                                          "alerts": settings.alerts.model_copy(update={"rules": []})})
        say(f"events cost: {streams} live stream(s) of {path} for {seconds:g} s x {repeats} with and without "
            f"events; MQTT at {settings.mqtt.host}:{settings.mqtt.port}, {len(hooks)} webhook(s)"
            + (" (one a receiver on loopback)" if url else ""))
        runs: list[dict[str, Any]] = []
        for i in range(repeats):
            with_events = asyncio.run(_run(on, models, path, streams, seconds))
            without = asyncio.run(_run(off, models, path, streams, seconds))
            runs.append({"with_events": with_events, "without_events": without})
            say(f"  run {i + 1}: events {with_events['events_share_pct']}% of the process; CPU per frame "
                f"{with_events['cpu_ms_per_frame']} ms with events, {without['cpu_ms_per_frame']} ms without")
    load_after = os.getloadavg()
    on_ms = _median([r["with_events"]["cpu_ms_per_frame"] for r in runs])
    off_ms = _median([r["without_events"]["cpu_ms_per_frame"] for r in runs])
    result = dict(runs[0]["with_events"])
    result.update({
        "repeats": repeats,
        "webhook_receiver": "loopback process" if loopback_webhook else None,
        "rules": [r.name for r in on.alerts.rules],
        "median": {
            "events_share_pct": _median([r["with_events"]["events_share_pct"] for r in runs]),
            "cpu_ms_per_frame_with_events": on_ms,
            "cpu_ms_per_frame_without_events": off_ms,
            "difference_pct": round(100 * (on_ms - off_ms) / off_ms, 2) if on_ms and off_ms else None,
            "process_share_without_events_pct": 0.0,  # no events sink: nothing of it runs
        },
        "runs": runs,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "machine": machine_info(),
    })
    return result


@contextmanager
def _no_receiver() -> Iterator[str]:
    yield ""


async def _run(settings: Settings, models: Any, path: str, streams: int, seconds: float) -> dict[str, Any]:
    stored = build_stored_pipeline(settings, models, None)
    events = stored.events
    if events is None:  # the baseline: the same pipeline without events out
        return await _measure(stored, None, [0.0], path, streams, seconds)
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
    return await _measure(stored, events, loop_cpu, path, streams, seconds)


async def _measure(stored: Any, events: Any, loop_cpu: list[float], path: str, streams: int,
                   seconds: float) -> dict[str, Any]:
    pipeline, settings = stored.pipeline, stored.pipeline.settings
    q = settings.pipeline.live_queue_size
    for i in range(streams):
        pipeline.add_source(FileSource(path, f"cam-{i}", settings.sources, q, live=True))
    proc = psutil.Process()
    snapshot: dict[str, float] = {}

    def stop() -> None:
        cpu = proc.cpu_times()
        snapshot.update(process=cpu.user + cpu.system, threads=_thread_cpu(_EVENT_THREADS), loop=loop_cpu[0],
                        wall=time.monotonic())
        if events is not None:
            snapshot["counters"] = events.stats_payload()  # type: ignore[assignment]
        pipeline.request_stop()

    await stored.start()
    cpu0, threads0 = proc.cpu_times(), _thread_cpu(_EVENT_THREADS)  # threads0: any left by an earlier run
    began = time.monotonic()
    asyncio.get_running_loop().call_later(seconds, stop)
    await pipeline.run()
    snapshot["threads"] -= threads0
    events_cpu = snapshot["threads"] + snapshot["loop"]
    process_cpu = snapshot["process"] - (cpu0.user + cpu0.system)
    stats = pipeline.stats().values()
    counters: Any = snapshot.get("counters") or {"sent": {}, "publishers": {}}
    frames = sum(s.frames_processed for s in stats)
    return {
        "benchmark": "events",
        "events": events is not None,
        "source": path,
        "streams": streams,
        "wall_s": round(snapshot["wall"] - began, 2),
        "frames_processed": frames,
        "cpu_ms_per_frame": round(1000 * process_cpu / frames, 3) if frames else None,
        "faces": sum(s.faces for s in stats),
        "payloads": counters["sent"],
        "publishers": counters["publishers"],
        "events_cpu_s": round(events_cpu, 4),
        "events_loop_cpu_s": round(snapshot["loop"], 4),
        "events_threads_cpu_s": round(snapshot["threads"], 4),
        "process_cpu_s": round(process_cpu, 3),
        "events_share_pct": round(100 * events_cpu / process_cpu, 3) if process_cpu > 0 else None,
    }
