"""Stored points and roll-ups out of Redis as pandas DataFrames, CSV, Parquet or JSON lines, in bounded memory.

Two kinds of rows:

- ``interval="point"``: one row per stored point (one person at one sampled moment), oldest first across people and
  cameras. Columns: ``time`` (UTC), ``t`` (unix seconds), ``camera``, ``person_id``, ``track_id``, ``label`` (the
  shown, smoothed label), ``confidence``, the 7 smoothed probabilities named after the emotions (``angry`` ...
  ``surprise``), ``raw_label`` and the 7 raw probabilities (``raw_angry`` ... ``raw_surprise``).
- ``interval="minute"|"hour"|"day"``: one row per roll-up bucket with points. Columns: ``time`` / ``t`` (bucket
  start), ``camera`` (``all`` for buckets combined over cameras), ``interval_s``, ``points``, ``n_{emotion}``
  (points per shown label), ``mix_{emotion}`` (their shares), ``unique_people``, ``dwell_s``, ``mean_dwell_s``,
  ``satisfaction`` (see ``aggregator.analytics``; empty with no points).

Points are read with ``XRANGE ... COUNT`` per person, a person's stream opened only when the merge reaches the
person's first point, so memory grows with ``export.chunk_points`` and the people in view at once, not with the
range; files are written chunk by chunk (``ParquetWriter`` row groups for Parquet).

Python API (the same DataFrames the files hold)::

    from aggregator.export import read_points, read_buckets
    df = read_points("redis://127.0.0.1:6379", "door", start="2026-05-01T09:00", end="2026-05-01T18:00")
    hourly = read_buckets("redis://127.0.0.1:6379", "door", start=..., end=..., interval="hour")
"""

from __future__ import annotations

import asyncio
import heapq
import io
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator import analytics
from aggregator.timeseries import INTERVAL_S, MAX_BUCKETS, EmotionTimeSeries
from core.settings import ExportSettings, Settings
from core.types import EMOTIONS

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("csv", "parquet", "jsonl")
INTERVALS = ("point", *INTERVAL_S)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
               "jsonl": "application/x-ndjson"}
ALL_CAMERAS = "all"
RAW = [f"raw_{e}" for e in EMOTIONS]
POINT_COLUMNS = ["time", "t", "camera", "person_id", "track_id", "label", "confidence", *EMOTIONS, "raw_label", *RAW]
BUCKET_COLUMNS = ["time", "t", "camera", "interval_s", "points", *(f"n_{e}" for e in EMOTIONS),
                  *(f"mix_{e}" for e in EMOTIONS), "unique_people", "dwell_s", "mean_dwell_s", "satisfaction"]


# ----- time ranges ----------------------------------------------------------------------------------------------------


