"""Visits: who came when, for how long and in what mood, read from the per-person hashes a writer keeps in Redis.

One visit is one person id (``{run}-{track_id}``) on one camera, named ``Visitor N · camera`` after the person's
visitor number (the camera's counter when the person was first stored: it rises across runs, so two runs of a camera
never show the same visitor; ``aggregator.timeseries``): ``first_seen`` is when they came, ``time_in_view_s``
the sum of the seconds between their sampled points (``dwell_s`` of the hash, what the people table shows: a person
who leaves the frame and comes back under the same id is not counted while away), the mood is the emotion shown most
over the points that had a confident emotion (``uncertain`` points, issue 32, are left out), and satisfaction is
``aggregator.analytics.satisfaction`` over the same points.

A visit is in a time range when the person was in view at some time in it (seen on or after ``since``, first seen on
or before ``until``), as for the people routes. Newest (latest ``first_seen``) first.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import cast

from pydantic import BaseModel, ConfigDict, Field

from aggregator.analytics import satisfaction
from aggregator.timeseries import EmotionTimeSeries, visitor_number
from deepfer_core.types import EMOTIONS

PAGE = 200  # person ids read per round from a camera's people ZSET


def visitor_label(camera_id: str, number: int) -> str:
    """A name a manager can read: the person's visitor number and the camera, e.g. ``Visitor 12 · door``."""
    return f"Visitor {number} · {camera_id}"


class Visit(BaseModel):
    """One person's visit to one camera."""

    model_config = ConfigDict(frozen=True)

    camera_id: str
    person_id: str = Field(description="The stored id, '{run}-{track_id}' (the people routes use it).")
    visitor: str = Field(description="Readable label: 'Visitor {visitor_number} · {camera_id}'.")
    visitor_number: int = Field(description="The camera's visitor counter when the person was first stored: unique on "
                                            "the camera across runs and restarts (the track id for data stored "
                                            "before visitor numbers).")
    first_seen: float = Field(description="When they came, unix seconds.")
    last_seen: float = Field(description="Last seen, unix seconds.")
    time_in_view_s: float = Field(description="Seconds in view (sum of the gaps between sampled points), not the "
                                              "span first to last.")
    mood: str | None = Field(description="The emotion shown most over the confident points; null with none.")
    satisfaction: float | None = Field(description="-1..+1 over the confident points; null with none.")
    points: int = Field(description="Sampled points of this visit.")
    confident_points: int = Field(description="Of those, the points with a confident emotion.")


def visit_of(camera: str, person: str, h: dict[str, str]) -> Visit | None:
    """The visit of one person hash (None for a hash without ``first_seen``: expired meanwhile)."""
    if "first_seen" not in h:
        return None
    counts = {e: int(h.get(f"n:{e}", 0)) for e in EMOTIONS}
    confident = sum(counts.values())
    number = visitor_number(person, h)
    first = float(h["first_seen"])
    return Visit(camera_id=camera, person_id=person, visitor=visitor_label(camera, number), visitor_number=number,
                 first_seen=first, last_seen=float(h.get("last_seen", first)),
                 time_in_view_s=round(float(h.get("dwell_s", 0.0)), 3),
                 mood=max(EMOTIONS, key=lambda e: counts[e]) if confident else None,
                 satisfaction=satisfaction(counts), points=int(h.get("points", 0)), confident_points=confident)


async def camera_visits(ts: EmotionTimeSeries, camera: str, since: float, until: float, limit: int) -> list[Visit]:
    """The ``limit`` newest visits of ``camera`` in [since, until], newest first.

    People are read in pages of the people ZSET (latest ``last_seen`` first); since ``first_seen <= last_seen``,
    reading stops once a page's last ``last_seen`` is older than the ``limit``-th newest ``first_seen`` kept."""
    kept: list[tuple[float, str, Visit]] = []  # min-heap on first_seen: the limit newest
    offset = 0
    while True:
        rows = cast(list[tuple[str, float]], await ts.r.zrevrangebyscore(
            ts.keys.people(camera), "+inf", since, start=offset, num=PAGE, withscores=True))
        if not rows:
            break
        pipe = ts.r.pipeline(transaction=False)
        for pid, _ in rows:
            pipe.hgetall(ts.keys.person(camera, pid))
        for (pid, _), h in zip(rows, await pipe.execute()):
            visit = visit_of(camera, pid, h)
            if visit is None or visit.first_seen > until:
                continue
            item = (visit.first_seen, pid, visit)
            if len(kept) < limit:
                heapq.heappush(kept, item)
            elif item[:2] > kept[0][:2]:
                heapq.heapreplace(kept, item)
        offset += len(rows)
        if len(rows) < PAGE or (len(kept) >= limit and float(rows[-1][1]) < kept[0][0]):
            break
    return [v for _, _, v in sorted(kept, key=lambda i: i[:2], reverse=True)]


async def visits(ts: EmotionTimeSeries, cameras: Sequence[str], since: float, until: float,
                 limit: int) -> list[Visit]:
    """The ``limit`` newest visits over ``cameras`` in [since, until], newest first."""
    found: list[Visit] = []
    for camera in cameras:
        found.extend(await camera_visits(ts, camera, since, until, limit))
    found.sort(key=lambda v: (v.first_seen, v.camera_id, v.person_id), reverse=True)
    return found[:limit]
