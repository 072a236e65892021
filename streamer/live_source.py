"""Live frame sources: RTSP/RTSPS cameras and webcams, reconnecting forever with exponential backoff and jitter.

Each attempt is logged with the URL's credentials redacted. Network cameras are checked against the network policy
and handed to FFmpeg as a rebuilt URL with the checked address before every connect (``streamer.source_url``,
``streamer.netpolicy``).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterator

import numpy as np

from deepfer_core.redact import redact
from deepfer_core.settings import SourceSettings
from deepfer_core.types import Pixels
from streamer.media import FrameTooLarge, limit_options, stream_info, too_large, video_pictures, working_size
from streamer.netpolicy import HostUnresolved, NetworkPolicy, PolicyRefused
from streamer.source_base import VideoSource
from streamer.source_url import SourceError, parse_camera_url

log = logging.getLogger("streamer.sources")

# What a network camera's failure looks like from outside, whatever the cause (refused, timeout, TLS, auth, a stream
# that ended): different texts would make the camera API a port scanner. The cause is in the server log.
CAMERA_UNREACHABLE = "camera unreachable or its stream failed (the server log has the reason)"


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
            except FrameTooLarge:
                raise  # the camera stops (VideoSource._main): reconnecting would ask for the same memory again
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
                self.last_error = None  # the outage is over (the log and reconnects keep it)
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
        options: dict[str, str] = {"rtsp_transport": s.rtsp_transport} | limit_options(s.max_frame_pixels)
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
            self._pump(video_pictures(container, self._count_cpu, s.max_frame_pixels, s.working_pixels,
                                      s.decode_threads, frame_threads=False))


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
            s = self.settings
            if reason := too_large(self.size, s.max_frame_pixels):
                raise FrameTooLarge(reason)
            if self.size[0] * self.size[1] > s.working_pixels:
                bgr = cv2.resize(bgr, working_size(*self.size, s.working_pixels), interpolation=cv2.INTER_AREA)
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic() - start