def to_unix(value: float | int | str | datetime | date) -> float:
    """Unix seconds from a number, a ``datetime``/``date`` (naive: UTC), or text: unix seconds or ISO 8601
    (``2026-05-01``, ``2026-05-01T09:30``, ``...Z``, ``...+02:00``; without a zone: UTC). ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        t = float(value)
    elif isinstance(value, datetime):
        t = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    elif isinstance(value, date):
        t = datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    elif isinstance(value, str):
        text = value.strip()
        try:
            t = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("z", "Z"))
            except ValueError:
                raise ValueError(f"not a time: {value[:60]!r} (give unix seconds or ISO 8601, like "
                                 "2026-05-01T09:30 or 2026-05-01T09:30:00+02:00; no zone means UTC)") from None
            t = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    else:
        raise ValueError(f"not a time: {value!r}")
    if not math.isfinite(t) or not 0 <= t <= 1e11:
        raise ValueError(f"time out of range: {value!r}")
    return t


def time_range(start: Any = None, end: Any = None, since_s: float | None = None,
               default_s: float = 86400.0, max_s: float | None = None, now: float | None = None) -> tuple[float, float]:
    """[start, end) in unix seconds from what a user gave: ``since_s`` (the last N seconds) or start/end (any form
    ``to_unix`` takes; end defaults to now, start to end - ``default_s``). ValueError with the reason when the
    range is backwards, empty or longer than ``max_s``."""
    now = time.time() if now is None else now
    if since_s is not None:
        if start is not None or end is not None:
            raise ValueError("give either a duration (since) or start/end, not both")
        if not math.isfinite(since_s) or since_s <= 0:
            raise ValueError(f"the duration must be positive, got {since_s!r}")
        lo, hi = now - since_s, now
    else:
        hi = now if end is None else to_unix(end)
        lo = hi - default_s if start is None else to_unix(start)
    if lo >= hi:
        raise ValueError(f"the start ({iso(lo)}) must be before the end ({iso(hi)})")
    if max_s is not None and hi - lo > max_s:
        raise ValueError(f"the range is {(hi - lo) / 86400:.1f} days; at most {max_s / 86400:g} days per request "
                         "(export.max_range_s)")
    return max(lo, 0.0), hi


def day_range(day: str | date) -> tuple[float, float]:
    """The UTC day ``YYYY-MM-DD`` as [start, end) unix seconds."""
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day.strip())
        except ValueError:
            raise ValueError(f"a day is YYYY-MM-DD, got {day[:40]!r}") from None
    start = to_unix(day)
    return start, start + 86400.0


def iso(t: float) -> str:
    """``2026-05-01T09:30:00Z`` (UTC, whole seconds)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----- what to export -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportQuery:
    """Which rows: ``cameras`` (None: every camera with data), [start, end) in unix seconds, ``interval`` (``point``
    or a roll-up), one ``person`` (points of one camera only), and for roll-ups over several cameras whether each
    camera gets its own rows (``by_camera``) or the buckets are combined into ``camera = "all"``."""

    cameras: tuple[str, ...] | None
    start: float
    end: float
    interval: str = "point"
    person: str | None = None
    by_camera: bool = True

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, not {self.interval!r}")
        if self.person is not None and (self.interval != "point" or not self.cameras or len(self.cameras) != 1):
            raise ValueError("a person's export needs one camera and interval 'point' (roll-ups are per camera)")
        if not self.start < self.end:
            raise ValueError(f"the start ({iso(self.start)}) must be before the end ({iso(self.end)})")

    @property
    def columns(self) -> list[str]:
        return POINT_COLUMNS if self.interval == "point" else BUCKET_COLUMNS


class UnknownCamera(ValueError):
    """A camera without data in Redis (HTTP 404, CLI exit 2)."""


class UnknownPerson(ValueError):
    pass


async def check_cameras(ts: EmotionTimeSeries, query: ExportQuery) -> list[str]:
    """The cameras the query reads; UnknownCamera / UnknownPerson when one has no data."""
    known = [c for c, _ in await ts.cameras()]
    if query.cameras is None:
        return sorted(known)
    for cam in query.cameras:
        if cam not in known:
            raise UnknownCamera(f"no data for camera {cam!r} (cameras: {', '.join(sorted(known)) or 'none'})")
    if query.person is not None and not await ts.person_exists(query.cameras[0], query.person):
        raise UnknownPerson(f"unknown person {query.person!r} on camera {query.cameras[0]!r}")
    return list(query.cameras)


# ----- points: a k-way merge of the people's streams, read in chunks --------------------------------------------------


