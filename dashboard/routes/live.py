"""``GET /api/events``: Server-Sent Events with each camera's faces (throttled) and everyone's status.

Events: ``faces`` (JSON of one processed frame: camera_id, captured_at, faces with person_id, emotion and
probabilities; at most ``dashboard.live_max_per_s`` per camera per second), ``cameras`` (the camera list, every
``dashboard.sse_stats_every_s``) and ``redis`` (``{"connected": bool}``, at the start and whenever it changes).
EventSource cannot send headers: pass ``?token=`` or sign in (cookie).

Faces come from the Redis live channel; camera status comes from the pipeline in this process. So a Redis outage
stops only the faces: the stream keeps sending status and keep-alives, and re-subscribes with backoff until Redis
answers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from aggregator.timeseries import LiveEvents
from dashboard.deps import get_service
from dashboard.service import Service
from streamer.runtime.camera_store import CAMERA_ID_PATTERN

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)
RETRY_FIRST_S = 0.5


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class LiveChannel:
    """One SSE client's subscription to the live channel, which survives Redis outages.

    ``get`` returns the next published event, or None after at most ``timeout`` seconds. While Redis is down it
    waits out a backoff (doubling up to ``retry_max_s``) and then subscribes again; it never raises.
    """

    def __init__(self, service: Service, camera: str | None, retry_max_s: float):
        self.service = service
        self.camera = camera
        self.retry_max_s = retry_max_s
        self.connected = False
        self._events: LiveEvents | None = None
        self._delay = RETRY_FIRST_S
        self._retry_at = 0.0

    async def connect(self) -> bool:
        """Subscribe now if Redis answers (else a retry is scheduled); True when subscribed."""
        if self._events is None:
            events = self.service.ts.live_events(self.camera)
            try:
                await events.open()
            except (RedisError, OSError) as exc:
                await events.aclose()
                await self._drop(exc)
                return False
            self._events, self.connected, self._delay = events, True, RETRY_FIRST_S
        return self.connected

    async def _drop(self, exc: Exception) -> None:
        if self.connected:
            log.warning("live events: Redis unavailable (%s); status continues, faces resume when it answers",
                        exc.__class__.__name__)
        self.connected = False
        await self.aclose()
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self.retry_max_s, self._delay * 2)

    async def get(self, timeout: float) -> dict | None:
        if self._events is None:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(min(wait, timeout))
                return None
            if not await self.connect():
                return None
        assert self._events is not None  # connect() set it
        try:
            return await self._events.next(timeout)
        except (RedisError, OSError) as exc:
            await self._drop(exc)
            return None

    async def aclose(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            await events.aclose()


@router.get(
    "/api/events", summary="Live updates (text/event-stream)", responses={200: {"content": {"text/event-stream": {}}}}
)
async def events(
    request: Request,
    camera: str | None = Query(None, pattern=CAMERA_ID_PATTERN, description="Only this camera."),
    service: Service = Depends(get_service),
) -> StreamingResponse:
    cfg = service.settings.dashboard
    channel = LiveChannel(service, camera, service.settings.redis.retry_max_s)

    async def stream():
        last_sent: dict[str, float] = {}
        next_stats = next_ping = 0.0
        redis_shown: bool | None = None
        gap = 1.0 / cfg.live_max_per_s
        try:
            yield b"retry: 2000\n\n"
            await channel.connect()  # before the first status: a client may publish as soon as it sees one
            while not await request.is_disconnected():
                now = time.monotonic()
                if now >= next_stats:
                    next_stats = now + cfg.sse_stats_every_s
                    views = [
                        service.camera_view(c).model_dump(mode="json")
                        for c in service.camera_ids()
                        if camera in (None, c)
                    ]
                    yield sse("cameras", views)
                elif now >= next_ping:
                    yield b": keepalive\n\n"
                next_ping = now + cfg.sse_keepalive_s
                event = await channel.get(timeout=min(1.0, cfg.sse_stats_every_s))
                if channel.connected is not redis_shown:
                    redis_shown = channel.connected
                    yield sse("redis", {"connected": redis_shown})
                if event is None:
                    continue
                cam = str(event.get("camera_id", ""))
                if now - last_sent.get(cam, -1e9) < gap:
                    continue
                last_sent[cam] = now
                yield sse("faces", event)
        finally:
            await channel.aclose()

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
