"""Classifier throughput and latency per batch size: the numbers behind ``classifier.batch_size``."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import numpy as np

from bench.machine import machine_info
from classifier.data import IMAGE_SIZE
from classifier.inference import EmotionClassifier
from core.settings import Settings
from core.stats import latency_summary_ms


def time_calls(
    fn: Callable[[], object], seconds: float, min_calls: int, warmup: int, sync: Callable[[], None]
) -> list[float]:
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


def time_batches(
    clf: EmotionClassifier,
    batch_sizes: Sequence[int],
    seconds: float,
    min_calls: int = 3,
    warmup: int = 2,
    seed: int = 0,
) -> list[dict]:
    """faces/s and per-call latency of ``predict_faces`` (host uint8 in, host probabilities out) per batch size."""
    import torch

    rng = np.random.default_rng(seed)
    sync = torch.cuda.synchronize if clf.device.type == "cuda" else (lambda: None)
    rows = []
    for bs in batch_sizes:
        faces = rng.integers(0, 256, size=(bs, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        times = time_calls(functools.partial(clf.predict_faces, faces, batch_size=bs), seconds, min_calls, warmup, sync)
        rows.append(
            {
                "device": str(clf.device),
                "batch_size": bs,
                "calls": len(times),
                "faces_per_s": bs * len(times) / sum(times),
                "latency_ms": latency_summary_ms(times),
            }
        )
    return rows


def bench_classifier(
    settings: Settings,
    batch_sizes: Sequence[int],
    seconds: float,
    devices: Sequence[str],
    say: Callable[[str], None] = print,
) -> dict:
    """``deepfer bench classifier``: every batch size on every device named."""
    cs = settings.classifier
    rows, clf = [], None
    for device in devices:
        clf = EmotionClassifier.load(cs.weights, device, tta=cs.tta)
        say(f"benchmarking {clf.name} ({clf.path}) on {device}, batch sizes {list(batch_sizes)}, {seconds:g} s each")
        rows += time_batches(clf, batch_sizes, seconds)
    return {
        "benchmark": "classifier",
        "model": clf.name,
        "weights": str(clf.path),
        "tta": cs.tta,
        "seconds_per_point": seconds,
        "machine": machine_info(),
        "results": rows,
    }
