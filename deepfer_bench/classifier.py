"""EmotionModel throughput and latency per batch size: the numbers behind ``classifier.batch_size``.

Several classifiers (a PyTorch checkpoint and its ONNX exports, say) are timed in interleaved rounds:
each round runs every classifier at every batch size for a slice of the time, so load from other work on a
shared machine falls on all of them alike, and the per-round ratios compare them fairly.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from classifier.data import IMAGE_SIZE
from classifier.inference import WeightsError
from classifier.loading import build_classifier
from deepfer_bench.machine import machine_info
from deepfer_core.protocols import EmotionModel
from deepfer_core.settings import Settings
from deepfer_core.stats import latency_summary_ms


def time_calls(fn: Callable[[], object], seconds: float, min_calls: int, warmup: int) -> list[float]:
    """Wall time of each call of ``fn`` after ``warmup`` calls, until ``seconds`` passed and ``min_calls`` were made.

    ``fn`` returns host arrays, so each call has finished on the device when it returns.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def describe(clf: EmotionModel) -> dict:
    """Which classifier a row is about: weights file, its size, what runs it and at which precision."""
    weights = getattr(clf, "path", None)  # the file it was loaded from, when there is one
    path = Path(weights) if weights else None
    members = getattr(clf, "members", None)
    if members is not None:  # an ensemble: its members' backends and precisions, their files' size in all
        rows = [describe(m) for m in members]
        return {"weights": str(path) if path else None, "model": clf.name,
                "backend": "+".join(sorted({r["backend"] for r in rows})),
                "precision": "+".join(sorted({r["precision"] for r in rows})),
                "file_bytes": sum(r["file_bytes"] or 0 for r in rows), "device": str(clf.device),
                "members": len(rows)}
    meta = getattr(clf, "meta", None)
    return {"weights": str(path) if path else None, "model": clf.name,
            "backend": "onnxruntime" if meta is not None else "pytorch",
            "precision": meta.precision if meta is not None else "fp32",
            "file_bytes": path.stat().st_size if path and path.is_file() else None, "device": str(clf.device)}


def bench_classifiers(clfs: Sequence[EmotionModel], batch_sizes: Sequence[int], seconds: float, rounds: int = 1,
                      min_calls: int = 3, warmup: int = 2, seed: int = 0) -> list[dict]:
    """faces/s and per-call latency of ``predict_faces`` (host uint8 in, host probabilities out) per classifier
    and batch size; ``seconds`` and ``min_calls`` per point in all, split over ``rounds`` interleaved rounds."""
    rng = np.random.default_rng(seed)
    per_round_calls = max(1, -(-min_calls // rounds))  # at least min_calls in all
    faces = {bs: rng.integers(0, 256, size=(bs, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8) for bs in batch_sizes}
    times: dict[tuple[int, int], list[list[float]]] = {(i, bs): [] for i in range(len(clfs)) for bs in batch_sizes}
    for _ in range(rounds):
        for i, clf in enumerate(clfs):
            for bs in batch_sizes:
                call = functools.partial(clf.predict_faces, faces[bs], batch_size=bs)
                times[i, bs].append(time_calls(call, seconds / rounds, per_round_calls, warmup))
    rows = []
    for i, clf in enumerate(clfs):
        for bs in batch_sizes:
            per_round = [bs * len(t) / sum(t) for t in times[i, bs]]
            flat = [s for t in times[i, bs] for s in t]
            rows.append(
                {
                    **describe(clf),
                    "batch_size": bs,
                    "calls": len(flat),
                    "faces_per_s": bs * len(flat) / sum(flat),
                    "faces_per_s_rounds": [round(v, 1) for v in per_round],
                    "faces_per_s_median": float(np.median(per_round)),
                    "faces_per_s_best": max(per_round),
                    "latency_ms": latency_summary_ms(flat),
                }
            )
    return rows


def speedups(rows: Sequence[dict]) -> list[dict]:
    """Each classifier against the first one, per device and batch size: the ratio of overall faces/s and the
    median of the per-round ratios (both ran in the same round, under the same outside load)."""
    out = []
    base: dict[tuple[str, int], dict] = {}
    for r in rows:
        base.setdefault((r["device"], r["batch_size"]), r)
    for r in rows:
        b = base[r["device"], r["batch_size"]]
        if r is b:
            continue
        paired = [x / y for x, y in zip(r["faces_per_s_rounds"], b["faces_per_s_rounds"])]
        out.append(
            {
                "weights": r["weights"],
                "against": b["weights"],
                "device": r["device"],
                "batch_size": r["batch_size"],
                "ratio": round(r["faces_per_s"] / b["faces_per_s"], 3),
                "ratio_median_of_rounds": round(float(np.median(paired)), 3),
                "ratio_rounds": [round(v, 3) for v in paired],
            }
        )
    return out


def bench_classifier(
    settings: Settings,
    specs: Sequence[str],
    batch_sizes: Sequence[int],
    seconds: float,
    devices: Sequence[str],
    rounds: int = 1,
    threads: int | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    """``deepfer bench classifier``: every weights file on every device; with several, each one's speed-up over
    the first. Every file is loaded (and so checked) before any timing starts."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    clfs = []
    for spec in specs:
        for device in devices:
            try:
                clfs.append(build_classifier(settings.classifier.model_copy(update={"weights": spec}), device))
            except WeightsError as exc:
                if len(devices) == 1 or device != "cuda" or "CUDA provider" not in str(exc):
                    raise
                say(f"skipping {spec} on cuda: {exc}")
    say(
        f"benchmarking {', '.join(f'{c.name} ({c.path}) on {c.device}' for c in clfs)}; batch sizes "
        f"{list(batch_sizes)}, {seconds:g} s each in {rounds} round(s)"
    )
    rows = bench_classifiers(clfs, batch_sizes, seconds, rounds)
    return {
        "benchmark": "classifier",
        "model": clfs[0].name,
        "weights": str(clfs[0].path),
        "tta": settings.classifier.tta,
        "seconds_per_point": seconds,
        "rounds": rounds,
        "threads": threads,
        "onnx_threads": settings.classifier.onnx_threads,
        "machine": machine_info(),
        "results": rows,
        "speedups": speedups(rows),
    }
