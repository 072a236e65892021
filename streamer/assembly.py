"""The one place that wires DeepFER together: models, trackers, sources, sinks, the network policy and the pipeline.

``deepfer run``, ``deepfer serve`` (through the dashboard's service), the Ray workers, the WebRTC gateway's pipeline
and every benchmark build their parts here, so they all run the same thing. ``build_stored_pipeline`` is the one
composition point for a pipeline's sinks: a new sink added there reaches all of them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator.redis_sink import RedisSink
from aggregator.tracker import FaceTracker
from classifier.gradcam import GradCam
from classifier.loading import build_classifier
from deepfer_core.protocols import EmotionModel, FaceDetector, ResultSink, TrackerFactory
from deepfer_core.settings import Settings
from detectors import build_detector
from streamer.netpolicy import NetworkPolicy
from streamer.pipeline import CameraStats, Pipeline
from streamer.preview import PreviewSink
from streamer.publish.sink import EventsSink

if TYPE_CHECKING:
    from streamer.publish.mqtt import Role
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
    policy = network_policy(settings)
    return [open_source(uri, cid, settings.sources, settings.pipeline, live_file=live_files, policy=policy)
            for uri, cid in zip(uris, ids)]


def network_policy(settings: Settings, redis_url_in_use: str = "") -> NetworkPolicy:
    """The sources' network policy: ``sources.allowed_networks`` / ``denied_networks``, and the Redis DeepFER uses
    always refused (the one in use, ``redis.url`` and ``redis.default_url``). Resolves those names: blocking."""
    refused = [redis_url_in_use, settings.redis.url, settings.redis.default_url]
    return NetworkPolicy.from_settings(settings.sources, [u for u in dict.fromkeys(refused) if u])


def tracker_factory(settings: Settings) -> TrackerFactory:
    """One ``FaceTracker`` (with its emotion smoothing) per camera."""
    return lambda camera_id: FaceTracker(settings.tracker, settings.smoothing, settings.confidence)


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
            log.info(
                "camera %s: %s, read %d, processed %d, dropped %d, faces %d, %.1f fps, latency p50 %s ms p95 %s ms",
                s.camera_id,
                s.status,
                s.frames_read,
                s.frames_processed,
                s.frames_dropped,
                s.faces,
                s.recent_fps,
                s.latency_p50_ms,
                s.latency_p95_ms,
            )


@dataclass(frozen=True)
class Models:
    detector: FaceDetector
    classifier: EmotionModel


def load_models(settings: Settings) -> Models:
    """The detector and classifier named by the settings (``WeightsError``/``ValueError`` on bad choices)."""
    return Models(build_detector(settings.detector), build_classifier(settings.classifier))


def build_pipeline(
    settings: Settings, models: Models, sinks: Sequence[ResultSink] = (), track: bool = True
) -> Pipeline:
    """A pipeline over the shared models; ``track`` gives each camera a tracker (ids, smoothing)."""
    return Pipeline(settings, models.detector, models.classifier, tracker_factory(settings) if track else None, sinks)


def preview_sink(settings: Settings) -> PreviewSink:
    """The in-memory live preview (and face snapshots) of a process's cameras."""
    return PreviewSink(settings.dashboard.preview_jpeg_quality, settings.dashboard.snapshot_max_people)


@dataclass
class StoredPipeline:
    pipeline: Pipeline
    redis_sink: RedisSink | None
    preview: PreviewSink | None
    events: EventsSink | None = None

    async def start(self) -> None:
        """Start the pipeline and the events' once-a-second tick (a camera that never delivers a frame can still
        be reported down)."""
        await self.pipeline.start()
        if self.events is not None:
            self.events.start()


def check_events_out(settings: Settings, redis_url: str | None) -> None:
    """The broker's and every webhook's address checked now (``EventsConfigError``, one line), so that a server
    refuses to start rather than failing in its start-up."""
    from streamer.publish.base import checked_address
    from streamer.publish.webhooks import parse_hook_url

    if not (settings.mqtt.enabled or settings.webhooks.hooks):
        return
    policy = network_policy(settings, redis_url_in_use=redis_url or "")
    m = settings.mqtt
    if m.enabled:
        checked_address(policy, m.host, m.port, f"mqtt broker {m.host}")
    for i, hook in enumerate(settings.webhooks.hooks):
        url = parse_hook_url(hook.url, f"webhooks.hooks[{i}]")
        checked_address(policy, url.host, url.port, f"webhooks.hooks[{i}] ({url.display})")


def build_events_sink(settings: Settings, redis_url: str | None, mqtt_role: Role = "service",
                      worker: str = "") -> EventsSink | None:
    """MQTT, webhooks and alert rules (``[mqtt]``, ``[webhooks]``, ``[alerts]``); None when none is configured.

    ``mqtt_role`` and ``worker``: who owns the one ``{prefix}/available`` topic (``streamer.publish.mqtt``):
    ``service`` (a single process), ``head`` (the cluster's dashboard) or ``worker`` (a Ray worker, named ``worker``).

    Broker and hook addresses are checked with the cameras' network policy here, at start-up (``EventsConfigError``:
    one line). With Redis, alerts are kept there (``aggregator.alert_log``) and the rules added through the API are
    read from it (``alerts.api_rules``): then every stored pipeline has the sink.
    """
    from streamer.publish.base import Publisher
    from streamer.publish.mqtt import MqttPublisher
    from streamer.publish.webhooks import WebhookPublisher

    api_rules = redis_url is not None and settings.alerts.api_rules
    if not (settings.mqtt.enabled or settings.webhooks.hooks or settings.alerts.rules or api_rules):
        return None
    publishers: list[Publisher] = []
    if settings.mqtt.enabled or settings.webhooks.hooks:
        policy = network_policy(settings, redis_url_in_use=redis_url or "")
        if settings.mqtt.enabled:
            publishers.append(MqttPublisher(settings.mqtt, policy, role=mqtt_role, worker=worker,
                                            events=settings.events))
        if settings.webhooks.hooks:
            publishers.append(WebhookPublisher(settings.webhooks, policy))
    if redis_url is None:
        return EventsSink(settings, publishers)
    from aggregator.alert_log import AlertLog

    log_ = AlertLog.from_url(redis_url, settings.redis, settings.alerts.keep)
    return EventsSink(settings, publishers, alert_log=log_.add, rules_from=log_.rules if api_rules else None)


