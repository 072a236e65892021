"""A scripted WebRTC visitor: plays a video file to a DeepFER server as a browser's camera would.

Used by ``deepfer bench webrtc`` and the tests. It sends the file (aiortc's ``MediaPlayer``, paced at the file's
own frame rate), receives the annotated video and the per-face messages, and counts them.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

Signal = Callable[[dict], Awaitable[dict]]  # offer {"sdp", "type"} -> answer {"sdp", "type", "session_id", ...}


@dataclass
class ClientCounts:
    frames_received: int = 0  # annotated frames back from the server
    messages: list[dict] = field(default_factory=list)  # per-face messages from the data channel
    first_frame_at: float | None = None
    first_message_at: float | None = None
    last_frame_size: tuple[int, int] | None = None


class WebRtcClient:
    def __init__(self, video: str, loop: bool = False, keep_messages: int = 10_000):
        self.video = video
        self.loop = loop
        self.keep = keep_messages
        self.counts = ClientCounts()
        self.answer: dict | None = None
        self.pc: RTCPeerConnection | None = None
        self.player: MediaPlayer | None = None
        self.started = 0.0
        self._receiver: asyncio.Task | None = None
        self._got_frame = asyncio.Event()
        self._got_message = asyncio.Event()

    async def connect(self, signal: Signal) -> dict:
        """Offer the video, exchange SDP through ``signal``; returns the server's answer (with its session id)."""
        self.player = MediaPlayer(self.video, loop=self.loop)
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(self.player.video)
        channel = pc.createDataChannel("faces")

        @channel.on("message")
        def on_message(text) -> None:
            if self.counts.first_message_at is None:
                self.counts.first_message_at = time.monotonic()
            if len(self.counts.messages) < self.keep:
                self.counts.messages.append(json.loads(text))
            self._got_message.set()

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "video":
                self._receiver = asyncio.ensure_future(self._receive(track))

        self.started = time.monotonic()
        await pc.setLocalDescription(await pc.createOffer())
        self.answer = await signal({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})
        await pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer["sdp"], type=self.answer["type"]))
        return self.answer

    async def _receive(self, track) -> None:
        try:
            while True:
                frame = await track.recv()
                c = self.counts
                c.frames_received += 1
                c.last_frame_size = (frame.width, frame.height)
                if c.first_frame_at is None:
                    c.first_frame_at = time.monotonic()
                self._got_frame.set()
        except MediaStreamError:
            pass

    async def wait_first(self, timeout: float) -> None:
        """Until an annotated frame and a per-face message have both arrived (``TimeoutError`` otherwise)."""
        await asyncio.wait_for(asyncio.gather(self._got_frame.wait(), self._got_message.wait()), timeout)

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.player is not None and self.player.video is not None:
            self.player.video.stop()
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)
