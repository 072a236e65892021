"""Metrics over time, per camera and overall: emotion mix per interval, unique people, dwell time, satisfaction."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from aggregator import analytics
from aggregator.summary import Scene, Window, camera_state, describe_camera, describe_overall
from aggregator.timeseries import INTERVAL_S, MAX_BUCKETS
from dashboard.deps import get_service, known_camera
from dashboard.routes.people import time_range
from dashboard.schemas import AllMetrics, CameraMetrics
from dashboard.service import Service
from deepfer_core.types import EMOTIONS

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


async def scene(service: Service, camera: str, end: float, live: bool) -> Scene:
    """What the summary words for one camera: the window before ``end``, the one before it, people in view now,
    visitors never read, the camera's state (read from Redis and the running service)."""
    cfg = service.settings.dashboard
    w = cfg.summary_window_s
    windows = []
    buckets = await service.ts.rollup(camera, "minute", end - 2 * w, end)
    people = await service.ts.people(camera, since=end - 2 * w, until=end, limit=cfg.max_people)
    for lo, hi in ((end - w, end), (end - 2 * w, end - w)):
        counts = {e: 0 for e in EMOTIONS}
        points = 0
        for b in buckets:
            if lo <= b.start + b.interval_s / 2 < hi:  # a minute belongs to the window holding most of it
                points += b.points
                for e, n in b.emotion_points.items():
                    counts[e] += n
        seen = [p for p in people if p.last_seen >= lo and p.first_seen < hi]
        windows.append(Window(counts, points, len(seen), sum(1 for p in seen if not sum(p.emotion_points.values()))))
    status = service.camera_view(camera).status if camera in service.camera_ids() else None
    present = sum(1 for p in people if p.last_seen >= end - cfg.present_window_s)
    ever = bool(people) or await service.ts.has_camera(camera)
    return Scene(camera, windows[0], windows[1], ever, camera_state(status), live, present)


def is_live(end: float, service: Service) -> bool:
    """The range ends now (the page's live view), not in the past (an alert's moment): then "now" is said."""
    return end >= time.time() - service.settings.dashboard.present_window_s


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
    per_camera, raw, people, scenes = {}, [], 0, []
    cfg, live = service.settings.dashboard, is_live(hi, service)
    for cam in cameras:
        buckets, n = await camera_metrics(service, cam, interval, lo, hi)
        raw.append(buckets)
        people += n
        rows = [analytics.from_bucket(b) for b in buckets]
        scenes.append(await scene(service, cam, hi, live))
        per_camera[cam] = {"buckets": rows, "totals": analytics.totals(rows, n),
                           "summary": describe_camera(scenes[-1], cfg.summary_window_s, cfg.summary_trend_min)}
    overall = analytics.combine(raw)
    return AllMetrics(
        interval=interval,
        start=lo,
        end=hi,
        satisfaction_definition=analytics.__doc__.split("\n\n")[1].strip(),
        cameras=per_camera,
        overall={"buckets": overall, "totals": analytics.totals(overall, people),
                 "summary": describe_overall(scenes, cfg.summary_window_s, cfg.summary_trend_min, live)},
        summary_window_s=cfg.summary_window_s,
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
    cfg = service.settings.dashboard
    words = describe_camera(await scene(service, camera_id, hi, is_live(hi, service)), cfg.summary_window_s,
                            cfg.summary_trend_min)
    return CameraMetrics(camera_id=camera_id, interval=interval, start=lo, end=hi, buckets=rows,
                         totals=analytics.totals(rows, n), summary=words, summary_window_s=cfg.summary_window_s)
