"""Signalling and lifecycle of WebRTC visitors: answer offers, run each visitor as a pipeline camera, free
everything when a visitor leaves (closed tab, failed or long-disconnected connection, a peer that never connects,
or ``end()``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from deepfer_core.settings import Settings
from deepfer_core.types import FrameResult
from streamer.pipeline import Pipeline
from streamer.webrtc.candidates import CandidateError, CandidatePolicy
from streamer.webrtc.session import SessionStats, WebRtcSession
from streamer.webrtc.source import WebRtcSource

log = logging.getLogger(__name__)
CLOSED_STATES = ("failed", "closed")


class OfferError(ValueError):
    """An SDP offer that cannot be answered; the message says why (HTTP 400)."""


class TooManySessions(RuntimeError):
    """``webrtc.max_sessions`` visitors are already connected (HTTP 429)."""


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
        self.candidates: CandidatePolicy | None = None  # built at the first offer (it resolves the Redis host)

    async def candidate_policy(self) -> CandidatePolicy:
        if self.candidates is None:
            r = self.settings.redis
            self.candidates = await asyncio.to_thread(CandidatePolicy.from_settings, self.settings,
                                                      [r.url, r.default_url])
        return self.candidates

    # ----- signalling --------------------------------------------------------------------------------------------

    async def answer(self, sdp: str, kind: str, peer: str = "unknown") -> tuple[WebRtcSession, str, str]:
        """Answer a browser's offer; returns (session, answer sdp, answer type).

        ``OfferError`` / ``TooManySessions`` when it cannot."""
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
        try:
            sdp = (await self.candidate_policy()).filter(sdp)  # before aiortc: it would send STUN to every candidate
        except CandidateError as exc:
            raise OfferError(str(exc)) from None
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
            source = WebRtcSource(track, camera_id, peer, w.max_in_flight, w.batch_wait_ms / 1000,
                                  self.settings.sources.max_frame_pixels)
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

    async def _end_if_still(
        self, session: WebRtcSession, state: str, after_s: float, also: tuple[str, ...] = ()
    ) -> None:
        """Close a session still in ``state`` (or ``also``) after ``after_s``; a session ending meanwhile stops this."""
        try:
            await asyncio.wait_for(session.ended.wait(), after_s)
        except TimeoutError:
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
        log.info(
            "webrtc %s (%s) ended: %s; %d frames received, %d processed, %d sent, p50/p95 %s/%s ms",
            session.id,
            session.peer,
            reason,
            final.frames_received,
            final.frames_processed,
            final.frames_sent,
            final.latency_p50_ms,
            final.latency_p95_ms,
        )
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
