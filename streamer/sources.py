"""Frame sources: video files, RTSP/RTSPS cameras and webcams, each decoded in its own thread.

A decode thread hands frames to the event loop through a small buffer. Files
wait when the buffer is full, so every frame is processed in order; live
sources drop the oldest frame instead (newest wins, drops are counted), so
latency stays bounded when the pipeline is behind. Live sources reconnect
forever, with exponential backoff and jitter, logging each attempt with the
URL's credentials redacted. Network cameras are checked against the network policy and handed to FFmpeg as a
rebuilt URL with the checked address before every connect (``streamer.source_url``, ``streamer.netpolicy``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import numpy as np

from core.redact import redact
from core.settings import PipelineSettings, SourceSettings
from core.types import Frame, Pixels, TimedFrame
from streamer.media import (
    MediaError,
    local_path,
    probe_video,
    stream_info,
    video_pictures,
)
from streamer.netpolicy import HostUnresolved, NetworkPolicy, PolicyRefused
from streamer.source_url import SourceError, parse_camera_url, source_kind

log = logging.getLogger(__name__)

Status = Literal["starting", "connecting", "connected", "reconnecting", "paused", "ended", "failed", "stopped"]
# What a network camera's failure looks like from outside, whatever the cause (refused, timeout, TLS, auth, a stream
# that ended): different texts would make the camera API a port scanner. The cause is in the server log.
CAMERA_UNREACHABLE = "camera unreachable or its stream failed (the server log has the reason)"


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


class FileSource(VideoSource):
    """Any container PyAV reads. Every frame, in order; ``file_rate='realtime'`` paces them at the file's own fps.

    ``live=True`` plays the file like a camera (paced, newest wins, drops counted): the pipeline benchmark uses it.
    """

    kind = "file"

    def __init__(self, uri: str, camera_id: str | None, settings: SourceSettings, queue_size: int, live: bool = False):
        self.live = live
        super().__init__(uri, camera_id, settings, queue_size)
        self.path = str(local_path(uri))
        try:
            info = probe_video(self.path)
        except MediaError as exc:
            raise SourceError(str(exc)) from None
        self.fps, self.size = info.fps, info.size
        self.pace = live or settings.file_rate == "realtime"

    def _produce(self) -> None:
        import av

        self.status = "connecting"
        with av.open(self.path) as container:
            self.status = "connected"
            start = time.time()
            mono = time.monotonic()
            first: float | None = None
            for image, pts in video_pictures(container, self._count_cpu):
                if pts is None and self.fps:
                    pts = self._seq / self.fps
                first = pts if first is None else first
                offset = (pts - first) if pts is not None and first is not None else 0.0
                if self.pace and self._stop.wait(max(0.0, mono + offset - time.monotonic())):
                    return
                captured = time.time() if self.live else start + offset
                if not self._emit(image, pts, captured):
                    return
        self.status = "ended"


class LiveSource(VideoSource):
    """A camera that may drop: reconnects forever with exponential backoff and jitter until stopped.

    ``uniform_failures`` (the dashboard): an attempt that fails without a frame is reported no sooner than
    ``connect_timeout_s`` after it began, so a refused port and one that never answers look the same from the API
    (same status at the same moments, same reconnect count) and the camera API is no port scanner.
    """

    live = True
    uniform_failures = False

    def _produce(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self.status = "connecting" if attempt == 0 and self.reconnects == 0 else "reconnecting"
            before, started = self.frames_read, time.monotonic()
            try:
                self._read_until_failure()
                detail, public = "stream ended", self._public_error(None, "stream ended")
            except Exception as exc:
                detail = redact(f"{exc.__class__.__name__}: {exc}")
                public = self._public_error(exc, detail)
            if self._stop.is_set():
                return
            if self.frames_read > before:
                attempt = 0  # it worked for a while: start the backoff again from the bottom
            elif self.uniform_failures and self._stop.wait(
                    max(0.0, self.settings.connect_timeout_s - (time.monotonic() - started))):
                return
            delay = min(self.settings.reconnect_max_s, self.settings.reconnect_initial_s * 2**attempt)
            delay *= 1 - self.settings.reconnect_jitter * random.random()
            attempt += 1
            self.reconnects += 1
            self.last_error = public
            self.status = "reconnecting"
            log.warning("camera %s (%s): %s; reconnect attempt %d in %.1f s",
                        self.camera_id, self.display, detail, attempt, delay)
            self._stop.wait(delay)

    def _public_error(self, exc: Exception | None, detail: str) -> str:
        """What the API and the summary show for a failed attempt (the log always has ``detail``)."""
        return detail

    def _read_until_failure(self) -> None:
        raise NotImplementedError

    def _pump(self, frames: Iterator[tuple[Pixels | np.ndarray, float | None]]) -> None:
        """Emit frames until the stream fails, ends, stalls or we are stopped."""
        last = time.monotonic()
        for image, pts in frames:
            now = time.monotonic()
            if now - last > self.settings.stall_timeout_s:
                raise TimeoutError(f"no frame for {now - last:.1f} s")
            last = now
            if self.status != "connected":
                self.status = "connected"
                log.info("camera %s (%s): connected", self.camera_id, self.display)
            if not self._emit(image, pts, time.time()):
                return


class RtspSource(LiveSource):
    """``rtsp://`` and ``rtsps://`` cameras through PyAV/FFmpeg, with connect and read timeouts.

    The URL is checked and rebuilt from its parts at construction (``SourceError`` if unusable); before every
    connect its host is resolved and checked against ``policy``, and FFmpeg gets the checked address (see
    ``streamer.netpolicy`` for rtsps://). Failures show as one generic text; the reason is logged.
    """

    kind = "rtsp"

    def __init__(self, uri: str, camera_id: str | None, settings: SourceSettings, queue_size: int,
                 policy: NetworkPolicy | None = None, uniform_failures: bool = False):
        self.camera_url = parse_camera_url(uri)
        super().__init__(self.camera_url.url, camera_id, settings, queue_size)
        self.policy = policy or NetworkPolicy.from_settings(settings)
        self.uniform_failures = uniform_failures

    def _public_error(self, exc: Exception | None, detail: str) -> str:
        if isinstance(exc, (PolicyRefused, HostUnresolved)):
            return str(exc)
        return CAMERA_UNREACHABLE

    def target(self) -> tuple[str, dict[str, str]]:
        """The URL and options FFmpeg opens now: resolved, checked, pinned (``PolicyRefused``, ``HostUnresolved``)."""
        s, u = self.settings, self.camera_url
        ip = self.policy.check(u.host, u.effective_port)
        options: dict[str, str] = {"rtsp_transport": s.rtsp_transport}
        if u.scheme == "rtsps" and s.rtsps_ca_file:  # the certificate must match the name: keep it
            return u.url, options | {"tls_verify": "1", "ca_file": s.rtsps_ca_file}
        return u.with_host(str(ip)).url, options

    def _read_until_failure(self) -> None:
        import av

        s = self.settings
        url, options = self.target()
        log.debug("camera %s: opening %s", self.camera_id, redact(url))
        with av.open(url, options=options, timeout=(s.connect_timeout_s, s.read_timeout_s)) as container:
            if not container.streams.video:
                raise SourceError("no video stream")
            info = stream_info(container)
            self.fps, self.size = info.fps, info.size
            self._pump(video_pictures(container, self._count_cpu))


class WebcamSource(LiveSource):
    """A local camera, ``/dev/videoN`` or an index, through OpenCV's V4L2 backend (PyAV wheels lack v4l2)."""

    kind = "webcam"

    def _read_until_failure(self) -> None:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our log says it once per attempt
        index = int(self.uri) if self.uri.isdigit() else int(re.sub(r"\D", "", self.uri))
        cap = cv2.VideoCapture(index, cv2.CAP_V4L2)
        try:
            if not cap.isOpened():
                raise ConnectionError(f"cannot open webcam {self.uri}")
            if self.settings.webcam_fps:
                cap.set(cv2.CAP_PROP_FPS, self.settings.webcam_fps)
            self.fps = cap.get(cv2.CAP_PROP_FPS) or None
            self._pump(self._frames(cap))
        finally:
            cap.release()

    def _frames(self, cap) -> Iterator[tuple[np.ndarray, float | None]]:
        import cv2

        start = time.monotonic()
        while not self._stop.is_set():
            ok, bgr = cap.read()
            if not ok:
                raise ConnectionError("webcam read failed")
            self.size = (bgr.shape[1], bgr.shape[0])
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic() - start


def open_source(uri: str, camera_id: str | None, settings: SourceSettings, pipeline: PipelineSettings | None = None,
                live_file: bool = False, policy: NetworkPolicy | None = None,
                uniform_failures: bool = False) -> VideoSource:
    """The source for ``uri``. Files are probed and camera URLs checked now, so a bad one fails at once with a clear
    ``SourceError``.

    Buffer sizes come from ``pipeline`` (``file_queue_size``, ``live_queue_size``); ``live_file`` plays a file
    like a camera (paced, newest wins). ``policy`` (default: ``settings``' own) is checked before every connect of
    a network camera; ``uniform_failures``: see ``LiveSource`` (webcams are local: not needed).
    """
    pipeline = pipeline or PipelineSettings()
    kind = source_kind(uri)
    if kind == "file":
        size = pipeline.live_queue_size if live_file else pipeline.file_queue_size
        return FileSource(uri, camera_id, settings, size, live=live_file)
    if kind == "rtsp":
        return RtspSource(uri, camera_id, settings, pipeline.live_queue_size, policy, uniform_failures)
    return WebcamSource(uri, camera_id, settings, pipeline.live_queue_size)
