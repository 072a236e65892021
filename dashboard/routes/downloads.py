"""Downloads: a camera's (or every camera's) points or roll-ups as CSV, Parquet or JSON lines, streamed in chunks;
and the report of a day or range as one HTML page (inline SVG, no script, served with a CSP of its own)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, StreamingResponse
from redis.exceptions import RedisError

from aggregator.export import (
    MEDIA_TYPES,
    ExportQuery,
    day_range,
    file_name,
    stream_export,
    time_range,
)
from aggregator.report import REPORT_CSP, report_html
from dashboard.deps import get_service, known_camera
from dashboard.routes.people import PERSON_ID
from dashboard.service import Service

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


def checked_range(service: Service, start: float | None, end: float | None) -> tuple[float, float]:
    options = service.settings.export
    try:
        return time_range(start, end, default_s=options.default_range_s, max_s=options.max_range_s)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


async def streamed(service: Service, query: ExportQuery, fmt: str, cameras: list[str]) -> StreamingResponse:
    """The export as a download. The first chunk is read before answering, so Redis down is a 503 and a refused
    query a 400; a failure later cuts the transfer short (the client sees an incomplete download)."""
    chunks = stream_export(service.ts, query, fmt, service.settings.export, cameras, encode_in=asyncio.to_thread)
    try:
        first = await anext(chunks, b"")
    except ValueError as exc:  # e.g. more people than export.max_people
        raise HTTPException(400, str(exc)) from None

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        try:
            async for data in chunks:
                yield data
        except (RedisError, OSError) as exc:
            log.warning("export %s cut short: Redis error %s", file_name(query.cameras, query, fmt),
                        exc.__class__.__name__)
            raise

    name = file_name(query.cameras, query, fmt)
    return StreamingResponse(body(), media_type=MEDIA_TYPES[fmt],
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
    try:
        page = await report_html(service.ts, cameras, lo, hi, service.settings.export.max_people, in_thread=True,
                                 check=False)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
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
