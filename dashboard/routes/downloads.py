"""Downloads: a camera's (or every camera's) points or roll-ups as CSV, Parquet or JSON lines, streamed in chunks;
and the report of a day or range as one HTML page (inline SVG, no script, served with a CSP of its own)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, StreamingResponse
from redis.exceptions import RedisError
from starlette.background import BackgroundTask

from aggregator.export import (
    MEDIA_TYPES,
    ExportQuery,
    day_range,
    file_name,
    stream_export,
    time_range,
)
from aggregator.export.limits import check_size
from aggregator.report import REPORT_CSP, report_html
from dashboard.deps import get_service, known_camera
from dashboard.routes.people import PERSON_ID
from dashboard.service import Service
from deepfer_core.settings import ExportSettings

log = logging.getLogger(__name__)
router = APIRouter(tags=["export"])
Format = Literal["csv", "parquet", "jsonl"]
Interval = Literal["point", "minute", "hour", "day"]
DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
FILE_ANSWER: dict[int | str, dict[str, Any]] = {
               200: {"description": "The file, streamed (Content-Disposition: attachment)",
                     "content": {"text/csv": {"schema": {"type": "string"}},
                                 "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
                                 "application/x-ndjson": {"schema": {"type": "string"}}}}}
HTML_ANSWER: dict[int | str, dict[str, Any]] = {200: {"description": "One self-contained HTML page",
                     "content": {"text/html": {"schema": {"type": "string"}}}}}
FORMAT_DOC = "csv, parquet or jsonl (default: export.default_format)."
INTERVAL_DOC = "point: one row per stored point; minute, hour or day: one row per roll-up bucket with points."
START_DOC = "Unix seconds (default: end - export.default_range_s)."
END_DOC = "Unix seconds, exclusive (default: now). At most export.max_range_s after start."


def lower_priority(nice: int) -> None:
    """An export thread runs at a lower CPU priority than the pipeline (Linux: nice applies per thread)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority
        pass


class ExportGate:
    """At most ``export.max_concurrent`` exports and reports at once (more: 503 with Retry-After), encoding in
    their own threads at a lower priority, so downloads do not take the cameras' cores."""

    def __init__(self, options: ExportSettings):
        self.options = options
        self.running = 0
        self.pool = ThreadPoolExecutor(options.max_concurrent, thread_name_prefix="export",
                                       initializer=lower_priority, initargs=(options.nice,))

    def enter(self) -> Callable[[], None]:
        """Take a place (``HTTPException`` 503 when none is free); the function returned gives it back, once."""
        if self.running >= self.options.max_concurrent:
            raise HTTPException(503, f"{self.running} exports or reports are running (export.max_concurrent); try "
                                     f"again in {self.options.retry_after_s} s",
                                headers={"Retry-After": str(self.options.retry_after_s)})
        self.running += 1
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                self.running -= 1

        return leave

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


def export_gate(service: Service) -> ExportGate:
    gate = getattr(service, "export_gate", None)
    if gate is None:
        gate = ExportGate(service.settings.export)
        setattr(service, "export_gate", gate)  # noqa: B010 (one per running dashboard)
    return gate


def checked_range(service: Service, start: float | None, end: float | None) -> tuple[float, float]:
    options = service.settings.export
    try:
        return time_range(start, end, default_s=options.default_range_s, max_s=options.max_range_s)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


async def streamed(service: Service, query: ExportQuery, fmt: str, cameras: list[str]) -> StreamingResponse:
    """The export as a download. The first chunk is read before answering, so Redis down is a 503 and a refused
    query a 400; a failure later cuts the transfer short (the client sees an incomplete download)."""
    gate = export_gate(service)
    leave = gate.enter()
    try:
        await check_size(service.ts, query, cameras, service.settings.export)
        chunks = stream_export(service.ts, query, fmt, service.settings.export, cameras, encode_in=gate.run)
        first = await anext(chunks, b"")
    except ValueError as exc:  # over export.max_buckets / max_points / max_people
        leave()
        raise HTTPException(400, str(exc)) from None
    except BaseException:
        leave()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for data in chunks:
                yield data
        except (RedisError, OSError) as exc:
            log.warning("export %s cut short: Redis error %s", file_name(query.cameras, query, fmt),
                        exc.__class__.__name__)
            raise
        finally:
            leave()

    name = file_name(query.cameras, query, fmt)
    return StreamingResponse(body(), media_type=MEDIA_TYPES[fmt], background=BackgroundTask(leave),
                             headers={"Content-Disposition": f'attachment; filename="{name}"',
                                      "Cache-Control": "no-store"})


