"""What the pipeline keeps per camera, by concern: pausing, the detection cadence, the anchor frame whose boxes and
emotions later frames carry, and the counters behind ``CameraStats``.

``streamer/pipeline.py`` owns the camera's tasks and the shared batchers; these parts only hold state and answer
questions about it, so the pipeline's feeder and emitter read as the steps they take.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from deepfer_core.protocols import FrameSource, Tracker
from deepfer_core.stats import percentile_ms
from deepfer_core.types import FaceBox, FrameResult
from detectors.schedule import DetectionScheduler, ScheduleCounts

# (result, latency in seconds, detected): what one frame's analysis answers
Analysis = tuple[FrameResult, float, bool]


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
    frames_capped: int  # decoded frames not analysed: over the camera's analysed-fps cap (pipeline.max_analysed_fps)
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PauseGate:
    """Paused live cameras drop their frames; paused files wait where they are (``resumed`` is set when running)."""

    paused: bool = False
    resumed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.resumed.set()

    def pause(self) -> None:
        self.paused = True
        self.resumed.clear()

    def resume(self) -> None:
        self.paused = False
        self.resumed.set()

    def release(self) -> None:
        """Let a waiting feeder go (the camera is stopping) without un-pausing it."""
        self.resumed.set()

    async def admit(self, live: bool) -> bool:
        """Whether to analyse the frame just read: False for a paused live camera; a paused file waits."""
        if self.paused:
            if live:
                return False
            await self.resumed.wait()
        return True


@dataclass
class Cadence:
    """Which frames the detector (its scheduler) looks at: every ``detect_every``-th since the last detection, and
    whether nothing moved on the latest look (the frames up to the next look are as still as it)."""

    every: int
    since_detect: int = 0
    still: bool = False
    refine_between: bool = False  # the frames between looks refine the known faces (large cameras only)

    def sized(self, width: int, height: int, max_side: int, large_every: int, refine_between: bool = False) -> None:
        """A camera whose frames are larger than ``max_side`` looks every ``large_every`` frames (0: ``every``),
        and refines its known faces on the frames between with ``refine_between``."""
        if max(width, height) > max_side:
            if large_every:
                self.every = large_every
            self.refine_between = refine_between and self.every > 1

    def due(self, anchored: bool) -> bool:
        """Look at this frame: no detection yet, or ``every`` frames since the last one."""
        return not anchored or self.since_detect % self.every == 0

    def looked(self, detect: bool) -> None:
        self.still = not detect

    def advance(self, detect: bool) -> None:
        """One more frame started; a detection restarts the count."""
        self.since_detect = 1 if detect else self.since_detect + 1


@dataclass
class FpsCap:
    """At most ``max_fps`` frames a second analysed (0: every frame): the stream's time is cut into slots of
    ``1 / max_fps`` s and the first frame read in each slot is analysed (the newest one at that moment: a live
    source had already replaced older ones), the others are dropped and counted. On stream time, so a file read as
    fast as possible is capped as it would be live, and the same frames are analysed at any speed."""

    max_fps: float = 0.0
    capped: int = 0
    _origin: float | None = None  # the first frame's time: slots count from it
    _slot: int = 0

    def admit(self, t: float) -> bool:
        if self.max_fps <= 0:
            return True
        if self._origin is None or t < self._origin - 1.0 / self.max_fps:  # the first frame, or the clock went back
            self._origin, self._slot = t, 0
            return True
        slot = int((t - self._origin) * self.max_fps + 1e-6)  # a frame exactly on a slot's start belongs to it
        if slot <= self._slot:
            self.capped += 1
            return False
        self._slot = slot
        return True


@dataclass
class Anchor:
    """The latest frame the detector ran on: its boxes (a future) and its analysis (a task); the frames after it
    carry the boxes, and its emotions where they are reused."""

    boxes: asyncio.Future[list[FaceBox]] | None = None
    result: asyncio.Future[Analysis] | None = None
    at: float | None = None  # when that frame was captured (stream seconds)

    def carried_boxes(self) -> asyncio.Future[list[FaceBox]]:
        assert self.boxes is not None, "the first frame a camera looks at is always detected"
        return self.boxes

    async def known(self) -> list[FaceBox]:
        """Its faces: where refinement looks next. Waiting for them (usually done: the detection started
        ``detect_every`` frames ago) keeps a file's boxes the same at any speed and batching."""
        if self.boxes is None:
            return []
        try:
            return await asyncio.shield(self.boxes)
        except Exception:  # that frame's failure is reported by its own analysis
            return []


