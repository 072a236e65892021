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
    workers = service.workers()
    writer = service.redis_sink.stats() if service.redis_sink is not None else None
    reason = degraded(redis_ok, writer, workers)
    return Health(**{"status": "degraded" if reason else "ok", "reason": reason, "redis": redis_ok,
            "redis_writer": writer, "cameras": len(service.cameras),
            "webrtc_sessions": len(service.webrtc.sessions) if service.webrtc else 0,
            "uptime_s": round(time.time() - service.started_at, 1),
            "mode": service.mode,
            "workers": workers})


def degraded(redis_ok: bool, writer: dict | None, workers: list[dict]) -> str | None:
    """Why the service is not storing what it sees (None: it is): Redis silent, or answering but refusing writes
    (full with noeviction, read-only), here or on a cluster worker. Points wait in the journal meanwhile."""
    if not redis_ok:
        return "Redis does not answer; points wait in the journal"
    if writer and writer.get("refusing"):
        return f"Redis refuses writes ({writer['refusing']}); points wait in the journal"
    for w in workers:
        if (w.get("redis") or {}).get("refusing"):
            return f"Redis refuses writes from worker {w.get('name')} ({w['redis']['refusing']})"
    return None
