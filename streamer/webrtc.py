"""WebRTC visitors as cameras: a browser's webcam goes through the pipeline and comes back annotated.

One ``WebRtcSession`` per visitor: an aiortc peer connection whose incoming video is a ``WebRtcSource`` (a live
camera like any other: same detector, classifier, tracker and Redis writer), and whose outgoing video is an
``AnnotatedTrack`` fed with the tracked results, plus a data channel carrying each processed frame's faces as JSON.

Latency stays bounded: the source keeps only the newest received frame (the rest are counted as dropped), the
pipeline works in its own threads, and the annotated track again sends only the newest result. The delay measured
per session is from a frame's arrival (decoded by aiortc) to its annotated frame being handed to the encoder.

``WebRtcSessions`` is the pipeline sink that routes results to their session, and owns the sessions' lifecycle:
a closed tab, a failed or long-disconnected connection, a peer that never connects, or ``end()`` frees the
session's camera, tracks, tasks and peer connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np
from aiortc import MediaStreamTrack

from streamer.config import Settings, SourceSettings
from streamer.outputs import draw_faces
from streamer.pipeline import Pipeline
from streamer.redact import redact
from streamer.results import Frame, FrameResult
from streamer.sources import TimedFrame, VideoSource

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000  # RTP video clock rate: pts of the returned frames are in 1/90000 s
CLOSED_STATES = ("failed", "closed")


class OfferError(ValueError):
    """An SDP offer that cannot be answered; the message says why (HTTP 400)."""


class TooManySessions(RuntimeError):
    """``webrtc.max_sessions`` visitors are already connected (HTTP 429)."""


def percentile_ms(samples, q: float) -> float | None:
    return round(float(np.percentile(np.asarray(samples) * 1000, q)), 1) if samples else None


def _to_rgb(frame) -> tuple[np.ndarray, float]:
    """Worker thread: the frame as RGB, and the CPU time it took (counted as the source's decode time)."""
    started = time.thread_time()
    image = frame.to_ndarray(format="rgb24")
    return image, time.thread_time() - started


class WebRtcSource(VideoSource):
    """The visitor's incoming video track as a live camera. Newest frame wins; conversion to RGB happens only for
    frames the pipeline actually takes, off the event loop."""

    live = True
    kind = "webrtc"

    def __init__(self, track, camera_id: str, settings: SourceSettings, peer: str, max_in_flight: int | None = None,
                 batch_wait_s: float | None = None):
        super().__init__(f"webrtc://{peer}", camera_id, settings, queue_size=1)
        self.max_in_flight = max_in_flight
        self.batch_wait_s = batch_wait_s
        self.track = track
        self.status = "connecting"
        self._latest: tuple[object, float, float] | None = None  # (av.VideoFrame, arrival monotonic, arrival unix)
        self._dropped = 0
        self._arrivals: deque[float] = deque(maxlen=60)
        self._taken: dict[int, float] = {}  # seq -> arrival (monotonic) of frames handed to the pipeline, until drawn
        self._ready: asyncio.Event | None = None
        self._reader: asyncio.Task | None = None
        self._ended = False
        self.on_end = None  # called once, on the loop, when the track ends (peer gone)

    @property
    def frames_dropped(self) -> int:
        return self._dropped

    def start(self) -> None:
        if self._reader is not None:
            return
        self._ready = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name=f"webrtc-read-{self.camera_id}")

    def stop(self) -> None:
        self._stop.set()
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

        try:
            while not self._stop.is_set():
                frame = await self.track.recv()
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
                self._ready.set()
        except MediaStreamError:
            self.status = "ended"
        except asyncio.CancelledError:
            self.status = "stopped"
        except Exception as exc:  # never lose the reason a visitor's video stopped
            self.status = "failed"
            self.last_error = redact(f"{exc.__class__.__name__}: {exc}")
            log.warning("camera %s: %s", self.camera_id, self.last_error)
        finally:
            self._ended = True
            self._ready.set()
            if self.on_end is not None and not self._stop.is_set():
                self.on_end()

    def arrival(self, seq: int) -> float | None:
        """When frame ``seq`` arrived (monotonic); asked once, by the sink that returns it to the visitor."""
        return self._taken.pop(seq, None)

    async def get(self) -> TimedFrame | None:
        assert self._ready is not None, "start() the source on the running loop first"
        while self._latest is None:
            if self._ended or self._stop.is_set():
                return None
            self._ready.clear()
            await self._ready.wait()
        if self._stop.is_set():
            return None
        frame, arrived, arrived_unix = self._latest
        self._latest = None
        image, cpu_s = await asyncio.to_thread(_to_rgb, frame)
        self.decode_cpu_s += cpu_s
        seq, self._seq = self._seq, self._seq + 1
        self._taken[seq] = arrived
        while len(self._taken) > 256:  # results that never came back (failed analyses) are forgotten
            del self._taken[next(iter(self._taken))]
        pts = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
        return TimedFrame(Frame(self.camera_id, seq, arrived_unix, image, pts), arrived)