@dataclass
class Counters:
    """What the emitter counts per camera, and the times behind fps and latency."""

    latencies: deque[float]
    window_s: float  # pipeline.stats_window_s, for recent fps
    emitted: deque[float] = field(default_factory=deque)  # monotonic times of recent results
    processed: int = 0
    skipped: int = 0
    failed: int = 0
    detected: int = 0
    faces: int = 0
    with_faces: int = 0
    first_at: float | None = None
    last_at: float | None = None
    last_error: str | None = None

    def first_frame(self, read_at: float) -> None:
        if self.first_at is None:
            self.first_at = read_at

    def failure(self, exc: Exception) -> bool:
        """Count a frame whose analysis raised; True when it is worth a log line (a new message, or every 100th)."""
        self.failed += 1
        message = f"{exc.__class__.__name__}: {exc}"
        worth = message != self.last_error or self.failed % 100 == 1
        self.last_error = message
        return worth

    def result(self, result: FrameResult, latency: float, detected: bool) -> None:
        now = time.monotonic()
        self.processed += 1
        self.detected += detected
        self.faces += len(result.faces)
        self.with_faces += bool(result.faces)
        self.latencies.append(latency)
        self.last_at = now
        self.emitted.append(now)
        while self.emitted and self.emitted[0] < now - self.window_s:
            self.emitted.popleft()

    def fps(self) -> float:
        elapsed = (self.last_at - self.first_at) if self.first_at is not None and self.last_at is not None else 0.0
        return round((self.processed - 1) / elapsed, 2) if elapsed > 0 and self.processed > 1 else 0.0

    def recent_fps(self) -> float:
        now = time.monotonic()
        recent = sum(1 for t in self.emitted if t >= now - self.window_s)
        span = min(self.window_s, now - self.first_at) if self.first_at is not None else 0.0
        return round(recent / span, 2) if span > 0 else 0.0


@dataclass
class Camera:
    """One camera in the pipeline: its source and tracker, the frames in analysis (in order), its two tasks, and
    its state by concern."""

    source: FrameSource
    tracker: Tracker | None
    inflight: asyncio.Queue[asyncio.Future[Analysis] | None]
    scheduler: DetectionScheduler
    cadence: Cadence
    counters: Counters
    cap: FpsCap = field(default_factory=FpsCap)
    pause: PauseGate = field(default_factory=PauseGate)
    anchor: Anchor = field(default_factory=Anchor)
    search: asyncio.Future[list[FaceBox]] | None = None  # the full detection running beside the stream (live)
    feed_task: asyncio.Task[None] | None = None
    emit_task: asyncio.Task[None] | None = None
    done: bool = False

    @property
    def camera_id(self) -> str:
        return self.source.camera_id

    def status(self) -> str:
        if self.pause.paused:
            return "paused"
        if self.done:
            return self.source.status if self.source.status in ("ended", "failed") else "stopped"
        return self.source.status

    def stats(self) -> CameraStats:
        src, c = self.source, self.counters
        counts: ScheduleCounts = self.scheduler.counts
        return CameraStats(
            camera_id=src.camera_id,
            source=src.display,
            kind=src.kind,
            live=src.live,
            status=self.status(),
            last_error=src.last_error or c.last_error,
            frames_read=src.frames_read,
            frames_processed=c.processed,
            frames_dropped=src.frames_dropped,
            frames_skipped=c.skipped,
            frames_capped=self.cap.capped,
            frames_failed=c.failed,
            frames_detected=c.detected,
            frames_full=counts.full,
            frames_full_beside=counts.beside,
            frames_regions=counts.regions,
            frames_refined=counts.refined,
            frames_still=counts.still,
            faces=c.faces,
            frames_with_faces=c.with_faces,
            reconnects=src.reconnects,
            fps=c.fps(),
            recent_fps=c.recent_fps(),
            latency_p50_ms=percentile_ms(c.latencies, 50),
            latency_p95_ms=percentile_ms(c.latencies, 95),
            decode_ms=round(1000 * src.decode_cpu_s / src.frames_read, 2) if src.frames_read else None,
            source_fps=round(src.fps, 3) if src.fps else None,
            width=src.size[0] if src.size else None,
            height=src.size[1] if src.size else None,
        )
