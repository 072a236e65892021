"""``GET /api/events``: Server-Sent Events with each camera's faces (throttled) and everyone's status.

Events: ``faces`` (JSON of one processed frame: camera_id, captured_at, faces with person_id, emotion and
probabilities; at most ``dashboard.live_max_per_s`` per camera per second) and ``cameras`` (the camera list,
every ``dashboard.sse_stats_every_s``). EventSource cannot send headers: pass ``?token=`` or sign in (cookie).
"""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from dashboard.cameras import CAMERA_ID_PATTERN
from dashboard.deps import get_service
from dashboard.service import Service

router = APIRouter(tags=["live"])


def sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/api/events", summary="Live updates (text/event-stream)", responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, camera: str | None = Query(None, pattern=CAMERA_ID_PATTERN, description="Only this camera."),
                 service: Service = Depends(get_service)) -> StreamingResponse:
    cfg = service.settings.dashboard
    keys = service.ts.keys

    async def stream():
        pubsub = service.ts.r.pubsub()
        if camera is None:
            await pubsub.psubscribe(keys.events("*"))
        else:
            await pubsub.subscribe(keys.events(camera))
        last_sent: dict[str, float] = {}
        next_stats = next_ping = 0.0
        gap = 1.0 / cfg.live_max_per_s
        try:
            yield b"retry: 2000\n\n"
            while not await request.is_disconnected():
                now = time.monotonic()
                if now >= next_stats:
                    next_stats = now + cfg.sse_stats_every_s
                    views = [service.camera_view(c) for c in service.camera_ids() if camera in (None, c)]
                    yield sse("cameras", views)
                elif now >= next_ping:
                    yield b": keepalive\n\n"
                next_ping = now + cfg.sse_keepalive_s
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(1.0, cfg.sse_stats_every_s))
                if message is None or message["type"] not in ("message", "pmessage"):
                    continue
                event = json.loads(message["data"])
                cam = event.get("camera_id", "")
                if now - last_sent.get(cam, -1e9) < gap:
                    continue
                last_sent[cam] = now
                yield sse("faces", event)
        finally:
            await pubsub.aclose()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
