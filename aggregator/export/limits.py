"""How big an HTTP export would be, known before any row is read: roll-up buckets counted from the range, points
from the roll-ups (which count every stored point; the buckets at the edges count whole), so a request over
``export.max_buckets`` / ``max_points`` is refused at once instead of keeping Redis and the server's cores busy for
seconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aggregator.export.query import ExportQuery
from aggregator.timeseries import INTERVAL_S, MAX_BUCKETS, Interval
from deepfer_core.settings import ExportSettings

if TYPE_CHECKING:
    from aggregator.timeseries import EmotionTimeSeries


class ExportTooLarge(ValueError):
    """The export would read more than the HTTP limits allow; the message says how much and what to ask instead."""


def buckets_read(query: ExportQuery, cameras: Sequence[str]) -> int:
    """Roll-up buckets the query reads: every bucket of the range, for each camera (combined ones too)."""
    size = INTERVAL_S[query.interval]  # type: ignore[index]
    first = query.start // size * size
    return math.ceil((query.end - first) / size) * max(1, len(cameras))


async def points_in_range(ts: EmotionTimeSeries, query: ExportQuery, cameras: Sequence[str]) -> int:
    """Stored points in the range, from the minute roll-ups (hour or day ones beyond two weeks or 2 years), the
    buckets at the edges counted whole (a slight over-estimate); one person: their series' length (likewise)."""
    if query.person is not None:
        return int(await ts.r.xlen(ts.keys.series(cameras[0], query.person)))
    span = query.end - query.start
    interval: Interval = "minute" if span / 60 < MAX_BUCKETS else "hour" if span / 3600 < MAX_BUCKETS else "day"
    total = 0
    for cam in cameras:
        for bucket in await ts.rollup(cam, interval, query.start, query.end):
            total += int(bucket.points)
    return total


async def check_size(ts: EmotionTimeSeries, query: ExportQuery, cameras: Sequence[str],
                     options: ExportSettings) -> None:
    """``ExportTooLarge`` when the query is over ``options.max_buckets`` (roll-ups) or ``max_points`` (points)."""
    days = (query.end - query.start) / 86400
    if query.interval != "point":
        n = buckets_read(query, cameras)
        if n > options.max_buckets:
            raise ExportTooLarge(
                f"this export reads {n} {query.interval} buckets ({days:.1f} days x {max(1, len(cameras))} "
                f"camera(s)); at most {options.max_buckets} per request (export.max_buckets): ask a longer interval, "
                "a shorter range or one camera")
        return
    n = await points_in_range(ts, query, cameras)
    if n > options.max_points:
        raise ExportTooLarge(f"this export holds about {n} points ({days:.1f} days); at most {options.max_points} per "
                             "request (export.max_points): ask a shorter range, one camera, or a roll-up interval "
                             "(the CLI, deepfer export, has no limit)")
