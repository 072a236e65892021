"""The pipeline's Redis writer: never blocks or fails the pipeline, never loses a point.

``handle`` only turns tracked faces into points and queues them; a background
task writes them in order. While Redis is down (or answers but refuses writes,
e.g. full with ``noeviction``), the points waiting in memory
(and the batch that failed) go to a segment of the journal on disk
(``aggregator.journal``: ``{data_dir}/journal/{run}/``) as soon as the writer
sees Redis down and then every ``journal_every_s`` (1 s), so a crash (``kill -9``)
during an outage loses at most that much; with Redis up they are spilled only
when ``buffer_max`` are waiting. Once Redis answers again the segments and then
memory are written oldest first. Each transaction also stores the run's
last written sequence number, so a replay after a crash never writes a point
twice. On close, whatever Redis did not take in ``close_timeout_s`` stays in the
journal; the next RedisSink on the same ``data_dir`` adopts and writes it.

Sample rate: at most ``redis.points_per_s`` points per person per second (0: one
per processed frame); roll-up counts are therefore proportional to time in view.
Faces of tentative tracks (``track_id`` None) are not stored. Live events (one
per frame) are published only while Redis is up; they are never buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aggregator.journal import Journal
from aggregator.timeseries import EmotionPoint, EmotionTimeSeries, redis_client
from deepfer_core.redact import redact
from deepfer_core.settings import RedisSettings
from deepfer_core.types import FrameResult

log = logging.getLogger(__name__)
DOWN_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
PERSON_GONE_S = 60.0  # a person's point after this long without one starts a new dwell
EVENTS_KEPT = 64  # live events waiting for the writer; older ones are dropped (they are live, not data)


def new_run_id(after: str = "") -> str:
    """Base-36 milliseconds: short, unique per start, and sorts by time; later than ``after`` (a run id) if given."""
    n, digits = int(time.time() * 1000), "0123456789abcdefghijklmnopqrstuvwxyz"
    if after:
        n = max(n, int(after, 36) + 1)
    out = ""
    while n:
        n, d = divmod(n, 36)
        out = digits[d] + out
    return out


@dataclass
class _PersonState:
    t: float  # time of the last point written for this person
    ms: int
    n: int  # sequence within the same millisecond


class RedisSink:
    """A ``ResultSink`` that stores tracked faces in Redis (see ``aggregator.keys`` for the keys)."""

    def __init__(self, settings: RedisSettings, url: str, data_dir: Path, run_id: str | None = None):
        self.settings = settings
        self.url = url
        self.display = redact(url)  # the only form of the URL a log line shows
        self.run_id = run_id or new_run_id()
        self.journal = Journal(Path(data_dir) / "journal", self.run_id)
        self.ts = EmotionTimeSeries(redis_client(url, settings), settings)
        self._memory: deque[EmotionPoint] = deque()
        self._inflight: deque[EmotionPoint] = deque()  # taken from memory or from the oldest segment
        self._inflight_segment: tuple[Path, int] | None = None
        self._events: deque[tuple[str, dict[str, Any]]] = deque(maxlen=EVENTS_KEPT)
        self._people: dict[tuple[str, int], _PersonState] = {}
        self._camera_runs: dict[str, str] = {}  # camera -> its person ids' run, once it was restarted here
        self._visitors: dict[tuple[str, str], int] = {}  # (camera, person id) -> visitor number, once written
        self._applied: dict[str, int] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.connected = False
        self._outage = False  # the writer found Redis down (not merely: not connected yet)
        self.written = 0
        self.dropped = 0  # only when Redis is down and the journal cannot be written either
        self.write_errors = 0  # failed write attempts, Redis down or refusing
        self.last_error: str | None = None  # the last failure's reason, one line (kept after recovery)
        self.last_error_at: float | None = None  # unix seconds
        self.refusing: str | None = None  # while Redis answers but refuses writes (full, read-only): the reason
        self._last_prune = 0.0
        self._journaled_at = time.monotonic()  # last spill (or start): while Redis is down, spill when a second old

    # ----- the pipeline side: never awaits Redis ---------------------------------------------------------------

    async def handle(self, result: FrameResult) -> None:
        if self._closing:
            raise RuntimeError("RedisSink is closed")
        self._start()
        cam, t = result.camera_id, result.frame.captured_at
        min_gap = 1.0 / self.settings.points_per_s if self.settings.points_per_s > 0 else 0.0
        for face in result.faces:
            if face.track_id is None or face.smoothed is None or face.label is None:
                continue
            key = (cam, face.track_id)
            state = self._people.get(key)
            if state is not None and t - state.t >= PERSON_GONE_S:
                state = None  # not seen for a minute: a new dwell begins (the time away is not time in view)
            if state is not None and t - state.t < min_gap - 1e-3:
                continue
            ms = int(t * 1000)
            if state is not None and ms <= state.ms:
                ms, n = state.ms, state.n + 1
            else:
                n = 0
            point = EmotionPoint(
                camera_id=cam,
                person_id=f"{self.person_run(cam)}-{face.track_id}",
                track_id=face.track_id,
                t=t,
                label=face.label,
                raw_label=face.raw_label,
                smoothed=tuple(float(p) for p in face.smoothed),
                raw=tuple(float(p) for p in face.probabilities),
                dwell_s=0.0 if state is None else max(0.0, t - state.t),
                stream_id=f"{ms}-{n}",
                run_id=self.run_id,
                seq=self._seq,
            )
            self._seq += 1
            self._people[key] = _PersonState(t if state is None else max(t, state.t), ms, n)
            if len(self._memory) >= self.settings.buffer_max:
                self._spill()
            self._memory.append(point)
        self._spill_if_due()
        if self.settings.events and self.connected:
            event = result.to_dict()
            run = self.person_run(cam)
            for face in event["faces"]:
                face["person_id"] = f"{run}-{face['track_id']}" if face["track_id"] is not None else None
                # "Visitor N" as the tables show it; None until the person's first point is in Redis
                face["visitor"] = self._visitors.get((cam, face["person_id"])) if face["person_id"] else None
            self._events.append((cam, event))
        self._prune(t)
        self._wake.set()

    def _spill_if_due(self) -> None:
        """While Redis is down, put what waits in memory on disk every ``journal_every_s``."""
        if self._outage and time.monotonic() - self._journaled_at >= self.settings.journal_every_s:
            self._spill()

    def person_run(self, camera_id: str) -> str:
        """The run part of the camera's person ids (``{run}-{track_id}``): this sink's run id until the camera is
        restarted."""
        return self._camera_runs.get(camera_id, self.run_id)

    def camera_ended(self, camera_id: str) -> None:
        """The camera stopped (removed, or replaced by a camera of the same id): its tracker is gone and the next one
        numbers faces from 1 again, so its next people get ids of a new run. A person id never spans two runs of a
        camera (a re-added camera's first visitor is not the previous run's person 1)."""
        self._people = {k: st for k, st in self._people.items() if k[0] != camera_id}
        used = max(self.run_id, *self._camera_runs.values(), key=lambda r: int(r, 36))
        self._camera_runs[camera_id] = new_run_id(after=used)

    def _spill(self) -> None:
        """Memory to a new journal segment. A batch taken from memory is older than it, so it goes first in the same
        segment, which becomes the writer's current one (segments are replayed in order: sequence numbers must rise)."""
        self._journaled_at = time.monotonic()
        batch_from_memory = self._inflight_segment is None and bool(self._inflight)
        points = (list(self._inflight) if batch_from_memory else []) + list(self._memory)
        if not points:
            return
        try:
            path = self.journal.spill(points)
        except OSError as exc:  # disk full or read-only: keep them in memory, up to a hard limit
            hard = 10 * self.settings.buffer_max
            if len(self._memory) >= hard:
                for _ in range(self.settings.buffer_max):
                    self._memory.popleft()
                self.dropped += self.settings.buffer_max
                log.error(
                    "Redis down and journal unwritable (%s): dropped the %d oldest points (%d so far)",
                    exc,
                    self.settings.buffer_max,
                    self.dropped,
                )
            elif len(self._memory) % self.settings.buffer_max == 0:
                log.error("Redis down and journal unwritable (%s): %d points held in memory", exc, len(self._memory))
            return
        if batch_from_memory:
            self.journal.segments.pop()  # it is the writer's now, not a queued one
            self._inflight.extend(self._memory)
            self._inflight_segment = (path, len(points))
        self._memory.clear()
        log.debug("Redis at %s: %d points journaled to %s", self.display, len(points), path)

    def _prune(self, t: float) -> None:
        """Forget per-person state of people not seen for a minute (their next point starts a new dwell)."""
        if t - self._last_prune < 60:
            return
        self._last_prune = t
        self._people = {k: s for k, s in self._people.items() if t - s.t < PERSON_GONE_S}
        present = {(cam, f"{self.person_run(cam)}-{track}") for cam, track in self._people}
        self._visitors = {k: n for k, n in self._visitors.items() if k in present}

    @property
    def buffer_depth(self) -> int:
        """Points produced but not yet in Redis (memory + journal), for metrics."""
        from_memory = len(self._inflight) if self._inflight_segment is None else 0
        return (
            len(self._memory)
            + from_memory
            + self.journal.points
            + (self._inflight_segment[1] if self._inflight_segment else 0)
        )

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "buffered": self.buffer_depth,
            "in_memory": len(self._memory),
            "in_journal": self.journal.points + (self._inflight_segment[1] if self._inflight_segment else 0),
            "written": self.written,
            "dropped": self.dropped,
            "write_errors": self.write_errors,
            "refusing": self.refusing,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

    def _failed(self, exc: BaseException) -> str:
        """Count a failed write attempt; its reason as one line, without the URL's secrets."""
        text = (str(exc).strip().splitlines() or [""])[0]
        text = text.split(" caused error: ", 1)[-1].strip("()',\"")  # redis-py quotes a pipeline's command: not that
        reason = redact(f"{exc.__class__.__name__}: {text}".rstrip(": "))[:300]
        self.write_errors += 1
        self.last_error, self.last_error_at = reason, time.time()
        return reason

    # ----- the writer task ---------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"redis-sink-{self.run_id}")

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._pending() and not self._events:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            try:
                if not self.connected:
                    await self.ts.r.ping()
                    self._applied.clear()
                    self.connected, self._outage = True, False
                    log.info("Redis at %s is up; %d points to write", self.display, self.buffer_depth)
                await self._publish_events()
                await self._write_batch()
                self._outage = False
                backoff = 0.1
                if self.refusing is not None:
                    log.info("Redis at %s takes writes again (%d failed attempts so far); %d points to write",
                             self.display, self.write_errors, self.buffer_depth)
                    self.refusing = None
            except DOWN_ERRORS as exc:
                self._failed(exc)
                if self.connected:
                    log.warning("Redis at %s is down (%s); points go to the journal in %s", self.display,
                                exc.__class__.__name__, self.journal.dir)
                self.connected, self._outage = False, True
                self._events.clear()
                self._spill()
                await self._wait_down(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or a Redis refusal must not stop the writer or the pipeline
                reason = self._failed(exc)
                if reason != self.refusing:  # one line per change of state, not a traceback every retry
                    log.error("Redis at %s refuses writes (%s); points go to the journal in %s, retrying every "
                              "%.1f s", self.display, reason, self.journal.dir, self.settings.retry_max_s)
                    log.debug("the refused write", exc_info=True)
                self.refusing = reason
                self._outage = True  # Redis answers but refuses (full, read-only): on disk meanwhile, as when down
                self._spill()
                await self._wait_down(self.settings.retry_max_s)

    async def _wait_down(self, seconds: float) -> None:
        """Sleep until the next reconnection attempt, journaling on time even when no frame comes."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self.settings.journal_every_s or left))
            self._spill_if_due()

    def _pending(self) -> bool:
        return bool(self._inflight or self._inflight_segment or self.journal.segments or self._memory)

    async def _publish_events(self) -> None:
        if not self._events:
            return
        pipe = self.ts.r.pipeline(transaction=False)
        while self._events:
            cam, event = self._events.popleft()
            pipe.publish(self.ts.keys.events(cam), json.dumps(event, separators=(",", ":")))
        await pipe.execute()

    def _refill(self) -> None:
        """Inflight holds the oldest points: a whole journal segment first, else a batch from memory."""
        if self._inflight:
            return
        if self._inflight_segment is not None:
            self._inflight_segment[0].unlink(missing_ok=True)
            self._inflight_segment = None
        if self.journal.segments:
            path, n = self.journal.segments.popleft()
            try:
                self._inflight.extend(Journal.read(path))
            except Exception as exc:  # never let one damaged file block the rest
                log.error("journal segment %s is unreadable (%s); kept as %s.bad", path, exc, path.name)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(path.name + ".bad"))
                return
            self._inflight_segment = (path, n)
        else:
            for _ in range(min(self.settings.batch_size, len(self._memory))):
                self._inflight.append(self._memory.popleft())

    async def _write_batch(self) -> None:
        self._refill()
        if not self._inflight:
            self._refill()  # a finished segment was just removed
            if not self._inflight:
                return
        batch = [self._inflight[i] for i in range(min(self.settings.batch_size, len(self._inflight)))]
        for run in {p.run_id for p in batch} - self._applied.keys():
            self._applied[run] = await self.ts.applied_seq(run)
        fresh = [p for p in batch if p.seq > self._applied[p.run_id]]
        self._visitors.update(await self.ts.write(fresh))
        for p in fresh:
            self._applied[p.run_id] = max(self._applied[p.run_id], p.seq)
        for _ in batch:
            self._inflight.popleft()
        self.written += len(fresh)
        if not self._inflight and self._inflight_segment is not None:
            self._inflight_segment[0].unlink(missing_ok=True)
            self._inflight_segment = None

    # ----- shutdown ------------------------------------------------------------------------------------------------

    async def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued is in Redis; False if that did not happen within ``timeout_s``."""
        self._start()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while self._pending():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        if self._closing:
            return
        drained = await self.flush(self.settings.close_timeout_s) if self._pending() else True
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not drained:
            self._spill()  # every unwritten point is on disk now, oldest first, for the next start
            log.warning(
                "Redis at %s did not take %d points before exit; they stay in %s and are written on the next start",
                self.display,
                self.buffer_depth,
                self.journal.dir,
            )
        self.journal.close()
        with contextlib.suppress(Exception):
            await self.ts.aclose()