class AnnotatedTrack(MediaStreamTrack):
    """The video sent back: the newest annotated frame each time aiortc's sender asks for one."""

    kind = "video"

    def __init__(self, latency_samples: int):
        super().__init__()
        self.latencies: deque[float] = deque(maxlen=latency_samples)  # arrival -> handed to the encoder, seconds
        self.sent = 0
        self.dropped = 0  # annotated frames replaced by newer ones before the encoder asked
        self._latest: tuple[object, float] | None = None
        self._ready = asyncio.Event()
        self._t0: float | None = None
        self._last_pts = -1

    def put(self, frame, arrived: float) -> None:
        """Queue an annotated ``av.VideoFrame`` (newest wins); ``arrived`` is its source frame's arrival (monotonic)."""
        if self.readyState != "live":
            return
        if self._t0 is None:
            self._t0 = arrived
        pts = max(self._last_pts + 1, int((arrived - self._t0) * VIDEO_CLOCK))
        self._last_pts = frame.pts = pts
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        if self._latest is not None:
            self.dropped += 1
        self._latest = (frame, arrived)
        self._ready.set()

    async def recv(self):
        from aiortc.mediastreams import MediaStreamError

        while self._latest is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        frame, arrived = self._latest
        self._latest = None
        self.latencies.append(time.monotonic() - arrived)
        self.sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()


def annotated_frame(result: FrameResult):
    """The frame with its faces drawn, already in the encoder's pixel format (worker thread)."""
    import av

    image = draw_faces(result.frame.image, result.faces)
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


@dataclass
class SessionStats:
    """One visitor's session as ``/api/webrtc/sessions`` shows it."""

    id: str
    camera_id: str
    peer: str
    state: str  # RTCPeerConnection state: new, connecting, connected, failed or closed
    age_s: float
    frames_received: int
    frames_dropped: int  # received frames replaced by newer ones while the pipeline was busy
    frames_processed: int
    frames_sent: int
    annotated_dropped: int
    messages_sent: int
    messages_skipped: int  # while the data channel was closed or its buffer full
    latency_p50_ms: float | None  # arrival -> annotated frame handed to the encoder
    latency_p95_ms: float | None
    width: int | None
    height: int | None


