"""The streaming pipeline: sources -> batched detection -> batched classification -> tracker -> sinks.

Each camera has a feeder (takes decoded frames, starts their analysis) and an emitter (awaits them in frame order,
runs the camera's tracker, hands the ``FrameResult`` to every sink). Up to ``pipeline.max_in_flight`` frames of a
camera are analysed at once, so even one camera fills detector batches. Detection and classification are batched
stages shared by all cameras (``streamer/stages.py``), run in worker threads; the event loop only schedules. What
the pipeline keeps per camera, by concern, is in ``streamer/camera_state.py``.

With ``detector.detect_every = k`` the detector sees every k-th frame; the frames between reuse ("carry") its
boxes, marked ``FaceResult.detected=False``.

With ``gating.enabled`` each camera's ``DetectionScheduler`` chooses what the detector does on those frames:
nothing where nothing moved (boxes and emotions carried), R-Net/O-Net refinement of the faces the previous
detection found, MTCNN on the regions that moved away from them, or a full detection (see
``detectors/schedule.py``); on live cameras a full detection runs beside the stream instead of holding up its frame.

Frames reach the pipeline as ``Pixels``: they are converted to RGB only where colour is needed (detector and
classifier batches, in the workers).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from deepfer_core.protocols import (
    EmotionModel,
    FaceDetector,
    FrameSource,
    ResultSink,
    TrackerFactory,
)
from deepfer_core.settings import Settings
from deepfer_core.types import FaceBox, FaceResult, FrameResult, TimedFrame
from detectors.motion import in_frame
from detectors.schedule import DetectionScheduler, DetectJob
from streamer.analysis import NO_PROBS
from streamer.camera_state import Analysis, Cadence, Camera, CameraStats, Counters, FpsCap
from streamer.stages import Stages

__all__ = ["CameraStats", "Pipeline"]

log = logging.getLogger(__name__)


class Pipeline:
    """Runs any number of cameras through one detector and one classifier; sources and sinks can change at runtime."""

    def __init__(self, settings: Settings, detector: FaceDetector, classifier: EmotionModel,
                 tracker_factory: TrackerFactory | None = None, sinks: Sequence[ResultSink] = ()):
        self.settings = settings
        self.detector = detector
        self.classifier = classifier
        self.tracker_factory = tracker_factory
        self.sinks: list[ResultSink] = list(sinks)
        self._cameras: dict[str, Camera] = {}
        self._stages: Stages | None = None
        self._changed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._running = False
        self._sink_errors = 0

    # --- lifecycle ---

    async def start(self) -> None:
        if self._running:
            return
        self._stages = Stages(self.settings, self.detector, self.classifier)
        self._stages.start()
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
            cam.pause.release()
        await self._drain(list(self._cameras.values()))
        assert self._stages is not None
        await self._stages.stop()
        for sink in list(self.sinks):
            try:
                await sink.close()
            except Exception:
                log.exception("closing output %s failed", type(sink).__name__)
        await asyncio.gather(*(c.source.aclose() for c in self._cameras.values()))
        await self._stages.shutdown()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # --- sources and sinks at runtime ---

    def add_source(self, source: FrameSource, max_analysed_fps: float | None = None) -> None:
        """A new camera; ``max_analysed_fps``: its own cap on analysed frames a second (None: the pipeline's
        ``pipeline.max_analysed_fps``; 0: no cap)."""
        if source.camera_id in self._cameras:
            raise ValueError(f"camera id {source.camera_id!r} is already in use")
        s = self.settings
        tracker = self.tracker_factory(source.camera_id) if self.tracker_factory else None
        scheduler = DetectionScheduler(s.gating, s.detector, self.detector, phase_seed=source.camera_id,
                                       beside=source.live and s.gating.full_beside_live, confirm=s.tracker.min_hits - 1)
        cam = Camera(source, tracker, asyncio.Queue(source.max_in_flight or s.pipeline.max_in_flight), scheduler,
                     Cadence(s.detector.detect_every),
                     Counters(deque(maxlen=s.pipeline.latency_samples), s.pipeline.stats_window_s),
                     cap=FpsCap(s.pipeline.max_analysed_fps if max_analysed_fps is None else max_analysed_fps))
        self._cameras[source.camera_id] = cam
        if self._running:
            self._start_camera(cam)
        self._notify()

    async def remove_source(self, camera_id: str) -> CameraStats:
        """Stop a camera, let its frames in flight reach the sinks, forget it; returns its final stats. Sinks with a
        ``camera_ended(camera_id)`` method are told (the Redis writer starts new person ids for the camera's next
        run: its tracker is gone)."""
        cam = self._camera(camera_id)
        cam.source.stop()
        cam.pause.release()
        await self._drain([cam])
        await cam.source.aclose()
        for sink in self.sinks:
            ended = getattr(sink, "camera_ended", None)
            if callable(ended):
                ended(camera_id)
        final = cam.stats()
        del self._cameras[camera_id]
        self._notify()
        return final

    def pause(self, camera_id: str) -> None:
        """Live cameras stay connected but their frames are discarded; files wait where they are."""
        self._camera(camera_id).pause.pause()

    def resume(self, camera_id: str) -> None:
        self._camera(camera_id).pause.resume()

    def set_max_analysed_fps(self, camera_id: str, max_fps: float) -> None:
        """Change a camera's cap on analysed frames a second (0: no cap), from its next frame on."""
        self._camera(camera_id).cap.max_fps = max(0.0, float(max_fps))

    def add_sink(self, sink: ResultSink) -> None:
        self.sinks.append(sink)

    @property
    def camera_ids(self) -> list[str]:
        return list(self._cameras)

    def source(self, camera_id: str) -> FrameSource:
        return self._camera(camera_id).source

    def stats(self) -> dict[str, CameraStats]:
        return {cid: cam.stats() for cid, cam in self._cameras.items()}

    def camera_stats(self, camera_id: str) -> CameraStats | None:
        """One camera's stats (None when it is not in the pipeline), without computing every camera's."""
        cam = self._cameras.get(camera_id)
        return cam.stats() if cam is not None else None

    def timing(self) -> dict[str, dict[str, Any]]:
        """Busy time and batch sizes of detection and classification (see ``Stages.timing``); empty before start."""
        return self._stages.timing() if self._stages is not None else {}

    # --- internals ---

    def _camera(self, camera_id: str) -> Camera:
        try:
            return self._cameras[camera_id]
        except KeyError:
            raise KeyError(f"no camera {camera_id!r}") from None

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _start_camera(self, cam: Camera) -> None:
        cam.source.start()
        cam.feed_task = asyncio.create_task(self._feed(cam), name=f"feed-{cam.source.camera_id}")
        cam.emit_task = asyncio.create_task(self._emit(cam), name=f"emit-{cam.source.camera_id}")

    async def _drain(self, cams: list[Camera]) -> None:
        tasks = [t for c in cams for t in (c.feed_task, c.emit_task, c.search) if t is not None and not t.done()]
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=self.settings.pipeline.stop_timeout_s)
        for t in pending:
            t.cancel()
        if pending:
            log.warning("gave up waiting for %d camera task(s) after %.0f s", len(pending),
                        self.settings.pipeline.stop_timeout_s)
            await asyncio.gather(*pending, return_exceptions=True)

    async def _feed(self, cam: Camera) -> None:
        """Take frames from the source in order and start each one's analysis."""
        try:
            while (item := await cam.source.get()) is not None:
                if not await cam.pause.admit(cam.source.live):
                    cam.counters.skipped += 1
                    continue
                if not cam.cap.admit(item.frame.captured_at):
                    continue
                if cam.counters.first_at is None:
                    d = self.settings.detector
                    cam.cadence.sized(item.frame.pixels.width, item.frame.pixels.height, d.max_side,
                                      d.detect_every_large, d.refine_between and cam.scheduler.can_refine)
                cam.counters.first_frame(item.read_at)
                job = None
                looked = cam.cadence.due(cam.anchor.boxes is not None)
                if looked:
                    job = await self._plan(cam, item)
                    cam.cadence.looked(job is not None)
                elif cam.cadence.refine_between and not cam.cadence.still:  # the last look saw motion
                    job = await self._refine_between(cam, item)
                await cam.inflight.put(self._start_analysis(cam, item, job, looked))
        finally:
            await cam.inflight.put(None)

    async def _plan(self, cam: Camera, item: TimedFrame) -> DetectJob | None:
        """What the detector does on this frame (None: nothing, carry the anchor's boxes); starts the full detection
        beside the stream when the scheduler plans one."""
        frame = item.frame
        known = await cam.anchor.known() if cam.scheduler.gate is not None else []
        plan = cam.scheduler.plan(frame.pixels, frame.captured_at, functools.partial(in_frame, known, frame.shape),
                                  known_at=cam.anchor.at)
        if plan.beside is not None:
            self._search(cam, plan.beside, cam.source.batch_wait_s)
        return plan.now

    @staticmethod
    async def _refine_between(cam: Camera, item: TimedFrame) -> DetectJob | None:
        """``detector.refine_between``: R-Net + O-Net on the anchor's faces for a frame between two looks (None:
        no face known, carry)."""
        frame = item.frame
        known = in_frame(await cam.anchor.known(), frame.shape)
        if not known:
            return None
        cam.scheduler.counts.refined += 1
        return DetectJob(frame.pixels, full=False, known=known,
                         lost_min_face=cam.scheduler.settings.lost_min_face)

    def _start_analysis(self, cam: Camera, item: TimedFrame, job: DetectJob | None,
                        looked: bool = True) -> asyncio.Future[Analysis]:
        """The frame's analysis: on its own detection (it becomes the anchor), or on the anchor's carried boxes.
        ``looked``: the scheduler planned the job (a refinement between looks does not restart the cadence)."""
        wait_s = cam.source.batch_wait_s
        anchor = cam.anchor
        if job is not None:
            anchor.boxes = self._detect_frame(job, wait_s)
            anchor.at = item.frame.captured_at
        task = asyncio.ensure_future(self._analyse(item, anchor.carried_boxes(),
                                                   None if job is not None else anchor.result, wait_s,
                                                   still=cam.cadence.still))
        if job is not None:
            anchor.result = task
        cam.cadence.advance(job is not None and looked)
        return task

    def _detect_frame(self, job: DetectJob, wait_s: float | None) -> asyncio.Future[list[FaceBox]]:
        assert self._stages is not None
        return self._stages.detect(job, wait_s)

    def _search(self, cam: Camera, job: DetectJob, wait_s: float | None) -> None:
        """A full detection beside the stream; its faces go to the camera's scheduler when it answers."""
        scheduler = cam.scheduler

        def answered(task: asyncio.Future[list[FaceBox]]) -> None:
            failed = task.cancelled() or task.exception() is not None
            if failed and not task.cancelled() and self._running:
                log.warning("camera %s: full detection failed: %s", cam.source.camera_id, task.exception())
            scheduler.found([] if failed else task.result())

        cam.search = self._detect_frame(job, wait_s)
        cam.search.add_done_callback(answered)

    async def _analyse(
        self, item: TimedFrame, boxes_task: asyncio.Future[list[FaceBox]], anchor: asyncio.Future[Analysis] | None,
        wait_s: float | None, still: bool = False,
    ) -> Analysis:
        """Boxes (fresh, or carried from the anchor frame) and their probabilities; returns (result, latency,
        detected). ``still``: nothing moved since the anchor frame, whose emotions are reused (unless
        ``gating.classify_still``)."""
        assert self._stages is not None
        frame = item.frame
        boxes = await boxes_task
        reuse = not self.settings.pipeline.classify_carried or (still and not self.settings.gating.classify_still)
        if not boxes:
            probs = NO_PROBS
        elif anchor is None or not reuse:
            probs = await self._stages.classify(frame.pixels, boxes, wait_s)
        else:
            result, _, _ = await anchor
            probs = np.stack([f.probabilities for f in result.faces])
        faces = [FaceResult(box, p, detected=anchor is None) for box, p in zip(boxes, probs)]
        return FrameResult(frame, faces, processed_at=time.time()), time.monotonic() - item.read_at, anchor is None

    async def _emit(self, cam: Camera) -> None:
        """Results in frame order: tracker, counters, then every sink."""
        try:
            while (task := await cam.inflight.get()) is not None:
                try:
                    result, latency, detected = await task
                except Exception as exc:
                    if cam.counters.failure(exc):
                        log.warning("camera %s: frame analysis failed (%d so far): %s", cam.camera_id,
                                    cam.counters.failed, cam.counters.last_error)
                    continue
                result = self._track(cam, result)
                cam.counters.result(result, latency, detected)
                await self._hand_on(result)
        finally:
            cam.done = True
            for sink in list(self.sinks):  # sinks that keep a camera's last frame let it go (the preview)
                ended = getattr(sink, "camera_ended", None)
                if ended is not None:
                    ended(cam.camera_id)
            self._notify()

    @staticmethod
    def _track(cam: Camera, result: FrameResult) -> FrameResult:
        if cam.tracker is None:
            return result
        try:
            return cam.tracker.update(result)
        except Exception:
            log.exception("camera %s: tracker failed; result passed on untracked", cam.camera_id)
            return result

    async def _hand_on(self, result: FrameResult) -> None:
        """Every sink gets the result; one that fails is logged (every 100th time) and the others still get it."""
        for sink in list(self.sinks):
            try:
                await sink.handle(result)
            except Exception:
                self._sink_errors += 1
                if self._sink_errors % 100 == 1:
                    log.exception("output %s failed on a frame (%d so far)", type(sink).__name__, self._sink_errors)
