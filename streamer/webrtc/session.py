"""One WebRTC visitor: its peer connection, incoming camera, annotated outgoing track and data channel."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from deepfer_core.settings import Settings
from deepfer_core.stats import percentile_ms
from deepfer_core.types import FrameResult
from streamer.webrtc.source import WebRtcSource
from streamer.webrtc.track import AnnotatedTrack, annotated_frame


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
        h, w = result.frame.shape[:2]
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
            id=self.id,
            camera_id=self.camera_id,
            peer=self.peer,
            state=self.pc.connectionState,
            age_s=round(time.monotonic() - self.created, 1),
            frames_received=src.frames_read if src else 0,
            frames_dropped=src.frames_dropped if src else 0,
            frames_processed=self.processed,
            frames_sent=self.track.sent,
            annotated_dropped=self.track.dropped,
            messages_sent=self.messages_sent,
            messages_skipped=self.messages_skipped,
            latency_p50_ms=percentile_ms(self.track.latencies, 50),
            latency_p95_ms=percentile_ms(self.track.latencies, 95),
            width=src.size[0] if src and src.size else None,
            height=src.size[1] if src and src.size else None,
        )