def _floats7(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")] if text else []
    except ValueError:
        values = []
    return values if len(values) == len(EMOTIONS) else [math.nan] * len(EMOTIONS)


@dataclass
class _Stream:
    """One person's series being read: the entries fetched and not yet emitted, and where to read on."""

    first_ms: int
    camera: str
    person: str
    track_id: int
    key: str
    entries: list = field(default_factory=list)
    pos: int = 0
    last_id: str = ""
    exhausted: bool = False

    def head_ms(self) -> int:
        return int(self.entries[self.pos][0].split("-", 1)[0])


async def _people_in_range(ts: EmotionTimeSeries, cameras: Sequence[str], query: ExportQuery,
                           max_people: int) -> list[_Stream]:
    """Everyone in view at some time in [start, end), ordered by their first point."""
    out: list[_Stream] = []
    for cam in cameras:
        if query.person is not None:
            pids = [query.person]
        else:
            pids = await ts.r.zrangebyscore(ts.keys.people(cam), query.start, "+inf")
        if len(out) + len(pids) > max_people:
            raise ValueError(f"more than {max_people} people in this range (export.max_people): ask a shorter range")
        for i in range(0, len(pids), 1000):
            batch = pids[i:i + 1000]
            pipe = ts.r.pipeline(transaction=False)
            for pid in batch:
                pipe.hmget(ts.keys.person(cam, pid), "first_seen", "track_id")
            for pid, (first, track) in zip(batch, await pipe.execute()):
                if first is None or float(first) >= query.end:
                    continue  # expired meanwhile, or first seen after the range
                out.append(_Stream(int(float(first) * 1000), cam, pid, int(track or 0), ts.keys.series(cam, pid)))
    out.sort(key=lambda s: (s.first_ms, s.camera, s.person))
    return out


async def _fetch(ts: EmotionTimeSeries, streams: Sequence[_Stream], lo_ms: int, hi_ms: int, count: int) -> None:
    """The next ``count`` entries of each stream (one pipelined round trip for all of them)."""
    pipe = ts.r.pipeline(transaction=False)
    for s in streams:
        pipe.xrange(s.key, min=f"({s.last_id}" if s.last_id else str(lo_ms), max=str(hi_ms), count=count)
    for s, rows in zip(streams, await pipe.execute()):
        s.entries, s.pos = rows, 0
        s.exhausted = len(rows) < count
        if rows:
            s.last_id = rows[-1][0]


def _number(texts) -> Any:
    import numpy as np

    texts = list(texts)
    try:
        return np.array([t if t is not None else "nan" for t in texts], dtype=np.float64)
    except ValueError:  # a value not written by DeepFER
        out = []
        for t in texts:
            try:
                out.append(float(t))
            except (TypeError, ValueError):
                out.append(math.nan)
        return np.array(out, dtype=np.float64)


def _matrix(rows: list[tuple], name: str):
    """The 7 probabilities of every row as an (n, 7) float array: one split and one conversion in C for the whole
    chunk; a row with a missing or malformed field (not written by DeepFER) becomes NaNs."""
    import numpy as np

    n = len(EMOTIONS)
    texts = [r[4].get(name, "") for r in rows]
    values = ",".join(texts).split(",") if rows else []
    if len(values) == n * len(rows):
        try:
            return np.array(values, dtype=np.float64).reshape(len(rows), n)
        except ValueError:
            pass
    return np.array([_floats7(text) for text in texts], dtype=np.float64).reshape(len(rows), n)


def _point_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (ms, camera, person, track, fields) -> the export's DataFrame."""
    import numpy as np
    import pandas as pd

    t = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    sm, rw = _matrix(rows, "p"), _matrix(rows, "r")
    data: dict[str, Any] = {
        "time": pd.to_datetime(t, unit="ms", utc=True),
        "t": t / 1000.0,
        "camera": [r[1] for r in rows],
        "person_id": [r[2] for r in rows],
        "track_id": np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows)),
        "label": [r[4].get("label", "") for r in rows],
        "confidence": _number(r[4].get("conf") for r in rows),
    }
    for i, e in enumerate(EMOTIONS):
        data[e] = sm[:, i]
    data["raw_label"] = [r[4].get("raw_label", "") for r in rows]
    for i, e in enumerate(RAW):
        data[e] = rw[:, i]
    return pd.DataFrame(data, columns=POINT_COLUMNS)


