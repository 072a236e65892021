"""The video sent back to a WebRTC visitor: the newest annotated frame, each time aiortc's encoder asks."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from fractions import Fraction

from aiortc import MediaStreamTrack

from deepfer_core.types import FrameResult
from streamer.drawing import draw_faces

VIDEO_CLOCK = 90_000  # RTP video clock rate: pts of the returned frames are in 1/90000 s


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
