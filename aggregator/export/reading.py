"""The query's rows out of Redis as pandas DataFrames in chunks, in bounded memory.

Points: a k-way merge of the people's streams, oldest first across people and cameras, each read with
``XRANGE ... COUNT`` and opened only when the merge reaches the person's first point, so memory grows with
``export.chunk_points`` and the people in view at once, not with the range. Roll-ups: bucket windows of at most
``chunk_points`` rows.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aggregator import analytics
from aggregator.export.query import (
    ALL_CAMERAS,
    BUCKET_COLUMNS,
    POINT_COLUMNS,
    RAW,
    ExportQuery,
    arrow_schema,
    check_cameras,
)
from aggregator.timeseries import INTERVAL_S, MAX_BUCKETS, EmotionTimeSeries, Interval, visitor_number
from deepfer_core.settings import ExportSettings
from deepfer_core.types import EMOTIONS

if TYPE_CHECKING:
    import pandas as pd


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
    visitor: int
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
            pids = cast(list[str], await ts.r.zrangebyscore(ts.keys.people(cam), query.start, "+inf"))
        if len(out) + len(pids) > max_people:
            raise ValueError(f"more than {max_people} people in this range (export.max_people): ask a shorter range")
        for i in range(0, len(pids), 1000):
            batch = pids[i:i + 1000]
            pipe = ts.r.pipeline(transaction=False)
            for pid in batch:
                pipe.hmget(ts.keys.person(cam, pid), "first_seen", "track_id", "visitor")
            for pid, (first, track, visitor) in zip(batch, await pipe.execute()):
                if first is None or float(first) >= query.end:
                    continue  # expired meanwhile, or first seen after the range
                number = visitor_number(pid, {"visitor": visitor or "", "track_id": track or ""})
                out.append(_Stream(int(float(first) * 1000), cam, pid, int(track or 0), number,
                                   ts.keys.series(cam, pid)))
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
    texts = [r[5].get(name, "") for r in rows]
    values = ",".join(texts).split(",") if rows else []
    if len(values) == n * len(rows):
        try:
            return np.array(values, dtype=np.float64).reshape(len(rows), n)
        except ValueError:
            pass
    return np.array([_floats7(text) for text in texts], dtype=np.float64).reshape(len(rows), n)


def _point_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (ms, camera, person, track, visitor, fields) -> the export's DataFrame."""
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
        "visitor": np.fromiter((r[4] for r in rows), dtype=np.int64, count=len(rows)),
        "label": [r[5].get("label", "") for r in rows],
        "confidence": _number(r[5].get("conf") for r in rows),
    }
    for i, e in enumerate(EMOTIONS):
        data[e] = sm[:, i]
    data["raw_label"] = [r[5].get("raw_label", "") for r in rows]
    for i, e in enumerate(RAW):
        data[e] = rw[:, i]
    return pd.DataFrame(data, columns=POINT_COLUMNS)


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


async def iter_point_frames(ts: EmotionTimeSeries, cameras: Sequence[str], query: ExportQuery,
                            options: ExportSettings, build_in: Callable[..., Any] = _inline
                            ) -> AsyncIterator[pd.DataFrame]:
    """The points of ``cameras`` in [start, end), oldest first, as DataFrames of at most ``chunk_points`` rows.
    ``build_in(fn, *args)``: where the DataFrames are built (a server's worker thread; inline by default)."""
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
        rows.append((ms, s.camera, s.person, s.track_id, s.visitor, fields))
        s.pos += 1
        if s.pos == len(s.entries):
            s.entries = []
            if not s.exhausted:
                await _fetch(ts, [s], lo_ms, hi_ms, per_person)
        if s.pos < len(s.entries):
            heapq.heappush(heap, (s.head_ms(), order, s))
            order += 1
        if len(rows) >= chunk:
            yield await build_in(_point_frame, rows)
            rows = []
    if rows:
        yield await build_in(_point_frame, rows)


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
    data["confident_share"] = np.array(
        [math.nan if r.get("confident_share") is None else r["confident_share"] for r in rows], dtype=np.float64)
    return pd.DataFrame(data, columns=BUCKET_COLUMNS)


async def iter_bucket_frames(ts: EmotionTimeSeries, cameras: Sequence[str], query: ExportQuery,
                             options: ExportSettings, build_in: Callable[..., Any] = _inline
                             ) -> AsyncIterator[pd.DataFrame]:
    """Roll-up buckets with points, oldest first (per camera, or combined into ``all``), in chunks of buckets."""
    interval = cast(Interval, query.interval)  # a roll-up interval: ExportQuery checked it
    size = INTERVAL_S[interval]
    window = size * max(1, min(MAX_BUCKETS, options.chunk_points // max(1, len(cameras) if query.by_camera else 1)))
    lo = query.start // size * size
    while lo < query.end:
        hi = min(lo + window, query.end)
        per_camera = [await ts.rollup(cam, interval, max(lo, query.start), hi) for cam in cameras]
        rows, names = [], []
        if query.by_camera:
            for i in range(len(per_camera[0]) if per_camera else 0):  # bucket by bucket, cameras in order
                for cam, buckets in zip(cameras, per_camera):
                    if buckets[i].points:
                        rows.append(analytics.from_bucket(buckets[i]))
                        names.append(cam)
        else:
            rows = [b for b in await build_in(analytics.combine, per_camera) if b["points"]]
            names = [ALL_CAMERAS] * len(rows)
        if rows:
            yield await build_in(_bucket_frame, rows, names)
        lo = hi


async def iter_frames(ts: EmotionTimeSeries, query: ExportQuery, options: ExportSettings,
                      cameras: list[str] | None = None, build_in: Callable[..., Any] = _inline
                      ) -> AsyncIterator[pd.DataFrame]:
    """The query's rows in DataFrame chunks (cameras checked first unless given); ``build_in``: see above."""
    cameras = await check_cameras(ts, query) if cameras is None else cameras
    source = iter_point_frames if query.interval == "point" else iter_bucket_frames
    async for frame in source(ts, cameras, query, options, build_in):
        yield frame


async def planned_rows(ts: EmotionTimeSeries, query: ExportQuery, options: ExportSettings,
                       cameras: Sequence[str]) -> int:
    """At least the rows the query will write, for a progress bar's total: the stored points of the people in range
    (exact unless a visit crosses an end of the range), or every bucket of the range (empty ones are skipped)."""
    if query.interval != "point":
        size = INTERVAL_S[query.interval]
        buckets = math.ceil((query.end - query.start // size * size) / size)
        return max(0, buckets) * (max(1, len(cameras)) if query.by_camera else 1)
    streams = await _people_in_range(ts, cameras, query, options.max_people)
    total = 0
    for i in range(0, len(streams), 1000):
        pipe = ts.r.pipeline(transaction=False)
        for s in streams[i:i + 1000]:
            pipe.xlen(s.key)
        total += sum(int(n) for n in await pipe.execute())
    return total


def empty_frame(query: ExportQuery) -> pd.DataFrame:
    """A DataFrame with the query's columns and dtypes and no rows."""
    return arrow_schema(query.columns).empty_table().to_pandas()
