"""The streaming pipeline: sources -> batched detection -> batched classification -> tracker -> sinks.

Each camera has a feeder (takes decoded frames, starts their analysis) and an
emitter (awaits them in frame order, runs the camera's tracker, hands the
``FrameResult`` to every sink). Up to ``pipeline.max_in_flight`` frames of a
camera are analysed at once, so even one camera fills detector batches.
Detection and classification are shared ``Batcher``s across all cameras and
run in worker threads; the event loop only schedules.

With ``detector.detect_every = k`` the detector sees every k-th frame; the
frames between reuse ("carry") its boxes, marked ``FaceResult.detected=False``.

With ``gating.enabled`` each camera's ``DetectionScheduler`` chooses what the
detector does on those frames: nothing where nothing moved (boxes and emotions
carried), R-Net/O-Net refinement of the faces the previous detection found,
MTCNN on the regions that moved away from them, or a full detection (see
``detectors/schedule.py``); on live cameras a full detection runs beside the
stream instead of holding up its frame.

Frames reach the pipeline as ``Pixels``: they are converted to RGB only where
colour is needed (detector and classifier batches, in the workers).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from core.protocols import (
    EmotionModel,
    FaceDetector,
    FrameSource,
    ResultSink,
    Tracker,
    TrackerFactory,
)
from core.settings import Settings
from core.stats import percentile_ms
from core.types import FaceBox, FaceResult, FrameResult, Pixels, TimedFrame
from detectors.motion import in_frame
from detectors.schedule import DetectionScheduler, DetectJob, ScheduleCounts, run_jobs
from streamer.analysis import NO_PROBS, classify_faces
from streamer.batching import Batcher, BatchStats

log = logging.getLogger(__name__)


@dataclass
class CameraStats:
    """One camera's counters, as the dashboard and ``--summary-json`` show them."""

    camera_id: str
    source: str  # redacted URI
    kind: str
    live: bool
    status: str
    last_error: str | None
    frames_read: int
    frames_processed: int
    frames_dropped: int  # live: stale frames replaced by newer ones while the pipeline was behind
    frames_skipped: int  # live frames discarded while paused
    frames_failed: int  # frames whose analysis raised (logged)
    frames_detected: int  # frames the detector ran on (the rest carried boxes)
    frames_full: int  # frames detected whole
    frames_full_beside: int  # of those, detected beside the stream (live: the frame itself had its faces refined)
    frames_regions: int  # frames detected only in the regions that moved (known faces refined too)
    frames_refined: int  # frames where only the known faces were refined (R-Net + O-Net)
    frames_still: int  # frames the detector would have seen, skipped because nothing moved (boxes carried)
    faces: int  # face results over all processed frames
    frames_with_faces: int
    reconnects: int
    fps: float  # processed frames per second since the first frame
    recent_fps: float  # over the last pipeline.stats_window_s
    latency_p50_ms: float | None  # decode -> classified result (before sinks)
    latency_p95_ms: float | None
    decode_ms: float | None  # decode-thread CPU per frame read
    source_fps: float | None
    width: int | None
    height: int | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Camera:
    source: FrameSource
    tracker: Tracker | None
    inflight: asyncio.Queue
    latencies: deque
    emitted: deque  # monotonic times of recent results, for recent fps
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    paused: bool = False
    feed_task: asyncio.Task | None = None
    emit_task: asyncio.Task | None = None
    anchor_boxes: asyncio.Future | None = None
    anchor_result: asyncio.Task | None = None
    scheduler: DetectionScheduler | None = None
    search: asyncio.Future | None = None  # the full detection running beside the stream (live cameras)
    still_now: bool = False  # nothing moved on the latest frame the detector would have seen
    since_detect: int = 0
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    detected: int = 0
    faces: int = 0
    with_faces: int = 0
    first_at: float | None = None
    last_at: float | None = None
    last_error: str | None = None
    done: bool = False