def build_stored_pipeline(
    settings: Settings,
    models: Models,
    redis_url: str | None,
    preview: PreviewSink | None = None,
    track: bool = True,
    mqtt_role: Role = "service",
    worker: str = "",
) -> StoredPipeline:
    """A pipeline whose results are kept: the one composition point for a new sink.

    ``redis_url``: tracked people go to Redis (``RedisSink``, its outage journal under ``paths.data_dir``); None:
    nothing stored. ``preview``: the live preview gets every result. Events out (MQTT, webhooks, alert rules) get
    every tracked result when configured (``build_events_sink``; ``mqtt_role``, ``worker``: its availability topic).
    ``deepfer run``, ``deepfer serve``, each Ray
    worker and the cluster benchmark build their pipeline here; sinks of one use (video file, summary, WebRTC) are
    added to the pipeline afterwards.
    """
    redis_sink = RedisSink(settings.redis, redis_url, settings.paths.data_dir) if redis_url is not None else None
    events = build_events_sink(settings, redis_url, mqtt_role, worker) if track else None
    sinks: list[ResultSink] = [s for s in (redis_sink, preview, events) if s is not None]
    pipeline = build_pipeline(settings, models, sinks=sinks, track=track)
    if events is not None:
        events.stats_of = pipeline.stats
        events.known = lambda: pipeline.stats().keys()
        events.control = lambda camera, paused: (pipeline.pause if paused else pipeline.resume)(camera)
    return StoredPipeline(pipeline, redis_sink, preview, events)


def build_explainer(settings: Settings, models: Models) -> GradCam:
    """Grad-CAM over the loaded classifier (``ExplainError`` for ONNX weights: no gradients)."""
    return GradCam(models.classifier, settings.explain.min_map_size)


@dataclass
class RunOutcome:
    """What ``run_sources`` ended with: final per-camera stats, and points Redis did not take (left in the journal)."""

    stats: dict[str, CameraStats]
    interrupted: bool
    unsaved_points: int = 0
    journal_dir: Path | None = None

    @property
    def failed(self) -> list[CameraStats]:
        return [s for s in self.stats.values() if s.status == "failed"]


def run_sources(
    settings: Settings,
    uris: Sequence[str],
    camera_ids: Sequence[str],
    output: Path | None = None,
    summary_json: Path | None = None,
    track: bool = True,
    store: bool = False,
    say: Callable[[str], None] = log.info,
    progress: Callable[[Sequence[VideoSource]], ResultSink | None] | None = None,
) -> RunOutcome:
    """``deepfer run``: analyse the sources until files end or Ctrl-C, writing the outputs asked for.

    ``store``: tracked people also go to Redis (an embedded server when none answers). ``say`` gets the few lines
    a user should see while it starts. ``progress``: called with the sources once the models are loaded; the sink
    it returns sees every result (the CLI's progress bar).
    """
    from aggregator.embedded_redis import connect_or_start
    from streamer.outputs import AnnotatedVideoSink, SummarySink

    sources = build_sources(uris, camera_ids, settings)  # bad paths fail here, before models load
    models = load_models(settings)
    redis_url = embedded = None
    if store and track:
        redis_url, embedded = connect_or_start(settings)
    stored = build_stored_pipeline(settings, models, redis_url, track=track)
    pipeline, redis_sink = stored.pipeline, stored.redis_sink
    for source in sources:
        pipeline.add_source(source)
    if output is not None:
        pipeline.add_sink(AnnotatedVideoSink(video_outputs(output, [s.camera_id for s in sources]), settings.pipeline))
    if summary_json is not None:

        def extra() -> dict:
            return {
                "timing": pipeline.timing(),
                "detector": settings.detector.kind,
                "detect_every": settings.detector.detect_every,
                "classifier": models.classifier.name,
            }

        pipeline.add_sink(SummarySink(summary_json, pipeline.stats, extra, settings.pipeline.summary_max_frames))
    if redis_sink is not None:
        say(f"storing people in Redis at {redis_sink.display} (keys {settings.redis.key_prefix}:*)")
    live = any(s.live for s in sources)
    say(
        f"analysing {len(sources)} source(s) with {models.detector.name} + {models.classifier.name} on "
        f"{models.classifier.device}" + ("; Ctrl-C stops" if live else "")
    )
    bar = progress(sources) if progress is not None else None
    if bar is not None:
        pipeline.add_sink(bar)
    async def run() -> bool:
        await stored.start()
        return await run_until_done(pipeline, until_idle=not live, log_every_s=settings.pipeline.log_every_s)

    try:
        interrupted = asyncio.run(run())
    finally:
        if embedded is not None:
            embedded.stop()
    unsaved = redis_sink.buffer_depth if redis_sink is not None else 0
    journal = redis_sink.journal.dir if redis_sink is not None and unsaved else None
    return RunOutcome(pipeline.stats(), interrupted, unsaved, journal)
