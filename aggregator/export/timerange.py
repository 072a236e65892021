"""The time ranges users give (unix seconds, ISO 8601, a duration, a day) as [start, end) unix seconds."""

from __future__ import annotations

import math
import time
from datetime import UTC, date, datetime
from typing import Any


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
        text = day
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"a day is YYYY-MM-DD, got {text[:40]!r}") from None
    start = to_unix(day)
    return start, start + 86400.0


def iso(t: float) -> str:
    """``2026-05-01T09:30:00Z`` (UTC, whole seconds)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
