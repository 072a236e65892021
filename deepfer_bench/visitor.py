"""A scripted WebRTC visitor: plays a video file to a DeepFER server as a browser's camera would.

Used by ``deepfer bench webrtc`` and the tests. It sends the file (aiortc's ``MediaPlayer``, paced at the file's
own frame rate; ``LoopingFileTrack`` when it must play longer than the file), receives the annotated video and the
per-face messages, and counts them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

Signal = Callable[[dict], Awaitable[dict]]  # offer {"sdp", "type"} -> answer {"sdp", "type", "session_id", ...}


class LoopingFileTrack(MediaStreamTrack):
    """A video file played in a loop at its own frame rate, with timestamps that keep rising across loops.

    (``MediaPlayer(loop=True)`` restarts its timestamps at each loop, which a receiver's jitter buffer takes for
    old frames.)
    """

    kind = "video"

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._container = None
        self._frames = None
        self._offset = 0.0  # seconds added to the file's own times (one file length per loop)
        self._last = 0.0
        self._start: float | None = None

    def _next(self):
        import av

        while True:
            if self._frames is None:
                self._container = av.open(self.path)
                rate = self._container.streams.video[0].average_rate
                self._step = 1 / float(rate) if rate else 1 / 30  # the gap between the last frame and the next loop
                self._frames = self._container.decode(video=0)
            try:
                return next(self._frames)
            except StopIteration:
                self._container.close()
                self._frames = None
                self._offset = self._last + self._step

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        frame = await asyncio.to_thread(self._next)
        t = self._offset + float(frame.time or 0.0)
        self._last = t
        if self._start is None:
            self._start = time.monotonic() - t
        await asyncio.sleep(max(0.0, self._start + t - time.monotonic()))
        frame.pts, frame.time_base = int(t * 90_000), Fraction(1, 90_000)
        return frame

    def stop(self) -> None:
        super().stop()
        if self._container is not None:
            self._container.close()


@dataclass
class ClientCounts:
    frames_received: int = 0  # annotated frames back from the server
    messages_received: int = 0
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
        self.track: MediaStreamTrack | None = None
        self.started = 0.0
        self._receiver: asyncio.Task | None = None
        self._got_frame = asyncio.Event()
        self._got_message = asyncio.Event()

    async def connect(self, signal: Signal) -> dict:
        """Offer the video, exchange SDP through ``signal``; returns the server's answer (with its session id)."""
        if self.loop:
            self.track = LoopingFileTrack(self.video)
        else:
            self.player = MediaPlayer(self.video)
            self.track = self.player.video
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        assert self.track is not None, "the player has a video track"
        pc.addTrack(self.track)
        channel = pc.createDataChannel("faces")

        @channel.on("message")
        def on_message(text) -> None:
            if self.counts.first_message_at is None:
                self.counts.first_message_at = time.monotonic()
            self.counts.messages_received += 1
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
        if self.track is not None:
            self.track.stop()
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)


def _visitor_process(path: str, loop: bool, conn) -> None:
    """Child process: one ``WebRtcClient``, driven over a pipe (offer out, answer in, then counts on request)."""

    async def main() -> None:
        client = WebRtcClient(path, loop=loop, keep_messages=0)

        async def signal(offer: dict) -> dict:
            conn.send(offer)
            return await asyncio.to_thread(conn.recv)

        try:
            await client.connect(signal)
            await client.wait_first(120)
            frame_at, message_at = client.counts.first_frame_at, client.counts.first_message_at
            assert frame_at is not None and message_at is not None, "wait_first returned, so both arrived"
            conn.send(("first", max(frame_at, message_at) - client.started))
            while (command := await asyncio.to_thread(conn.recv)) != "close":
                if command == "counts":
                    conn.send((client.counts.frames_received, client.counts.messages_received))
        finally:
            await client.close()

    asyncio.run(main())


class VisitorProcess:
    """A ``WebRtcClient`` in a process of its own, as a browser would be: its video codecs do not share the
    server's interpreter (used by ``deepfer bench webrtc``)."""

    def __init__(self, path: str, loop: bool = True):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_visitor_process, args=(path, loop, child), daemon=True)

    async def connect(self, signal: Signal) -> dict:
        self.process.start()
        offer = await asyncio.to_thread(self.conn.recv)
        answer = await signal(offer)
        self.conn.send(answer)
        return answer

    async def wait_first(self, timeout: float) -> float:
        """Seconds from the offer to the first annotated frame and message, as the visitor saw it."""
        if not await asyncio.to_thread(self.conn.poll, timeout):
            raise TimeoutError(f"no annotated frame and message within {timeout:g} s")
        _, first_s = self.conn.recv()
        return first_s

    async def counts(self) -> tuple[int, int]:
        """(annotated frames, messages) received so far."""
        self.conn.send("counts")
        return await asyncio.to_thread(self.conn.recv)

    async def close(self) -> None:
        if self.process.is_alive():
            self.conn.send("close")
            await asyncio.to_thread(self.process.join, 30)
        if self.process.is_alive():
            self.process.kill()
