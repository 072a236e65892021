"""What ``deepfer run`` and ``deepfer bench pipeline`` share: building the parts, and running until done or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Sequence

from streamer.config import Settings
from streamer.netpolicy import NetworkPolicy
from streamer.pipeline import Pipeline, TrackerFactory
from streamer.sources import SourceError, VideoSource, default_camera_id, open_source

log = logging.getLogger(__name__)


def build_sources(uris: Sequence[str], camera_ids: Sequence[str], settings: Settings,
                  live_files: bool = False) -> list[VideoSource]:
    """One source per URI; ``camera_ids`` name the first ones, the rest get ids from their URI (made unique)."""
    if not uris:
        raise SourceError("give at least one --source")
    if len(camera_ids) > len(uris):
        raise SourceError(f"{len(camera_ids)} --camera-id for {len(uris)} --source")
    explicit = list(camera_ids)
    if len(set(explicit)) != len(explicit):
        raise SourceError(f"--camera-id values must be unique, got {explicit}")
    used = set(explicit)
    ids: list[str] = []
    for i, uri in enumerate(uris):
        if i < len(explicit):
            ids.append(explicit[i])
            continue
        base = cid = default_camera_id(uri)
        n = 2
        while cid in used:
            cid, n = f"{base}-{n}", n + 1
        used.add(cid)
        ids.append(cid)
    policy = NetworkPolicy.from_settings(settings.sources, [settings.redis.url, settings.redis.default_url])
    return [open_source(uri, cid, settings.sources, settings.pipeline, live_file=live_files, policy=policy)
            for uri, cid in zip(uris, ids)]


def default_tracker_factory(settings: Settings) -> TrackerFactory | None:
    """One ``aggregator.tracker.FaceTracker`` per camera (None when the aggregator is not installed)."""
    try:
        from aggregator.tracker import FaceTracker
    except ImportError:
        log.warning("aggregator.tracker is not available: results are not tracked or smoothed")
        return None
    return lambda camera_id: FaceTracker(settings.tracker, settings.smoothing)


def video_outputs(output: Path, camera_ids: Sequence[str]) -> dict[str, Path]:
    """``--output x.mp4``: that file for one camera, ``x-<camera>.mp4`` for each of several."""
    if len(camera_ids) == 1:
        return {camera_ids[0]: output}
    return {cid: output.with_name(f"{output.stem}-{cid}{output.suffix or '.mp4'}") for cid in camera_ids}


async def run_until_done(pipeline: Pipeline, until_idle: bool, log_every_s: float = 0.0) -> bool:
    """Run the pipeline; SIGINT/SIGTERM stop it cleanly (outputs flushed). True when stopped by a signal.

    A second Ctrl-C abandons the clean stop.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    interrupted = False

    def on_signal(signame: str) -> None:
        nonlocal interrupted
        if interrupted:
            log.warning("%s again: aborting without waiting for outputs", signame)
            if main is not None:
                main.cancel()
            return
        interrupted = True
        log.info("%s: stopping, finishing the frames in flight and closing outputs (again to abort)", signame)
        pipeline.request_stop()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig.name)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not a Unix loop
            pass
    reporter = asyncio.create_task(_report(pipeline, log_every_s)) if log_every_s > 0 else None
    try:
        await pipeline.run(until_idle=until_idle)
    finally:
        if reporter is not None:
            reporter.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
    return interrupted


