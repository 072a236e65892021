"""Metrics over time, per camera and overall: emotion mix per interval, unique people, dwell time, satisfaction."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from aggregator import analytics
from aggregator.timeseries import INTERVAL_S, MAX_BUCKETS
from dashboard.deps import get_service, known_camera
from dashboard.routes.people import time_range
from dashboard.schemas import AllMetrics, CameraMetrics
from dashboard.service import Service

router = APIRouter(tags=["metrics"])
IntervalQuery = Query("minute", description="Bucket size.")


def metrics_range(start: float | None, end: float | None, interval: str, default_s: float) -> tuple[float, float]:
    """The time range, or 400 when it is backwards or holds more buckets than one read allows."""
    lo, hi = time_range(start, end, default_s)
    buckets = int((hi - lo) // INTERVAL_S[interval]) + 1
    if buckets > MAX_BUCKETS:
        raise HTTPException(400, f"{buckets} {interval} buckets asked; at most {MAX_BUCKETS} per request: "
                                 "use a larger interval or a shorter range")
    return lo, hi


async def camera_metrics(service: Service, camera: str, interval: Literal["minute", "hour", "day"], lo: float,
                         hi: float):
    try:
        buckets = await service.ts.rollup(camera, interval, lo, hi)
    except ValueError as exc:  # too many buckets for one read
        raise HTTPException(400, str(exc)) from None
    people = await service.ts.people(camera, since=lo, until=hi)
    return buckets, len(people)


@router.get("/api/metrics", summary="Every camera's and the overall emotion mix per interval, people, dwell, "
                                    "satisfaction")
async def all_metrics(
    interval: Literal["minute", "hour", "day"] = IntervalQuery,
    start: float | None = Query(None, ge=0, le=1e11, description="Unix seconds (default: end - "
                                                                 "dashboard.default_range_s)."),
    end: float | None = Query(None, ge=0, le=1e11, description="Unix seconds (default: now)."),
    service: Service = Depends(get_service),
) -> AllMetrics:
    lo, hi = metrics_range(start, end, interval, service.settings.dashboard.default_range_s)
    cameras = sorted({c for c, _ in await service.ts.cameras()} | set(service.camera_ids()))
    per_camera, raw, people = {}, [], 0
    for cam in cameras:
        buckets, n = await camera_metrics(service, cam, interval, lo, hi)
        raw.append(buckets)
        people += n
        rows = [analytics.from_bucket(b) for b in buckets]
        per_camera[cam] = {"buckets": rows, "totals": analytics.totals(rows, n)}
    overall = analytics.combine(raw)
    return AllMetrics(
        interval=interval,
        start=lo,
        end=hi,
        satisfaction_definition=analytics.__doc__.split("\n\n")[1].strip(),
        cameras=per_camera,
        overall={"buckets": overall, "totals": analytics.totals(overall, people)},
    )


@router.get(
    "/api/cameras/{camera_id}/metrics", summary="One camera's emotion mix per interval, people, dwell, satisfaction"
)
async def one_camera_metrics(
    camera_id: str = Depends(known_camera),
    interval: Literal["minute", "hour", "day"] = IntervalQuery,
    start: float | None = Query(None, ge=0, le=1e11),
    end: float | None = Query(None, ge=0, le=1e11),
    service: Service = Depends(get_service),
) -> CameraMetrics:
    lo, hi = metrics_range(start, end, interval, service.settings.dashboard.default_range_s)
    buckets, n = await camera_metrics(service, camera_id, interval, lo, hi)
    rows = [analytics.from_bucket(b) for b in buckets]
    return CameraMetrics(
        camera_id=camera_id, interval=interval, start=lo, end=hi, buckets=rows, totals=analytics.totals(rows, n)
    )
