"""Emotion mix, unique people, dwell time and the satisfaction indicator over roll-up buckets.

Satisfaction of a set of points (one point = one person at one sampled moment, ``redis.points_per_s``):
``(happy + surprise - angry - disgust - fear - sad) / all points`` (neutral counts only in the denominator),
from -1 (everyone negative) to +1 (everyone positive); ``None`` when there are no points.

Only points with an emotion enter the mix and satisfaction: an ``uncertain`` point (a face too small or too unsure
to read, issue 32) counts in ``points``, people and dwell time, and ``confident_share`` says how many points had an
emotion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aggregator.timeseries import RollupBucket
from deepfer_core.types import EMOTIONS

POSITIVE = ("happy", "surprise")
NEGATIVE = ("angry", "disgust", "fear", "sad")


def satisfaction(emotion_points: dict[str, int]) -> float | None:
    total = sum(emotion_points.values())
    if not total:
        return None
    pos = sum(emotion_points.get(e, 0) for e in POSITIVE)
    neg = sum(emotion_points.get(e, 0) for e in NEGATIVE)
    return round((pos - neg) / total, 4)


def mix(emotion_points: dict[str, int]) -> dict[str, float]:
    total = sum(emotion_points.values())
    return {e: round(emotion_points.get(e, 0) / total, 4) if total else 0.0 for e in EMOTIONS}


def confident_share(emotion_points: dict[str, int], points: int) -> float | None:
    """Share of ``points`` whose face had a confident emotion (the rest were ``uncertain``); None without points."""
    return round(min(1.0, sum(emotion_points.get(e, 0) for e in EMOTIONS) / points), 4) if points else None


def bucket_dict(
    start: float, interval_s: int, points: int, counts: dict[str, int], people: int, dwell: float
) -> dict[str, Any]:
    return {
        "start": start,
        "interval_s": interval_s,
        "points": points,
        "emotion_points": counts,
        "emotion_mix": mix(counts),
        "unique_people": people,
        "dwell_s": round(dwell, 3),
        "mean_dwell_s": round(dwell / people, 3) if people else 0.0,
        "satisfaction": satisfaction(counts),
        "confident_share": confident_share(counts, points),
    }


def from_bucket(b: RollupBucket) -> dict[str, Any]:
    return bucket_dict(b.start, b.interval_s, b.points, b.emotion_points, b.unique_people, b.dwell_s)


def combine(series: Iterable[list[RollupBucket]]) -> list[dict[str, Any]]:
    """Bucket-wise sum over cameras (people are per camera, so unique people add up)."""
    merged: dict[float, list] = {}
    for buckets in series:
        for b in buckets:
            m = merged.setdefault(b.start, [b.interval_s, 0, {e: 0 for e in EMOTIONS}, 0, 0.0])
            m[1] += b.points
            for e, n in b.emotion_points.items():
                m[2][e] += n
            m[3] += b.unique_people
            m[4] += b.dwell_s
    return [bucket_dict(start, *m) for start, m in sorted(merged.items())]


def totals(buckets: list[dict[str, Any]], unique_people: int) -> dict[str, Any]:
    counts = {e: sum(b["emotion_points"][e] for b in buckets) for e in EMOTIONS}
    dwell = sum(b["dwell_s"] for b in buckets)
    points = sum(b["points"] for b in buckets)
    return {
        "points": points,
        "emotion_points": counts,
        "emotion_mix": mix(counts),
        "unique_people": unique_people,
        "dwell_s": round(dwell, 3),
        "mean_dwell_s": round(dwell / unique_people, 3) if unique_people else 0.0,
        "satisfaction": satisfaction(counts),
        "confident_share": confident_share(counts, points),
    }
