"""The export's entry points: the file's bytes as a stream (HTTP), a file on disk (``deepfer export``), and the
Python API that answers one DataFrame (``read_points``, ``read_buckets``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator.export.encoders import FORMATS, Encoder
from aggregator.export.query import ALL_CAMERAS, ExportQuery, check_cameras
from aggregator.export.reading import empty_frame, iter_frames, planned_rows
from aggregator.export.timerange import time_range
from aggregator.timeseries import EmotionTimeSeries
from deepfer_core.settings import ExportSettings, Settings

if TYPE_CHECKING:
    import pandas as pd


def file_name(cameras: Sequence[str] | None, query: ExportQuery, fmt: str) -> str:
    """``deepfer-door-point-20260501T090000Z-20260501T180000Z.csv``: only [A-Za-z0-9_.-], safe in any header."""
    import re

    def safe(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:64] or "_"

    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ")

    who = ALL_CAMERAS if not cameras else "+".join(cameras) if len(cameras) <= 3 else f"{len(cameras)}-cameras"
    parts = [safe(who), *([safe(query.person)] if query.person else []), query.interval, stamp(query.start),
             stamp(query.end)]
    return f"deepfer-{'-'.join(parts)}.{fmt if fmt in FORMATS else 'bin'}"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    bytes: int
    seconds: float
    cameras: list[str]


async def stream_export(ts: EmotionTimeSeries, query: ExportQuery, fmt: str, options: ExportSettings,
                        cameras: list[str] | None = None,
                        encode_in: Callable[..., Any] | None = None,
                        on_rows: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """The export file's bytes, chunk by chunk. ``encode_in(fn, *args)``: where building the rows and encoding them
    run (e.g. ``asyncio.to_thread``, to keep a server's event loop free); inline by default. ``on_rows(n)``: after
    each chunk of ``n`` rows is encoded."""
    encoder = Encoder(fmt, query.columns)

    async def call(fn, *args):
        return await encode_in(fn, *args) if encode_in else fn(*args)

    async for frame in iter_frames(ts, query, options, cameras, call):
        data = await call(encoder.encode, frame)
        if on_rows is not None:
            on_rows(len(frame))
        if data:
            yield data
    tail = await call(encoder.finish)
    if tail:
        yield tail


@dataclass(frozen=True)
class ExportProgress:
    """Where a file export stands (the CLI's progress bar): rows written of at least ``planned``, bytes so far."""

    rows: int
    planned: int
    bytes: int


def export_to_file(url: str, settings: Settings, query: ExportQuery, fmt: str, out: Path,
                   on_progress: Callable[[ExportProgress], None] | None = None) -> ExportResult:
    """``deepfer export``: the query's rows into ``out`` (written next to it, then renamed: never half a file).
    ``on_progress`` once the rows are counted (``planned_rows``, only when asked: one more read of the people) and
    after each chunk."""
    out = Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"folder not found: {out.parent}")
    started = time.perf_counter()
    part = out.with_name(out.name + ".part")

    async def run() -> tuple[int, list[str]]:
        ts = EmotionTimeSeries.from_url(url, settings.redis)
        size, rows, planned = 0, 0, 0

        def count(n: int) -> None:
            nonlocal rows
            rows += n

        try:
            cameras = await check_cameras(ts, query)
            if on_progress is not None:
                planned = await planned_rows(ts, query, settings.export, cameras)
                on_progress(ExportProgress(0, planned, 0))
            with part.open("wb") as f:
                async for data in stream_export(ts, query, fmt, settings.export, cameras, on_rows=count):
                    f.write(data)
                    size += len(data)
                    if on_progress is not None:
                        on_progress(ExportProgress(rows, max(planned, rows), size))
            return size, cameras
        finally:
            await ts.aclose()

    try:
        size, cameras = asyncio.run(run())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.replace(out)
    rows = _count_rows(out, fmt)
    return ExportResult(out, rows, size, time.perf_counter() - started, cameras)


def _count_rows(path: Path, fmt: str) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return lines - 1 if fmt == "csv" else lines


def _read(url: str, query: ExportQuery, settings: Settings | None) -> pd.DataFrame:
    import pandas as pd

    settings = settings or Settings()

    async def run() -> list[pd.DataFrame]:
        ts = EmotionTimeSeries.from_url(url, settings.redis)
        try:
            return [f async for f in iter_frames(ts, query, settings.export)]
        finally:
            await ts.aclose()

    frames = asyncio.run(run())
    return pd.concat(frames, ignore_index=True) if frames else empty_frame(query)


def read_points(redis_url: str, camera: str | Sequence[str] | None, start: Any = None, end: Any = None, *,
                person: str | None = None, settings: Settings | None = None) -> pd.DataFrame:
    """Every stored point of ``camera`` (a camera id, several, or None for all) in [start, end) as one DataFrame,
    oldest first, with the columns of ``deepfer export --interval point`` (see the module docstring).

    ``start``/``end``: unix seconds, ``datetime`` (naive: UTC) or ISO 8601 text; by default the last
    ``export.default_range_s`` (a day). ``settings`` (default: ``Settings()``, so ``DEEPFER_REDIS__KEY_PREFIX`` and
    friends apply) gives the key prefix. Raises ``UnknownCamera`` (a ValueError) for a camera without data.
    The whole range is held in memory: for large ranges use ``deepfer export`` or ``iter_point_frames``."""
    settings = settings or Settings()
    lo, hi = time_range(start, end, default_s=settings.export.default_range_s)
    cams = None if camera is None else (camera,) if isinstance(camera, str) else tuple(camera)
    return _read(redis_url, ExportQuery(cams, lo, hi, "point", person), settings)


def read_buckets(redis_url: str, camera: str | Sequence[str] | None, start: Any = None, end: Any = None,
                 interval: str = "hour", *, by_camera: bool = True, settings: Settings | None = None) -> pd.DataFrame:
    """Roll-up buckets with points (``interval`` minute, hour or day) as one DataFrame, the columns of
    ``deepfer export --interval hour`` etc.; with several cameras, ``by_camera=False`` combines them (``all``)."""
    settings = settings or Settings()
    lo, hi = time_range(start, end, default_s=settings.export.default_range_s)
    cams = None if camera is None else (camera,) if isinstance(camera, str) else tuple(camera)
    if interval == "point":
        raise ValueError("read_buckets takes minute, hour or day; points: read_points")
    return _read(redis_url, ExportQuery(cams, lo, hi, interval, by_camera=by_camera), settings)
