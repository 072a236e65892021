"""A WebRTC visitor's camera as a pipeline source: aiortc decodes, the newest frame wins, RGB only on demand."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from deepfer_core.redact import redact
from deepfer_core.types import Frame, TimedFrame
from streamer.media import FrameTooLarge, picture, too_large

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)


class WebRtcSource:
    """The visitor's incoming video track as a live camera (a ``FrameSource``). Newest frame wins; conversion to
    RGB happens only for frames the pipeline takes and needs in colour, in its workers."""

    live = True
    kind = "webrtc"

    def __init__(self, track, camera_id: str, peer: str, max_in_flight: int | None = None,
                 batch_wait_s: float | None = None, max_pixels: int | None = None):
        self.camera_id = camera_id
        self.max_pixels = max_pixels  # sources.max_frame_pixels: a larger frame ends the session
        self.display = f"webrtc://{peer}"
        self.max_in_flight = max_in_flight
        self.batch_wait_s = batch_wait_s
        self.track = track
        self.status = "connecting"
        self.last_error: str | None = None
        self.frames_read = 0
        self.reconnects = 0
        self.decode_cpu_s = 0.0  # converting the frames the pipeline needed in colour to RGB (aiortc decodes)
        self._cpu_lock = threading.Lock()
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self._seq = 0
        self._stopped = False
        self._latest: tuple[av.VideoFrame, float, float] | None = None  # (frame, arrival monotonic, arrival unix)
        self._dropped = 0
        self._arrivals: deque[float] = deque(maxlen=60)
        self._taken: dict[int, float] = {}  # seq -> arrival (monotonic) of frames handed to the pipeline, until drawn
        self._ready: asyncio.Event | None = None
        self._reader: asyncio.Task | None = None
        self._ended = False
        self.on_end: Callable[[], None] | None = None  # called once, on the loop, when the track ends (peer gone)

    @property
    def frames_dropped(self) -> int:
        return self._dropped

    def start(self) -> None:
        if self._reader is not None:
            return
        self._ready = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"webrtc-read-{self.camera_id}")

    def stop(self) -> None:
        self._stopped = True
        if self._reader is not None:
            self._reader.cancel()
        if self._ready is not None:
            self._ready.set()

    async def aclose(self, timeout: float = 5.0) -> None:
        self.stop()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=timeout)

    async def _read(self) -> None:
        """Drain the track as fast as aiortc decodes it (its queue is unbounded), keeping only the newest frame."""
        from aiortc.mediastreams import MediaStreamError

        ready = self._ready
        assert ready is not None, "start() creates the event before the reader"
        try:
            while not self._stopped:
                frame = await self.track.recv()
                if self.max_pixels and (reason := too_large((frame.width, frame.height), self.max_pixels)):
                    raise FrameTooLarge(reason)  # aiortc decoded it already; it is not kept, and no more are taken
                now = time.monotonic()
                if self._latest is not None:
                    self._dropped += 1
                self._latest = (frame, now, time.time())
                self.frames_read += 1
                self.size = (frame.width, frame.height)
                self._arrivals.append(now)
                if len(self._arrivals) > 1:
                    self.fps = (len(self._arrivals) - 1) / max(1e-6, self._arrivals[-1] - self._arrivals[0])
                self.status = "connected"
                ready.set()
        except MediaStreamError:
            self.status = "ended"
        except asyncio.CancelledError:
            self.status = "stopped"
        except Exception as exc:  # never lose the reason a visitor's video stopped
            self.status = "failed"
            self.last_error = str(exc) if isinstance(exc, FrameTooLarge) else redact(f"{exc.__class__.__name__}: {exc}")
            log.warning("camera %s: %s", self.camera_id, self.last_error)
        finally:
            self._ended = True
            ready.set()
            if self.on_end is not None and not self._stopped:
                self.on_end()

    def _count_cpu(self, seconds: float) -> None:
        with self._cpu_lock:  # conversions run in the pipeline's workers
            self.decode_cpu_s += seconds

    def arrival(self, seq: int) -> float | None:
        """When frame ``seq`` arrived (monotonic); asked once, by the sink that returns it to the visitor."""
        return self._taken.pop(seq, None)

    async def get(self) -> TimedFrame | None:
        assert self._ready is not None, "start() the source on the running loop first"
        while self._latest is None:
            if self._ended or self._stopped:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self._stopped:
            return None
        frame, arrived, arrived_unix = self._latest
        self._latest = None
        pixels = picture(frame, self._count_cpu)  # RGB when a worker first needs it
        seq, self._seq = self._seq, self._seq + 1
        self._taken[seq] = arrived
        while len(self._taken) > 256:  # results that never came back (failed analyses) are forgotten
            del self._taken[next(iter(self._taken))]
        pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
        return TimedFrame(Frame(self.camera_id, seq, arrived_unix, pixels, pts), arrived)
