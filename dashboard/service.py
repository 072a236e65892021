"""Everything the running dashboard holds: Redis, the models, the pipeline and its sinks, the saved cameras."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError

from aggregator.redis_sink import RedisSink
from aggregator.timeseries import EmotionTimeSeries
from dashboard.cameras import checked_source
from dashboard.schemas import Camera
from deepfer_core.redact import redact
from deepfer_core.settings import Settings, max_cameras
from streamer.assembly import Models, build_stored_pipeline, load_models, network_policy, preview_sink
from streamer.netpolicy import NetworkPolicy
from streamer.pipeline import Pipeline
from streamer.publish.sink import EventsSink
from streamer.runtime.camera_store import CameraConfig, CameraOptions, CameraStore, StoredCamera
from streamer.runtime.local import LocalRunner
from streamer.runtime.runner import CameraRunner
from streamer.source_url import source_kind
from streamer.sources import SourceError
from streamer.webrtc.gateway import WebRtcSessions

if TYPE_CHECKING:
    from aggregator.embedded_redis import EmbeddedRedis

log = logging.getLogger(__name__)


def _kind(url: str) -> str:
    try:
        return source_kind(url)
    except SourceError:
        return "unknown"


class CameraConflict(ValueError):
    """A camera that cannot be added as asked (HTTP 409); the message says why."""


class CameraExists(CameraConflict):
    pass


class ReservedCameraId(CameraConflict):
    pass


class TooManyCameras(CameraConflict):
    pass


class SnapshotsOff(ValueError):
    pass


class UnknownCamera(KeyError):
    pass


T = TypeVar("T")


def _started(part: T | None) -> T:
    if part is None:
        raise RuntimeError("the dashboard service is not started")
    return part


class Service:
    """``models`` and ``redis_url``: already loaded and found by ``deepfer serve`` (else ``start`` does both).

    What ``start`` builds is read through properties (``ts``, ``store``, ``models``, ``pipeline``, ``webrtc``,
    ``runner``), which are never None once it has run; ``stop`` copes with a start that failed half-way.
    """

    def __init__(self, settings: Settings, models: Models | None = None, redis_url: str | None = None):
        self.settings = settings
        self.redis_url = redis_url or ""
        self.embedded: EmbeddedRedis | None = None
        self._ts: EmotionTimeSeries | None = None
        self._store: CameraStore | None = None
        self._models: Models | None = models
        self._pipeline: Pipeline | None = None
        self.redis_sink: RedisSink | None = None
        self.events: EventsSink | None = None
        self._webrtc: WebRtcSessions | None = None
        self._runner: CameraRunner | None = None  # where configured cameras run: this process, or a Ray cluster
        self.prometheus: Any = None  # the /metrics registry, made on first use
        self.preview = preview_sink(settings)
        self.cameras: dict[str, StoredCamera] = {}
        self.errors: dict[str, str] = {}  # camera id -> why its source could not be opened
        self.policy: NetworkPolicy | None = None  # built by start(), with the Redis in use
        self.started_at = time.time()
        self._lock = asyncio.Lock()
        self._restore_task: asyncio.Task | None = None  # while Redis was down at start

    @property
    def ts(self) -> EmotionTimeSeries:
        return _started(self._ts)

    @property
    def store(self) -> CameraStore:
        return _started(self._store)

    @property
    def models(self) -> Models:
        return _started(self._models)

    @property
    def pipeline(self) -> Pipeline:
        return _started(self._pipeline)

    @property
    def webrtc(self) -> WebRtcSessions:
        return _started(self._webrtc)

    @property
    def runner(self) -> CameraRunner:
        return _started(self._runner)

    @property
    def mode(self) -> str:
        """Where configured cameras run: ``local`` or ``cluster``."""
        return self._runner.mode if self._runner else "local"

    def workers(self) -> list[dict]:
        """The cluster's workers (none in local mode, or before the start)."""
        return self._runner.workers() if self._runner else []

    # ----- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        from aggregator.embedded_redis import connect_or_start

        s = self.settings
        if not self.redis_url:
            self.redis_url, self.embedded = await asyncio.to_thread(connect_or_start, s)
        self.policy = await asyncio.to_thread(network_policy, s, redis_url_in_use=self.redis_url)
        self._ts = ts = EmotionTimeSeries.from_url(self.redis_url, s.redis)
        self._store = CameraStore(ts.r, s.redis.key_prefix)
        if self._models is None:
            self._models = await asyncio.to_thread(load_models, s)
        # with a cluster this process is its head: it owns MQTT's p/available (online while any worker is)
        stored = build_stored_pipeline(s, self._models, self.redis_url, preview=self.preview,
                                       mqtt_role="head" if s.cluster.address else "service")
        self._pipeline = pipeline = stored.pipeline
        self.redis_sink = stored.redis_sink
        self.events = stored.events  # MQTT, webhooks, alert rules (None when not configured)
        if self.events is not None:  # MQTT commands pause cameras the way the API does (saved, on their worker)
            self.events.known, self.events.control = (lambda: list(self.cameras)), self.set_paused
        self._webrtc = WebRtcSessions(s, pipeline, on_end=self.preview.forget)
        pipeline.add_sink(self._webrtc)
        await stored.start()
        runner: CameraRunner
        if s.cluster.address:
            from streamer.runtime.ray_runner import ClusterRunner

            runner = ClusterRunner(s, self.redis_url, self.preview)
        else:
            runner = LocalRunner(s, pipeline, self.preview, self.policy)
        self._runner = runner
        await runner.start()
        try:
            await self._restore(await self.store.all())
        except (RedisError, OSError) as exc:  # Redis down at start: serve now, bring the cameras back when it answers
            log.warning("cannot read the saved cameras from Redis at %s (%s): they start as soon as it answers",
                        redact(self.redis_url), exc.__class__.__name__)
            self._restore_task = asyncio.create_task(self._restore_when_redis_answers(), name="restore-cameras")
        log.info("dashboard ready: Redis %s, %d camera(s), %s + %s", redact(self.redis_url), len(self.cameras),
                 self.models.detector.name, self.models.classifier.name)

    async def _restore(self, saved: dict[str, StoredCamera]) -> None:
        """Start the cameras saved in Redis (one added meanwhile under the same id keeps its new settings)."""
        async with self._lock:
            for cam in saved.values():
                if cam.id in self.cameras:
                    continue
                self.cameras[cam.id] = cam
                try:
                    # saved by an earlier version, or written into Redis by someone else: checked like a new camera
                    # (its address is checked by the source before each connect: a DNS hiccup at start is no failure)
                    url = await asyncio.to_thread(checked_source, cam.url, self.settings.sources)
                    self.cameras[cam.id] = cam = cam.model_copy(update={"url": url})
                    await self._start_source(cam)
                except SourceError as exc:
                    self.errors[cam.id] = str(exc)
                    log.warning("camera %s (%s) not started: %s", cam.id, redact(cam.url), exc)

    async def _restore_when_redis_answers(self) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                saved = await self.store.all()
            except (RedisError, OSError):
                delay = min(self.settings.redis.retry_max_s, delay * 2)
                continue
            await self._restore(saved)
            log.info("Redis answers: %d saved camera(s) restored", len(saved))
            return

    async def stop(self) -> None:
        if self._restore_task is not None:
            self._restore_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restore_task
        if self._webrtc is not None:
            await self._webrtc.close()  # visitors first: their cameras leave the pipeline before it stops
        if self._runner is not None:
            await self._runner.stop()
        if self._pipeline is not None:
            await self._pipeline.stop()  # closes the Redis and preview sinks
        if self._ts is not None:
            await self._ts.aclose()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)

    # ----- cameras -------------------------------------------------------------------------------------------------

    async def _start_source(self, cam: StoredCamera) -> None:
        await self.runner.add(cam)
        self.errors.pop(cam.id, None)

    async def add_camera(self, config: CameraConfig) -> StoredCamera:
        s = self.settings
        async with self._lock:
            if config.id in self.cameras or self.is_webrtc(config.id):
                raise CameraExists(f"camera id {config.id!r} is already in use")
            prefix = f"{s.webrtc.camera_prefix}-"
            if config.id.startswith(prefix):
                raise ReservedCameraId(f"camera ids starting with {prefix!r} are reserved for live-demo visitors")
            limit = max_cameras(s.dashboard)
            if len(self.cameras) >= limit:
                raise TooManyCameras(f"{len(self.cameras)} cameras configured: dashboard.max_cameras ({limit}) reached "
                                     "(each camera is a decode thread); remove one first")
            if config.options.snapshots and not s.dashboard.snapshots:
                raise SnapshotsOff("face snapshots are turned off on this server (dashboard.snapshots = false)")
            url = await asyncio.to_thread(checked_source, config.url, s.sources, self.policy)  # SourceError: 400
            cam = StoredCamera(**(config.model_dump() | {"url": url}))
            await self._start_source(cam)  # SourceError (bad path, unknown URI) before anything is saved
            try:
                await self.store.save(cam)
            except Exception:
                await self.runner.remove(cam.id)
                raise
            self.cameras[cam.id] = cam
            log.info("camera %s added: %s", cam.id, redact(cam.url))
            return cam

    def camera(self, camera_id: str) -> StoredCamera:
        cam = self.cameras.get(camera_id)
        if cam is None:
            raise UnknownCamera(camera_id)
        return cam

    async def remove_camera(self, camera_id: str) -> None:
        async with self._lock:
            self.camera(camera_id)
            await self.store.delete(camera_id)
            del self.cameras[camera_id]
            self.errors.pop(camera_id, None)
            await self.runner.remove(camera_id)
            log.info("camera %s removed", camera_id)

    async def set_paused(self, camera_id: str, paused: bool) -> StoredCamera:
        async with self._lock:
            cam = self.camera(camera_id).model_copy(update={"paused": paused})
            await self.store.save(cam)
            self.cameras[camera_id] = cam
            await self.runner.set_paused(camera_id, paused)
            return cam

    def camera_ids(self) -> list[str]:
        """Configured cameras, then the WebRTC visitors connected now."""
        return list(self.cameras) + sorted(self._webrtc.camera_ids() if self._webrtc else ())

    def is_webrtc(self, camera_id: str) -> bool:
        return self._webrtc is not None and self._webrtc.session_for_camera(camera_id) is not None

    def camera_view(self, camera_id: str) -> Camera:
        """A camera as the API shows it: URL redacted, options, status and pipeline counters."""
        session = self._webrtc.session_for_camera(camera_id) if self._webrtc is not None else None
        if session is not None:
            stats = self.pipeline.camera_stats(camera_id)
            return Camera(id=camera_id, kind="webrtc", url=f"webrtc://{session.peer}", options=CameraOptions(),
                          paused=False, status=stats.status if stats else session.pc.connectionState,
                          error=stats.last_error if stats else None, stats=stats, webrtc_session=session.id)
        cam = self.camera(camera_id)
        run = self._runner.state(camera_id) if self._runner else None
        stats = run.stats if run else None
        fallback = (run and run.status) or "stopped"
        status = "failed" if camera_id in self.errors else (stats.status if stats else fallback)
        return Camera(
            id=cam.id,
            kind=_kind(cam.url),
            url=redact(cam.url),
            options=cam.options,
            paused=cam.paused,
            status=status,
            error=self.errors.get(camera_id) or (stats.last_error if stats else run and run.error),
            stats=stats,
            worker=run and run.worker,
            node=run and run.node,
        )

    async def known_camera(self, camera_id: str) -> bool:
        """Configured now, or with data in Redis (a removed camera's history stays readable)."""
        if camera_id in self.cameras or self.is_webrtc(camera_id):
            return True
        return await self.ts.has_camera(camera_id)