async def _report(pipeline: Pipeline, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        for s in pipeline.stats().values():
            log.info("camera %s: %s, read %d, processed %d, dropped %d, faces %d, %.1f fps, latency p50 %s ms p95 %s ms",
                     s.camera_id, s.status, s.frames_read, s.frames_processed, s.frames_dropped, s.faces, s.recent_fps,
                     s.latency_p50_ms, s.latency_p95_ms)


def load_models(settings: Settings):
    """The detector and classifier named by the settings (``WeightsError``/``ValueError`` on bad choices)."""
    from classifier.inference import EmotionClassifier
    from detectors import build_detector

    classifier = EmotionClassifier.load(settings.classifier.weights, settings.classifier.device, tta=settings.classifier.tta)
    return build_detector(settings.detector), classifier


def run_command(settings: Settings, uris: Sequence[str], camera_ids: Sequence[str], output: Path | None,
                summary_json: Path | None, track: bool, console, store: bool = False) -> int:
    """``deepfer run``: exit status 0, or 1 when a source failed for good (the error is in the log and summary).

    ``store``: tracked people also go to Redis (``aggregator.redis_sink``; an embedded server when none answers).
    """
    from rich.table import Table

    from streamer.outputs import AnnotatedVideoSink, SummarySink

    sources = build_sources(uris, camera_ids, settings)  # bad paths fail here, before models load
    detector, classifier = load_models(settings)
    factory = default_tracker_factory(settings) if track else None
    pipeline = Pipeline(settings, detector, classifier, factory)
    for s in sources:
        pipeline.add_source(s)
    if output is not None:
        pipeline.add_sink(AnnotatedVideoSink(video_outputs(output, [s.camera_id for s in sources]), settings.pipeline))
    if summary_json is not None:
        extra = lambda: {"timing": pipeline.timing(), "detector": settings.detector.kind,
                         "detect_every": settings.detector.detect_every, "classifier": classifier.name}
        pipeline.add_sink(SummarySink(summary_json, pipeline.stats, extra, settings.pipeline.summary_max_frames))
    redis_sink = embedded = None
    if store and factory is not None:
        from aggregator.redis_sink import open_redis_sink

        redis_sink, embedded = open_redis_sink(settings)
        pipeline.add_sink(redis_sink)
        console.print(f"storing people in Redis at {redis_sink.display} (keys {settings.redis.key_prefix}:*)",
                      soft_wrap=True)
    live = any(s.live for s in sources)
    console.print(f"analysing {len(sources)} source(s) with {detector.name} + {classifier.name} on {classifier.device}"
                  + ("; Ctrl-C stops" if live else ""))
    try:
        interrupted = asyncio.run(run_until_done(pipeline, until_idle=not live, log_every_s=settings.pipeline.log_every_s))
    finally:
        if embedded is not None:
            embedded.stop()
    if redis_sink is not None and redis_sink.buffer_depth:
        console.print(f"Redis did not take {redis_sink.buffer_depth} points; they wait in {redis_sink.journal.dir} "
                      "for the next run", soft_wrap=True)
    table = Table(title="interrupted" if interrupted else None)
    for col in ("camera", "status", "read", "processed", "dropped", "faces", "fps", "p50 ms", "p95 ms"):
        table.add_column(col, justify="right" if col not in ("camera", "status") else "left")
    stats = pipeline.stats()
    for s in stats.values():
        table.add_row(s.camera_id, s.status, str(s.frames_read), str(s.frames_processed), str(s.frames_dropped),
                      str(s.faces), f"{s.fps:.1f}", str(s.latency_p50_ms), str(s.latency_p95_ms))
    console.print(table)
    failed = [s for s in stats.values() if s.status == "failed"]
    for s in failed:
        console.print(f"[bold red]error:[/] camera {s.camera_id}: {s.last_error}", highlight=False, soft_wrap=True)
    return 1 if failed else 0


def bench_command(settings: Settings, source: str, streams: int, seconds: float | None, json_out: Path, console) -> None:
    import json

    from streamer.bench import bench_pipeline
    from streamer.sources import probe_file

    probe_file(source)
    detector, classifier = load_models(settings)
    console.print(f"benchmarking {streams} live stream(s) of {source} with {detector.name} (detect every "
                  f"{settings.detector.detect_every}) + {classifier.name} on {classifier.device}")
    result = asyncio.run(bench_pipeline(settings, detector, classifier, source, streams, seconds))
    try:
        from streamer.machine_info import machine_info

        result["machine"] = machine_info()
    except ImportError:
        pass
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2) + "\n")
    t = result["total"]
    console.print(f"{streams} stream(s): {t['fps_per_stream_mean']} fps each (min {t['fps_per_stream_min']}), "
                  f"dropped {t['frames_dropped']}/{t['frames_read']}, latency p50 {t['latency_p50_ms_max']} ms "
                  f"p95 {t['latency_p95_ms_max']} ms; wrote {json_out}")