class WebRtcSession:
    """One visitor: peer connection, incoming camera, annotated outgoing track, data channel."""

    def __init__(self, settings: Settings, camera_id: str, peer: str):
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

        w = settings.webrtc
        servers = [RTCIceServer(urls=url, username=w.ice_username or None, credential=w.ice_credential or None)
                   for url in w.ice_servers]
        self.id = camera_id.rsplit("-", 1)[-1]
        self.camera_id = camera_id
        self.peer = peer
        self.settings = settings
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))  # [] : no STUN lookups (no internet needed)
        self.source: WebRtcSource | None = None
        self.track = AnnotatedTrack(w.latency_samples)
        self.channel = None
        self.created = time.monotonic()
        self.processed = 0
        self.messages_sent = 0
        self.messages_skipped = 0
        self.ended = asyncio.Event()

    async def deliver(self, result: FrameResult, arrived: float | None) -> None:
        """A tracked result of this session's camera: draw it for the returned video, send its faces as JSON."""
        self.processed += 1
        if arrived is not None and self.track.readyState == "live":
            self.track.put(await asyncio.to_thread(annotated_frame, result), arrived)
        channel = self.channel
        limit = self.settings.webrtc.max_channel_buffer_kb * 1024
        if channel is None or channel.readyState != "open" or channel.bufferedAmount > limit:
            self.messages_skipped += 1
            return
        h, w = result.frame.image.shape[:2]
        message = {"type": "faces", "camera_id": result.camera_id, "seq": result.frame.seq,
                   "captured_at": result.frame.captured_at, "width": w, "height": h,
                   "latency_ms": round((time.monotonic() - arrived) * 1000, 1) if arrived is not None else None,
                   "faces": [f.to_dict() for f in result.faces]}
        try:
            channel.send(json.dumps(message))
            self.messages_sent += 1
        except Exception:  # the channel closed between the check and the send
            self.messages_skipped += 1

    def stats(self) -> SessionStats:
        src = self.source
        return SessionStats(
            id=self.id, camera_id=self.camera_id, peer=self.peer, state=self.pc.connectionState,
            age_s=round(time.monotonic() - self.created, 1),
            frames_received=src.frames_read if src else 0, frames_dropped=src.frames_dropped if src else 0,
            frames_processed=self.processed, frames_sent=self.track.sent, annotated_dropped=self.track.dropped,
            messages_sent=self.messages_sent, messages_skipped=self.messages_skipped,
            latency_p50_ms=percentile_ms(self.track.latencies, 50), latency_p95_ms=percentile_ms(self.track.latencies, 95),
            width=src.size[0] if src and src.size else None, height=src.size[1] if src and src.size else None)


