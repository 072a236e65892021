"""What every threaded frame source shares: the hand-off buffer to the event loop and the decode-thread base class.

A decode thread hands frames to the event loop through a small buffer. Files wait when the buffer is full, so every
frame is processed in order; live sources drop the oldest frame instead (newest wins, drops are counted), so latency
stays bounded when the pipeline is behind.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import numpy as np

from deepfer_core.redact import redact
from deepfer_core.settings import SourceSettings
from deepfer_core.types import Frame, Pixels, TimedFrame
from streamer.media import FrameTooLarge
from streamer.source_url import source_kind

log = logging.getLogger("streamer.sources")  # every source logs under one name, whichever module it lives in

Status = Literal["starting", "connecting", "connected", "reconnecting", "paused", "ended", "failed", "stopped"]


def default_camera_id(uri: str) -> str:
    """A readable id from the URI, never containing credentials: file stem, ``host-port-path``, or ``videoN``."""
    kind = source_kind(uri)
    if kind == "file":
        base = Path(uri).stem
    elif kind == "webcam":
        base = f"video{uri}" if uri.isdigit() else Path(uri).name
    else:
        parts = urlsplit(uri)
        host = parts.hostname or "camera"
        base = "-".join(p for p in (host, str(parts.port or ""), parts.path.strip("/")) if p)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "camera"


class FrameBuffer:
    """Hand-off from a decode thread to the event loop; ``None`` marks the end of the stream."""

    def __init__(self, size: int, drop_oldest: bool):
        self.size = size
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._items: deque[TimedFrame | None] = deque()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready = asyncio.Event()

    def put(self, item: TimedFrame | None, stop: threading.Event) -> bool:
        """Thread side. Files block while full; live sources drop the oldest. False once stopped."""
        with self._cond:
            if item is not None:
                if self.drop_oldest:
                    while len(self._items) >= self.size:
                        self._items.popleft()
                        self.dropped += 1
                else:
                    while len(self._items) >= self.size and not stop.is_set():
                        self._cond.wait(0.1)
            if stop.is_set() and item is not None:
                return False
            self._items.append(item)
        self._wake()
        return True

    def _wake(self) -> None:
        if self._loop is not None and self._ready is not None:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop has closed; nobody is waiting any more
                pass

    async def get(self) -> TimedFrame | None:
        assert self._ready is not None, "bind() the buffer to the running loop first"
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify()
                    return item
                self._ready.clear()
            await self._ready.wait()

    def release(self) -> None:
        """Wake a blocked producer (used on stop)."""
        with self._cond:
            self._cond.notify_all()


class VideoSource:
    """An async source of frames decoded in a daemon thread. Subclasses implement ``_produce``."""

    live: bool = False
    kind: str = "file"
    max_in_flight: int | None = None  # this source's own pipeline.max_in_flight (interactive sources favour latency)
    batch_wait_s: float | None = None  # longest its frames wait for a detector/classifier batch (None: the batchers')

    def __init__(self, uri: str, camera_id: str | None, settings: SourceSettings, queue_size: int):
        self.uri = uri
        self.display = redact(uri)
        self.camera_id = camera_id or default_camera_id(uri)
        self.settings = settings
        self.buffer = FrameBuffer(queue_size, drop_oldest=self.live)
        self.status: Status = "starting"
        self.last_error: str | None = None
        self.frames_read = 0
        self.reconnects = 0
        self.decode_cpu_s = 0.0  # CPU time of decoding, and of converting to RGB the frames that needed colour
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self._cpu_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0

    @property
    def frames_dropped(self) -> int:
        return self.buffer.dropped

    def start(self) -> None:
        """Start decoding; call from the running event loop."""
        if self._thread is not None:
            return
        self.buffer.bind(asyncio.get_running_loop())
        self._thread = threading.Thread(target=self._main, name=f"decode-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.buffer.release()

    async def aclose(self, timeout: float = 5.0) -> None:
        self.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)

    async def get(self) -> TimedFrame | None:
        """The next frame, or ``None`` when the source has ended or was stopped."""
        return await self.buffer.get()

    # --- decode thread ---

    def _main(self) -> None:
        try:
            self._produce()
        except FrameTooLarge as exc:  # the source stops: retrying would ask for the same memory again
            self.status = "failed"
            self.last_error = redact(str(exc))
            log.error("camera %s (%s): %s; stopped", self.camera_id, self.display, self.last_error)
        except Exception as exc:  # never let a decode thread die silently
            self.status = "failed"
            self.last_error = redact(f"{exc.__class__.__name__}: {exc}")
            log.error("camera %s: %s", self.camera_id, self.last_error)
        finally:
            if self.status not in ("failed", "ended"):
                self.status = "stopped"
            self.buffer.put(None, threading.Event())

    def _produce(self) -> None:
        raise NotImplementedError

    def _count_cpu(self, seconds: float) -> None:
        with self._cpu_lock:  # the decode thread, and the workers that convert frames to RGB
            self.decode_cpu_s += seconds

    def _emit(self, image: Pixels | np.ndarray, pts: float | None, captured_at: float) -> bool:
        frame = Frame(self.camera_id, self._seq, captured_at, Pixels.of(image), pts)
        if not self.buffer.put(TimedFrame(frame, time.monotonic()), self._stop):
            return False
        self._seq += 1
        self.frames_read += 1
        return not self._stop.is_set()
