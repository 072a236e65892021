"""Classifier throughput and latency per batch size: the numbers behind ``classifier.batch_size``."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import torch

from classifier.data import IMAGE_SIZE
from classifier.inference import EmotionClassifier


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "min": float(ms.min()), "max": float(ms.max())}


def time_calls(fn: Callable[[], object], seconds: float, min_calls: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    """Wall time of each call of ``fn`` after ``warmup`` calls, until ``seconds`` passed and ``min_calls`` were made."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def bench_classifier(clf: EmotionClassifier, batch_sizes: Sequence[int], seconds: float, min_calls: int = 3,
                     warmup: int = 2, seed: int = 0) -> list[dict]:
    """faces/s and per-call latency of ``predict_faces`` (host uint8 in, host probabilities out) per batch size."""
    rng = np.random.default_rng(seed)
    sync = torch.cuda.synchronize if clf.device.type == "cuda" else (lambda: None)
    rows = []
    for bs in batch_sizes:
        faces = rng.integers(0, 256, size=(bs, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        times = time_calls(lambda: clf.predict_faces(faces, batch_size=bs), seconds, min_calls, warmup, sync)
        rows.append({"device": str(clf.device), "batch_size": bs, "calls": len(times),
                     "faces_per_s": bs * len(times) / sum(times), "latency_ms": latency_stats(times)})
    return rows
