"""``GET /health``: open to everyone (no token), for load balancers and the README's first check."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends

from dashboard.deps import get_service
from dashboard.schemas import Health
from dashboard.service import Service

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and Redis reachability")
async def health(service: Service = Depends(get_service)) -> Health:
    try:
        redis_ok = await service.ts.ping()
    except Exception:
        redis_ok = False
    return Health(**{"status": "ok", "redis": redis_ok, "cameras": len(service.cameras),
            "webrtc_sessions": len(service.webrtc.sessions) if service.webrtc else 0,
            "uptime_s": round(time.time() - service.started_at, 1),
            "mode": service.mode,
            "workers": service.workers()})
