"""Visits: who came when (first seen), for how long (time in view) and in what mood, over every camera or one."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, Query

from aggregator.visits import visits
from dashboard.deps import get_service
from dashboard.schemas import Visits
from dashboard.service import Service
from streamer.runtime.camera_store import CAMERA_ID_PATTERN

router = APIRouter(tags=["visits"])


@router.get("/api/visits", summary="Visits, newest first: who came when, for how long, in what mood")
async def list_visits(
    camera: str | None = Query(None, pattern=CAMERA_ID_PATTERN, description="One camera (default: every camera)."),
    since: float | None = Query(None, ge=0, le=1e11, description="Unix seconds (default: until - "
                                                                 "dashboard.default_range_s)."),
    until: float | None = Query(None, ge=0, le=1e11, description="Unix seconds (default: now)."),
    limit: int | None = Query(None, ge=1, description="Most visits answered (default and most: "
                                                      "dashboard.max_visits)."),
    service: Service = Depends(get_service),
) -> Visits:
    cfg = service.settings.dashboard
    if limit is not None and limit > cfg.max_visits:
        raise HTTPException(400, f"limit ({limit}) is over dashboard.max_visits ({cfg.max_visits})")
    limit = cfg.max_visits if limit is None else limit
    hi = time.time() if until is None else until
    lo = hi - cfg.default_range_s if since is None else since
    if lo > hi:
        raise HTTPException(400, f"since ({lo}) must not be after until ({hi})")
    if camera is not None and not await service.known_camera(camera):
        raise HTTPException(404, f"unknown camera {camera!r}")
    cameras = [camera] if camera is not None else sorted({c for c, _ in await service.ts.cameras()})
    found = await visits(service.ts, cameras, lo, hi, limit + 1)
    return Visits(camera=camera, since=lo, until=hi, limit=limit, truncated=len(found) > limit, visits=found[:limit])