@router.get("/api/cameras/{camera_id}/export", response_model=None, responses=FILE_ANSWER,
            summary="One camera's stored points or roll-ups as CSV, Parquet or JSON lines (streamed)")
async def export_camera(
    camera_id: str = Depends(known_camera),
    format: Format | None = Query(None, description=FORMAT_DOC),
    interval: Interval = Query("point", description=INTERVAL_DOC),
    start: float | None = Query(None, ge=0, le=1e11, description=START_DOC),
    end: float | None = Query(None, ge=0, le=1e11, description=END_DOC),
    person: str | None = Query(None, pattern=PERSON_ID, description="Only this person's points (interval point)."),
    service: Service = Depends(get_service),
) -> StreamingResponse:
    lo, hi = checked_range(service, start, end)
    if person is not None:
        if interval != "point":
            raise HTTPException(400, "a person's export is by point (roll-ups are per camera)")
        if not await service.ts.person_exists(camera_id, person):
            raise HTTPException(404, f"unknown person {person!r} on camera {camera_id!r}")
    query = ExportQuery((camera_id,), lo, hi, interval, person)
    return await streamed(service, query, format or service.settings.export.default_format, [camera_id])


@router.get("/api/export", response_model=None, responses=FILE_ANSWER,
            summary="Every camera's points, or the overall roll-ups, as CSV, Parquet or JSON lines (streamed)")
async def export_all(
    format: Format | None = Query(None, description=FORMAT_DOC),
    interval: Interval = Query("point", description=INTERVAL_DOC),
    start: float | None = Query(None, ge=0, le=1e11, description=START_DOC),
    end: float | None = Query(None, ge=0, le=1e11, description=END_DOC),
    by_camera: bool = Query(False, description="Roll-ups: a row per camera and bucket instead of the overall "
                                               "buckets (camera 'all')."),
    service: Service = Depends(get_service),
) -> StreamingResponse:
    lo, hi = checked_range(service, start, end)
    cameras = sorted(c for c, _ in await service.ts.cameras())
    query = ExportQuery(None, lo, hi, interval, by_camera=by_camera)
    return await streamed(service, query, format or service.settings.export.default_format, cameras)


async def report_page(service: Service, cameras: list[str] | None, day: str | None, start: float | None,
                      end: float | None) -> HTMLResponse:
    """``cameras`` None: every camera with data; else these (known to the dashboard; no data: an empty report)."""
    if day is not None:
        if start is not None or end is not None:
            raise HTTPException(400, "give day or start/end, not both")
        try:
            lo, hi = day_range(day)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
    else:
        lo, hi = checked_range(service, start, end)
    leave = export_gate(service).enter()
    try:
        page = await report_html(service.ts, cameras, lo, hi, service.settings.export.max_people, in_thread=True,
                                 check=False)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    finally:
        leave()
    return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store"})


@router.get("/api/cameras/{camera_id}/report", response_model=None, responses=HTML_ANSWER,
            summary="One camera's report (visitors, emotion mix, satisfaction, dwell) as a self-contained HTML page")
async def camera_report(
    camera_id: str = Depends(known_camera),
    day: str | None = Query(None, pattern=DAY, description="A UTC day, YYYY-MM-DD (instead of start/end)."),
    start: float | None = Query(None, ge=0, le=1e11, description=START_DOC),
    end: float | None = Query(None, ge=0, le=1e11, description=END_DOC),
    service: Service = Depends(get_service),
) -> HTMLResponse:
    return await report_page(service, [camera_id], day, start, end)


@router.get("/api/report", response_model=None, responses=HTML_ANSWER,
            summary="Every camera's report as a self-contained HTML page")
async def all_report(
    day: str | None = Query(None, pattern=DAY, description="A UTC day, YYYY-MM-DD (instead of start/end)."),
    start: float | None = Query(None, ge=0, le=1e11, description=START_DOC),
    end: float | None = Query(None, ge=0, le=1e11, description=END_DOC),
    service: Service = Depends(get_service),
) -> HTMLResponse:
    return await report_page(service, None, day, start, end)