class WebRtcSessions:
    """Answers offers, runs each visitor as a pipeline camera, and frees everything when a visitor leaves.

    Add it to the pipeline's sinks once; it passes each result to the session whose camera it came from.
    """

    def __init__(self, settings: Settings, pipeline: Pipeline, on_end: Callable[[str], None] | None = None):
        self.settings = settings
        self.pipeline = pipeline
        self.on_end = on_end  # called with the camera id of each ended session (e.g. to drop its preview)
        self.sessions: dict[str, WebRtcSession] = {}  # session id -> session
        self._by_camera: dict[str, WebRtcSession] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closing = False

    # ----- signalling --------------------------------------------------------------------------------------------

    async def answer(self, sdp: str, kind: str, peer: str = "unknown") -> tuple[WebRtcSession, str, str]:
        """Answer a browser's offer; returns (session, answer sdp, answer type). ``OfferError`` / ``TooManySessions``."""
        from aiortc import RTCSessionDescription

        if self._closing:
            raise TooManySessions("the server is shutting down")
        if kind != "offer":
            raise OfferError(f"expected an SDP of type 'offer', got {kind!r}")
        if "m=video" not in sdp:
            raise OfferError("the offer has no video track: send the camera with addTrack or addTransceiver('video')")
        limit = self.settings.webrtc.max_sessions
        if len(self.sessions) >= limit:
            raise TooManySessions(f"{limit} WebRTC sessions are already running (webrtc.max_sessions); try again later")
        camera_id = f"{self.settings.webrtc.camera_prefix}-{uuid.uuid4().hex[:8]}"
        session = WebRtcSession(self.settings, camera_id, peer)
        pc = session.pc
        self.sessions[session.id] = session
        self._by_camera[camera_id] = session

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind != "video" or session.source is not None:
                return  # audio (or a second video) is received and ignored
            w = self.settings.webrtc
            source = WebRtcSource(track, camera_id, self.settings.sources, peer, w.max_in_flight, w.batch_wait_ms / 1000)
            source.on_end = lambda: self._spawn(self.end(session.id, "the visitor's video ended"))
            session.source = source
            self.pipeline.add_source(source)

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            session.channel = channel

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            log.info("webrtc %s (%s): %s", session.id, peer, state)
            if state in CLOSED_STATES:
                self._spawn(self.end(session.id, f"connection {state}"))
            elif state == "disconnected":
                self._spawn(self._end_if_still(session, "disconnected", self.settings.webrtc.disconnect_grace_s))

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if session.source is None:
                raise OfferError("the offer has no video track the server can receive")
            pc.addTrack(session.track)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except OfferError:
            await self.end(session.id, "bad offer")
            raise
        except Exception as exc:  # aiortc's parse and negotiation errors: the visitor's offer is unusable
            await self.end(session.id, "bad offer")
            raise OfferError(f"cannot answer the offer: {exc.__class__.__name__}: {exc}") from None
        self._spawn(self._end_if_still(session, "new", self.settings.webrtc.connect_timeout_s, also=("connecting",)))
        log.info("webrtc %s: answered %s as camera %s", session.id, peer, camera_id)
        return session, pc.localDescription.sdp, pc.localDescription.type

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_if_still(self, session: WebRtcSession, state: str, after_s: float, also: tuple[str, ...] = ()) -> None:
        """Close a session still in ``state`` (or ``also``) after ``after_s``; a session ending meanwhile stops this."""
        try:
            await asyncio.wait_for(session.ended.wait(), after_s)
        except asyncio.TimeoutError:
            if session.pc.connectionState in (state, *also):
                await self.end(session.id, f"still {session.pc.connectionState} after {after_s:g} s")

    # ----- teardown ----------------------------------------------------------------------------------------------

    async def end(self, session_id: str, reason: str = "stopped") -> SessionStats | None:
        """Free a session: its camera leaves the pipeline (its last frames still reach Redis), tracks and peer close.
        Idempotent; returns the final stats, or None when there was no such session."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return None
        self._by_camera.pop(session.camera_id, None)  # its last results still reach Redis, no longer the visitor
        session.ended.set()
        session.track.stop()
        if session.source is not None:
            session.source.on_end = None
            session.source.stop()
        if session.camera_id in self.pipeline.camera_ids:
            await self.pipeline.remove_source(session.camera_id)
        final = session.stats()
        # shielded: cancelling a task that awaits aiortc's close (which may be under way already, started by aiortc
        # itself when the peer hung up) would cancel its internal future and make that close fail
        await asyncio.shield(session.pc.close())
        if self.on_end is not None:
            self.on_end(session.camera_id)
        log.info("webrtc %s (%s) ended: %s; %d frames received, %d processed, %d sent, p50/p95 %s/%s ms",
                 session.id, session.peer, reason, final.frames_received, final.frames_processed, final.frames_sent,
                 final.latency_p50_ms, final.latency_p95_ms)
        return final

    async def close(self) -> None:
        """Pipeline sink close (server shutting down): end every session and the watchdogs."""
        self._closing = True
        await asyncio.gather(*(self.end(sid, "server shutting down") for sid in list(self.sessions)))
        # ends already under way finish; the watchdogs return as soon as their session has ended
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ----- results -----------------------------------------------------------------------------------------------

    async def handle(self, result: FrameResult) -> None:
        session = self._by_camera.get(result.camera_id)
        if session is None:
            return
        arrived = session.source.arrival(result.frame.seq) if session.source is not None else None
        await session.deliver(result, arrived)

    def camera_ids(self) -> set[str]:
        return set(self._by_camera)

    def session_for_camera(self, camera_id: str) -> WebRtcSession | None:
        return self._by_camera.get(camera_id)
