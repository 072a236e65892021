"""People a camera sees now and over a time range, each with the current smoothed emotion; one person's time series."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from dashboard.deps import get_service, known_camera
from dashboard.schemas import PeopleInRange, PeopleNow, Series
from dashboard.service import Service

router = APIRouter(prefix="/api/cameras/{camera_id}/people", tags=["people"])
PERSON_ID = r"^[0-9a-z]{1,16}-[0-9]{1,12}$"


def time_range(start: float | None, end: float | None, default_s: float) -> tuple[float, float]:
    """[start, end] in unix seconds; end defaults to now, start to end - default_s; 400 when start >= end."""
    end = time.time() if end is None else end
    start = end - default_s if start is None else start
    if start >= end:
        raise HTTPException(400, f"start ({start}) must be before end ({end})")
    return start, end


@router.get("/now", summary="People in view now (seen within dashboard.present_window_s)")
async def people_now(camera_id: str = Depends(known_camera), service: Service = Depends(get_service)) -> PeopleNow:
    cfg = service.settings.dashboard
    found = await service.ts.people(camera_id, since=time.time() - cfg.present_window_s, limit=cfg.max_people)
    return PeopleNow(camera_id=camera_id, within_s=cfg.present_window_s, people=found)


@router.get("", summary="People seen in a time range (default: the last dashboard.default_range_s)")
async def people_in_range(
    camera_id: str = Depends(known_camera),
    start: float | None = Query(None, ge=0, le=1e11, description="Unix seconds."),
    end: float | None = Query(None, ge=0, le=1e11, description="Unix seconds (default: now)."),
    service: Service = Depends(get_service),
) -> PeopleInRange:
    cfg = service.settings.dashboard
    lo, hi = time_range(start, end, cfg.default_range_s)
    found = await service.ts.people(camera_id, since=lo, until=hi, limit=cfg.max_people)
    return PeopleInRange(camera_id=camera_id, start=lo, end=hi, people=found)


@router.get("/{person_id}/series", summary="One person's emotion time series (smoothed and raw probabilities)")
async def person_series(
    camera_id: str = Depends(known_camera),
    person_id: str = Path(..., pattern=PERSON_ID, description="As listed by the people routes, e.g. 'mf3k2a1b-4'."),
    start: float | None = Query(None, ge=0, le=1e11),
    end: float | None = Query(None, ge=0, le=1e11),
    service: Service = Depends(get_service),
) -> Series:
    if start is not None and end is not None and start >= end:
        raise HTTPException(400, f"start ({start}) must be before end ({end})")
    limit = service.settings.dashboard.max_series_points
    points = await service.ts.series(camera_id, person_id, start, end, count=limit)
    if not points and not await service.ts.person_exists(camera_id, person_id):
        raise HTTPException(404, f"unknown person {person_id!r} on camera {camera_id!r}")
    return Series(camera_id=camera_id, person_id=person_id, truncated=len(points) >= limit,
                  points=points)