class Pipeline:
    """Runs any number of cameras through one detector and one classifier; sources and sinks can change at runtime."""

    def __init__(self, settings: Settings, detector: FaceDetector, classifier: EmotionModel,
                 tracker_factory: TrackerFactory | None = None, sinks: Sequence[ResultSink] = ()):
        self.settings = settings
        self.detector = detector
        self.classifier = classifier
        self.tracker_factory = tracker_factory
        self.sinks: list[ResultSink] = list(sinks)
        self._cameras: dict[str, _Camera] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._detect: Batcher[DetectJob, list[FaceBox]] | None = None
        self._parts: Batcher[DetectJob, list[FaceBox]] | None = None  # regions and refinements: a fast lane
        self._classify: Batcher[tuple[Pixels, list[FaceBox]], np.ndarray] | None = None
        self._changed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._running = False
        self._sink_errors = 0

    # --- lifecycle ---

    async def start(self) -> None:
        if self._running:
            return
        ps, cs, ds = self.settings.pipeline, self.settings.classifier, self.settings.detector
        self._executor = ThreadPoolExecutor(max_workers=3, thread_name_prefix="deepfer-infer")
        self._detect = Batcher("detect_full", self._detect_batch, ds.batch_size, ps.detect_max_wait_ms / 1000,
                               self._executor)
        # Refinements and regions cost milliseconds: they get their own batches so they never wait behind a full
        # detection of another camera (tens of milliseconds).
        self._parts = Batcher("detect_parts", self._detect_batch, ds.batch_size, ps.detect_max_wait_ms / 1000,
                              self._executor)
        self._classify = Batcher(
            "classify",
            self._classify_batch,
            cs.batch_size,
            cs.max_wait_ms / 1000,
            self._executor,
            size_of=lambda item: len(item[1]),
        )
        self._detect.start()
        self._parts.start()
        self._classify.start()
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running = True
        for cam in self._cameras.values():
            self._start_camera(cam)

    async def run(self, until_idle: bool = False) -> None:
        """Start, then wait for ``stop()`` (or, with ``until_idle``, for every source to end), then stop cleanly."""
        await self.start()
        assert self._stopping is not None and self._changed is not None
        try:
            while not self._stopping.is_set():
                if until_idle and all(c.done for c in self._cameras.values()):
                    break
                self._changed.clear()
                stop_wait = asyncio.ensure_future(self._stopping.wait())
                change_wait = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait({stop_wait, change_wait}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop_wait.cancel()
                    change_wait.cancel()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        """Ask ``run()`` to finish (safe from a signal handler on the loop)."""
        if self._stopping is not None:
            self._stopping.set()

    async def stop(self) -> None:
        """Stop sources, finish the frames in flight, close sinks. Idempotent."""
        if not self._running:
            return
        self._running = False
        if self._stopping is not None:
            self._stopping.set()
        for cam in self._cameras.values():
            cam.source.stop()
            cam.resumed.set()
        await self._drain(list(self._cameras.values()))
        assert self._detect is not None and self._parts is not None and self._classify is not None
        await self._detect.stop()
        await self._parts.stop()
        await self._classify.stop()
        for sink in list(self.sinks):
            try:
                await sink.close()
            except Exception:
                log.exception("closing output %s failed", type(sink).__name__)
        await asyncio.gather(*(c.source.aclose() for c in self._cameras.values()))
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True)

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # --- sources and sinks at runtime ---

    def add_source(self, source: FrameSource) -> None:
        if source.camera_id in self._cameras:
            raise ValueError(f"camera id {source.camera_id!r} is already in use")
        ps = self.settings.pipeline
        tracker = self.tracker_factory(source.camera_id) if self.tracker_factory else None
        in_flight = source.max_in_flight or ps.max_in_flight
        cam = _Camera(source, tracker, asyncio.Queue(in_flight), deque(maxlen=ps.latency_samples), deque())
        gating = self.settings.gating
        cam.scheduler = DetectionScheduler(gating, self.settings.detector, self.detector, phase_seed=source.camera_id,
                                           beside=source.live and gating.full_beside_live,
                                           confirm=self.settings.tracker.min_hits - 1)
        cam.resumed.set()
        self._cameras[source.camera_id] = cam
        if self._running:
            self._start_camera(cam)
        self._notify()

    async def remove_source(self, camera_id: str) -> CameraStats:
        """Stop a camera, let its frames in flight reach the sinks, forget it; returns its final stats."""
        cam = self._camera(camera_id)
        cam.source.stop()
        cam.resumed.set()
        await self._drain([cam])
        await cam.source.aclose()
        final = self._stats(cam)
        del self._cameras[camera_id]
        self._notify()
        return final

    def pause(self, camera_id: str) -> None:
        """Live cameras stay connected but their frames are discarded; files wait where they are."""
        cam = self._camera(camera_id)
        cam.paused = True
        cam.resumed.clear()

    def resume(self, camera_id: str) -> None:
        cam = self._camera(camera_id)
        cam.paused = False
        cam.resumed.set()

    def add_sink(self, sink: ResultSink) -> None:
        self.sinks.append(sink)

    @property
    def camera_ids(self) -> list[str]:
        return list(self._cameras)

    def source(self, camera_id: str) -> FrameSource:
        return self._camera(camera_id).source

    def stats(self) -> dict[str, CameraStats]:
        return {cid: self._stats(cam) for cid, cam in self._cameras.items()}

    def camera_stats(self, camera_id: str) -> CameraStats | None:
        """One camera's stats (None when it is not in the pipeline), without computing every camera's."""
        cam = self._cameras.get(camera_id)
        return self._stats(cam) if cam is not None else None

    def timing(self) -> dict[str, dict]:
        """Busy time and batch sizes of detection and classification (worker-thread seconds); ``detect`` is the
        detector's whole work, ``detect_full`` and ``detect_parts`` (regions, refinements) its two kinds of batch."""
        out = {b.name: b.stats.to_dict() for b in (self._detect, self._parts, self._classify) if b is not None}
        if self._detect is not None and self._parts is not None:
            a, b = self._detect.stats, self._parts.stats
            out["detect"] = BatchStats(a.calls + b.calls, a.items + b.items, a.busy_s + b.busy_s).to_dict()
        return out

    # --- internals ---

    def _camera(self, camera_id: str) -> _Camera:
        try:
            return self._cameras[camera_id]
        except KeyError:
            raise KeyError(f"no camera {camera_id!r}") from None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _start_camera(self, cam: _Camera) -> None:
        cam.source.start()
        cam.feed_task = asyncio.create_task(self._feed(cam), name=f"feed-{cam.source.camera_id}")
        cam.emit_task = asyncio.create_task(self._emit(cam), name=f"emit-{cam.source.camera_id}")

    async def _drain(self, cams: list[_Camera]) -> None:
        tasks = [t for c in cams for t in (c.feed_task, c.emit_task, c.search) if t is not None and not t.done()]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=self.settings.pipeline.stop_timeout_s)
        for t in pending:
            t.cancel()
        if pending:
            log.warning(
                "gave up waiting for %d camera task(s) after %.0f s",
                len(pending),
                self.settings.pipeline.stop_timeout_s,
            )
            await asyncio.gather(*pending, return_exceptions=True)

    async def _feed(self, cam: _Camera) -> None:
        """Take frames from the source in order and start each one's analysis."""
        every = self.settings.detector.detect_every
        try:
            while (item := await cam.source.get()) is not None:
                if cam.paused:
                    if cam.source.live:
                        cam.skipped += 1
                        continue
                    await cam.resumed.wait()
                if cam.first_at is None:
                    cam.first_at = item.read_at
                look = cam.anchor_boxes is None or cam.since_detect % every == 0
                job = None
                if look:
                    assert cam.scheduler is not None
                    frame = item.frame
                    known = await self._known(cam) if cam.scheduler.gate is not None else []
                    plan = cam.scheduler.plan(frame.pixels, frame.captured_at,
                                              functools.partial(in_frame, known, frame.shape))
                    if plan.beside is not None:
                        self._search(cam, plan.beside, cam.source.batch_wait_s)
                    job = plan.now
                detect = job is not None
                if look:
                    cam.still_now = not detect  # the frames up to the next look are as still as this one
                if job is not None:
                    cam.since_detect = 0
                    cam.anchor_boxes = self._detect_frame(job, cam.source.batch_wait_s)
                task = asyncio.ensure_future(
                    self._analyse(
                        item, cam.anchor_boxes, None if detect else cam.anchor_result, cam.source.batch_wait_s,
                        still=cam.still_now,
                    )
                )
                if detect:
                    cam.anchor_result = task
                cam.since_detect += 1
                await cam.inflight.put(task)
        finally:
            await cam.inflight.put(None)

    async def _known(self, cam: _Camera) -> list[FaceBox]:
        """The faces of the camera's previous detection: where refinement looks next. Waiting for it (it is usually
        done: it started ``detect_every`` frames ago) keeps a file's boxes the same at any speed and batching."""
        if cam.anchor_boxes is None:
            return []
        try:
            return await asyncio.shield(cam.anchor_boxes)
        except Exception:  # that frame's failure is reported by its own analysis
            return []

    def _detect_frame(self, job: DetectJob, wait_s: float | None) -> asyncio.Future:
        """The boxes of ``job``, from the full or the fast batcher (a job with nothing to run: no face, at once)."""
        if job.idle:
            done = asyncio.get_running_loop().create_future()
            done.set_result([])
            return done
        batcher = self._detect if job.full else self._parts
        assert batcher is not None
        return asyncio.ensure_future(batcher.submit(job, wait_s))

    def _search(self, cam: _Camera, job: DetectJob, wait_s: float | None) -> None:
        """A full detection beside the stream; its faces go to the camera's scheduler when it answers."""
        assert cam.scheduler is not None
        scheduler = cam.scheduler

        def answered(task: asyncio.Future) -> None:
            failed = task.cancelled() or task.exception() is not None
            if failed and not task.cancelled() and self._running:
                log.warning("camera %s: full detection failed: %s", cam.source.camera_id, task.exception())
            scheduler.found([] if failed else task.result())

        cam.search = self._detect_frame(job, wait_s)
        cam.search.add_done_callback(answered)

    def _detect_batch(self, jobs: list[DetectJob]) -> list[list[FaceBox]]:
        """Worker thread: full frames in one detector call, regions in another, refinements in a third."""
        return run_jobs(self.detector, jobs)

    async def _analyse(
        self, item: TimedFrame, boxes_task: asyncio.Future, anchor: asyncio.Future | None, wait_s: float | None,
        still: bool = False,
    ) -> tuple[FrameResult, float, bool]:
        """Boxes (fresh, or carried from the anchor frame) and their probabilities; returns (result, latency,
        detected). ``still``: nothing moved since the anchor frame, whose emotions are reused (unless
        ``gating.classify_still``)."""
        assert self._classify is not None
        frame = item.frame
        boxes = await boxes_task
        reuse = not self.settings.pipeline.classify_carried or (still and not self.settings.gating.classify_still)
        if not boxes:
            probs = NO_PROBS
        elif anchor is None or not reuse:
            probs = await self._classify.submit((frame.pixels, boxes), wait_s)
        else:
            result, _, _ = await anchor
            probs = np.stack([f.probabilities for f in result.faces])
        faces = [FaceResult(box, p, detected=anchor is None) for box, p in zip(boxes, probs)]
        return FrameResult(frame, faces, processed_at=time.time()), time.monotonic() - item.read_at, anchor is None

    def _classify_batch(self, items: list[tuple[Pixels, list[FaceBox]]]) -> list[np.ndarray]:
        """Worker thread: every face of every frame in the batch, in one model call."""
        cs = self.settings.classifier
        return classify_faces(
            [pixels.rgb() for pixels, _ in items], [boxes for _, boxes in items], self.classifier, cs.crop_margin,
            cs.batch_size,
        )

    async def _emit(self, cam: _Camera) -> None:
        """Results in frame order: tracker, counters, then every sink."""
        window = self.settings.pipeline.stats_window_s
        try:
            while (task := await cam.inflight.get()) is not None:
                try:
                    result, latency, detected = await task
                except Exception as exc:
                    cam.failed += 1
                    message = f"{exc.__class__.__name__}: {exc}"
                    if message != cam.last_error or cam.failed % 100 == 1:
                        log.warning(
                            "camera %s: frame analysis failed (%d so far): %s",
                            cam.source.camera_id,
                            cam.failed,
                            message,
                        )
                    cam.last_error = message
                    continue
                if cam.tracker is not None:
                    try:
                        result = cam.tracker.update(result)
                    except Exception:
                        log.exception("camera %s: tracker failed; result passed on untracked", cam.source.camera_id)
                now = time.monotonic()
                cam.processed += 1
                cam.detected += detected
                cam.faces += len(result.faces)
                cam.with_faces += bool(result.faces)
                cam.latencies.append(latency)
                cam.last_at = now
                cam.emitted.append(now)
                while cam.emitted and cam.emitted[0] < now - window:
                    cam.emitted.popleft()
                for sink in list(self.sinks):
                    try:
                        await sink.handle(result)
                    except Exception:
                        self._sink_errors += 1
                        if self._sink_errors % 100 == 1:
                            log.exception(
                                "output %s failed on a frame (%d so far)", type(sink).__name__, self._sink_errors
                            )
        finally:
            cam.done = True
            self._notify()

    def _stats(self, cam: _Camera) -> CameraStats:
        src = cam.source
        counts = cam.scheduler.counts if cam.scheduler is not None else ScheduleCounts()
        elapsed = (cam.last_at - cam.first_at) if cam.first_at is not None and cam.last_at is not None else 0.0
        window = self.settings.pipeline.stats_window_s
        now = time.monotonic()
        recent = sum(1 for t in cam.emitted if t >= now - window)
        span = min(window, now - cam.first_at) if cam.first_at is not None else 0.0
        if cam.paused:
            status = "paused"
        elif cam.done:
            status = src.status if src.status in ("ended", "failed") else "stopped"
        else:
            status = src.status
        return CameraStats(
            camera_id=src.camera_id,
            source=src.display,
            kind=src.kind,
            live=src.live,
            status=status,
            last_error=src.last_error or cam.last_error,
            frames_read=src.frames_read,
            frames_processed=cam.processed,
            frames_dropped=src.frames_dropped,
            frames_skipped=cam.skipped,
            frames_failed=cam.failed,
            frames_detected=cam.detected,
            frames_full=counts.full,
            frames_full_beside=counts.beside,
            frames_regions=counts.regions,
            frames_refined=counts.refined,
            frames_still=counts.still,
            faces=cam.faces,
            frames_with_faces=cam.with_faces,
            reconnects=src.reconnects,
            fps=round((cam.processed - 1) / elapsed, 2) if elapsed > 0 and cam.processed > 1 else 0.0,
            recent_fps=round(recent / span, 2) if span > 0 else 0.0,
            latency_p50_ms=percentile_ms(cam.latencies, 50),
            latency_p95_ms=percentile_ms(cam.latencies, 95),
            decode_ms=round(1000 * src.decode_cpu_s / src.frames_read, 2) if src.frames_read else None,
            source_fps=round(src.fps, 3) if src.fps else None,
            width=src.size[0] if src.size else None,
            height=src.size[1] if src.size else None,
        )