async def iter_point_frames(ts: EmotionTimeSeries, cameras: Sequence[str], query: ExportQuery,
                            options: ExportSettings) -> AsyncIterator[pd.DataFrame]:
    """The points of ``cameras`` in [start, end), oldest first, as DataFrames of at most ``chunk_points`` rows."""
    chunk = options.chunk_points
    per_person = max(100, chunk // 8)  # entries fetched per person and round trip
    lo_ms, hi_ms = math.ceil(query.start * 1000), math.ceil(query.end * 1000) - 1
    waiting = await _people_in_range(ts, cameras, query, options.max_people)
    waiting.reverse()  # pop() takes the earliest
    heap: list[tuple[int, int, _Stream]] = []
    order = 0  # tie-breaker: never compare streams
    rows: list[tuple] = []
    while heap or waiting:
        # open every person whose first point may come before the merge's next point
        opening = [] if heap else [waiting.pop()]
        while waiting and heap and waiting[-1].first_ms <= heap[0][0] and len(opening) < 1000:
            opening.append(waiting.pop())
        if opening:
            await _fetch(ts, opening, lo_ms, hi_ms, per_person)
            for s in opening:
                if s.entries:
                    heapq.heappush(heap, (s.head_ms(), order, s))
                    order += 1
            continue
        ms, _, s = heapq.heappop(heap)
        sid, fields = s.entries[s.pos]
        rows.append((ms, s.camera, s.person, s.track_id, fields))
        s.pos += 1
        if s.pos == len(s.entries):
            s.entries = []
            if not s.exhausted:
                await _fetch(ts, [s], lo_ms, hi_ms, per_person)
        if s.pos < len(s.entries):
            heapq.heappush(heap, (s.head_ms(), order, s))
            order += 1
        if len(rows) >= chunk:
            yield _point_frame(rows)
            rows = []
    if rows:
        yield _point_frame(rows)


# ----- roll-up buckets ------------------------------------------------------------------------------------------------


def _bucket_frame(rows: list[dict[str, Any]], cameras: list[str]) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    t = np.array([r["start"] for r in rows], dtype=np.float64)
    data: dict[str, Any] = {
        "time": pd.to_datetime((t * 1000).astype(np.int64), unit="ms", utc=True),
        "t": t,
        "camera": cameras,
        "interval_s": np.array([r["interval_s"] for r in rows], dtype=np.int64),
        "points": np.array([r["points"] for r in rows], dtype=np.int64),
    }
    for e in EMOTIONS:
        data[f"n_{e}"] = np.array([r["emotion_points"].get(e, 0) for r in rows], dtype=np.int64)
    for e in EMOTIONS:
        data[f"mix_{e}"] = np.array([r["emotion_mix"][e] for r in rows], dtype=np.float64)
    data["unique_people"] = np.array([r["unique_people"] for r in rows], dtype=np.int64)
    data["dwell_s"] = np.array([r["dwell_s"] for r in rows], dtype=np.float64)
    data["mean_dwell_s"] = np.array([r["mean_dwell_s"] for r in rows], dtype=np.float64)
    data["satisfaction"] = np.array([math.nan if r["satisfaction"] is None else r["satisfaction"] for r in rows],
                                    dtype=np.float64)
    return pd.DataFrame(data, columns=BUCKET_COLUMNS)


async def iter_bucket_frames(ts: EmotionTimeSeries, cameras: Sequence[str], query: ExportQuery,
                             options: ExportSettings) -> AsyncIterator[pd.DataFrame]:
    """Roll-up buckets with points, oldest first (per camera, or combined into ``all``), in chunks of buckets."""
    size = INTERVAL_S[query.interval]
    window = size * max(1, min(MAX_BUCKETS, options.chunk_points // max(1, len(cameras) if query.by_camera else 1)))
    lo = query.start // size * size
    while lo < query.end:
        hi = min(lo + window, query.end)
        per_camera = [await ts.rollup(cam, query.interval, max(lo, query.start), hi) for cam in cameras]
        rows, names = [], []
        if query.by_camera:
            for i in range(len(per_camera[0]) if per_camera else 0):  # bucket by bucket, cameras in order
                for cam, buckets in zip(cameras, per_camera):
                    if buckets[i].points:
                        rows.append(analytics.from_bucket(buckets[i]))
                        names.append(cam)
        else:
            rows = [b for b in analytics.combine(per_camera) if b["points"]]
            names = [ALL_CAMERAS] * len(rows)
        if rows:
            yield _bucket_frame(rows, names)
        lo = hi


async def iter_frames(ts: EmotionTimeSeries, query: ExportQuery, options: ExportSettings,
                      cameras: list[str] | None = None) -> AsyncIterator[pd.DataFrame]:
    """The query's rows in DataFrame chunks (cameras checked first unless given)."""
    cameras = await check_cameras(ts, query) if cameras is None else cameras
    source = iter_point_frames if query.interval == "point" else iter_bucket_frames
    async for frame in source(ts, cameras, query, options):
        yield frame


def empty_frame(query: ExportQuery) -> pd.DataFrame:
    """A DataFrame with the query's columns and dtypes and no rows."""
    return arrow_schema(query.columns).empty_table().to_pandas()


# ----- writers --------------------------------------------------------------------------------------------------------


def arrow_schema(columns: list[str]):
    """The Parquet schema of a kind of rows: fixed, so every chunk (and an empty export) has the same types."""
    import pyarrow as pa

    ints = {"track_id", "interval_s", "points", "unique_people", *(f"n_{e}" for e in EMOTIONS)}
    strings = {"camera", "person_id", "label", "raw_label"}

    def kind(name: str):
        if name == "time":
            return pa.timestamp("ms", tz="UTC")
        return pa.int64() if name in ints else pa.string() if name in strings else pa.float64()

    return pa.schema([pa.field(c, kind(c)) for c in columns])


class _Sink(io.RawIOBase):
    """A write-only file that hands back what was written since the last ``take()`` (Parquet into a stream)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        data = bytes(b)
        self.parts.append(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class Encoder:
    """DataFrame chunks -> bytes of one file format: ``encode(frame)`` for each chunk, then ``finish()``. An export
    with no rows is a header-only CSV, an empty JSONL file, or a Parquet file with the schema and no rows."""

    def __init__(self, fmt: str, columns: list[str]):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.fmt, self.columns = fmt, columns
        self.rows = 0
        self._header_done = False
        self._sink: _Sink | None = None
        self._writer = None
        if fmt == "parquet":
            import pyarrow.parquet as pq

            self.schema = arrow_schema(columns)
            self._sink = _Sink()
            self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd")

    def encode(self, frame: pd.DataFrame) -> bytes:
        self.rows += len(frame)
        if self.fmt == "csv":
            text = frame.to_csv(index=False, header=not self._header_done, date_format="%Y-%m-%dT%H:%M:%S.%fZ",
                                lineterminator="\n")
            self._header_done = True
            return text.encode()
        if self.fmt == "jsonl":
            if frame.empty:
                return b""
            text = frame.to_json(orient="records", lines=True, date_format="iso", date_unit="ms", double_precision=6)
            return (text if text.endswith("\n") else text + "\n").encode()
        import pyarrow as pa

        self._writer.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        return self._sink.take()

    def finish(self) -> bytes:
        if self.fmt == "csv":
            return b"" if self._header_done else (",".join(self.columns) + "\n").encode()
        if self.fmt == "parquet":
            self._writer.close()
            return self._sink.take()
        return b""


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


# ----- entry points ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    bytes: int
    seconds: float
    cameras: list[str]


async def stream_export(ts: EmotionTimeSeries, query: ExportQuery, fmt: str, options: ExportSettings,
                        cameras: list[str] | None = None,
                        encode_in: Callable[..., Any] | None = None) -> AsyncIterator[bytes]:
    """The export file's bytes, chunk by chunk. ``encode_in(fn, *args)``: where encoding runs (e.g.
    ``asyncio.to_thread``, to keep a server's event loop free); inline by default."""
    encoder = Encoder(fmt, query.columns)

    async def call(fn, *args):
        return await encode_in(fn, *args) if encode_in else fn(*args)

    async for frame in iter_frames(ts, query, options, cameras):
        data = await call(encoder.encode, frame)
        if data:
            yield data
    tail = await call(encoder.finish)
    if tail:
        yield tail


def export_to_file(url: str, settings: Settings, query: ExportQuery, fmt: str, out: Path) -> ExportResult:
    """``deepfer export``: the query's rows into ``out`` (written next to it, then renamed: never half a file)."""
    out = Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"folder not found: {out.parent}")
    started = time.perf_counter()
    part = out.with_name(out.name + ".part")

    async def run() -> tuple[int, list[str]]:
        ts = EmotionTimeSeries.from_url(url, settings.redis)
        size = 0
        try:
            cameras = await check_cameras(ts, query)
            with part.open("wb") as f:
                async for data in stream_export(ts, query, fmt, settings.export, cameras):
                    f.write(data)
                    size += len(data)
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
