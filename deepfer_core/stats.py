"""Percentiles of latency samples, the same way in every counter and benchmark."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def percentile_ms(seconds: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile of durations in seconds, in milliseconds to 0.1; None without samples."""
    values = np.fromiter(seconds, dtype=np.float64)
    return round(float(np.percentile(values, q)) * 1000, 1) if values.size else None


def latency_summary_ms(seconds: Iterable[float]) -> dict[str, float]:
    """mean, p50, p95, min and max of durations in seconds, in milliseconds."""
    ms = np.fromiter(seconds, dtype=np.float64) * 1000
    if not ms.size:
        return {}
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "min": float(ms.min()), "max": float(ms.max())}
