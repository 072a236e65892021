"""``deepfer bench export``: peak memory of exporting N stored points, chunked, in each format, against reading them
all into one DataFrame first (the naive way).

A throwaway key prefix is filled with N points of one camera (``--people`` people, 5 points/s each, about ten in view
at once), written fast with pipelined commands straight into the key layout of ``aggregator.keys`` (series,
person hashes, people and camera sets; no roll-ups: this measures point exports). Each measured run is a fresh
Python process (``python -m deepfer_bench.export_speed --child MODE ...``) that reports its peak RSS (``VmHWM``) and
its RSS
after the imports, so runs do not inherit each other's memory. The keys are deleted afterwards, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MODES = ("csv", "parquet", "jsonl", "dataframe")
CAMERA = "bench"
POINTS_PER_S = 5.0


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return _status("VmRSS")


def peak_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across fork and exec)."""
    return _status("VmHWM")


# ----- filling Redis --------------------------------------------------------------------------------------------------


def fill(url: str, prefix: str, points: int, people: int, end: float) -> tuple[float, float]:
    """``points`` points of camera ``bench`` under ``prefix``, ending before ``end``; returns their [start, end)."""
    import redis

    from aggregator.keys import KeySchema
    from deepfer_core.types import EMOTIONS

    keys = KeySchema(prefix)
    client = redis.Redis.from_url(url)
    per = max(1, points // people)
    step_ms = int(1000 / POINTS_PER_S)
    stagger_ms = per * step_ms // 10  # a new person every tenth of a person's stay: about ten in view at once
    start_ms = int((end - 60) * 1000) - (people - 1) * stagger_ms - per * step_ms
    probs = ",".join(["0.1000"] * 3 + ["0.5000"] + ["0.1000"] * 2 + ["0.1000"])
    run = "bench"
    written = 0
    pipe = client.pipeline(transaction=False)
    for i in range(people):
        n = per if i < people - 1 else points - per * (people - 1)
        pid = f"{run}-{i + 1}"
        first = start_ms + i * stagger_ms
        series = keys.series(CAMERA, pid)
        for j in range(n):
            label = EMOTIONS[(i + j // 50) % len(EMOTIONS)]
            pipe.execute_command("XADD", series, f"{first + j * step_ms}-0", "label", label, "raw_label", label,
                                 "conf", "0.5000", "p", probs, "r", probs)
            written += 1
            if written % 5000 == 0:
                pipe.execute()
        last = first + (n - 1) * step_ms
        pipe.hset(keys.person(CAMERA, pid), mapping={"track_id": i + 1, "first_seen": first / 1000,
                                                     "last_seen": last / 1000, "label": "happy", "points": n})
        pipe.zadd(keys.people(CAMERA), {pid: last / 1000})
    pipe.zadd(keys.cameras(), {CAMERA: end})
    pipe.execute()
    return start_ms / 1000, end


def delete_prefix(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    batch = []
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


# ----- one measured run (in its own process) --------------------------------------------------------------------------


def child(mode: str, url: str, prefix: str, start: float, end: float, chunk: int, out: Path) -> dict[str, Any]:
    import pandas  # noqa: F401  (imported before the baseline: the growth is the export's own)
    import pyarrow.parquet  # noqa: F401

    from aggregator.export import ExportQuery, export_to_file, read_points
    from deepfer_core.settings import Settings

    settings = Settings(redis={"url": url, "key_prefix": prefix}, export={"chunk_points": chunk})
    baseline_rss, baseline_peak = rss_mb(), peak_mb()
    started = time.perf_counter()
    if mode == "dataframe":
        frame = read_points(url, CAMERA, start, end, settings=settings)
        rows, size = len(frame), int(frame.memory_usage(deep=True).sum())
    else:
        result = export_to_file(url, settings, ExportQuery((CAMERA,), start, end), mode, out)
        rows, size = result.rows, result.bytes
    seconds = time.perf_counter() - started
    return {"mode": mode, "rows": rows, "bytes": size, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds) if seconds else None,
            "rss_after_imports_mb": round(baseline_rss, 1), "peak_before_mb": round(baseline_peak, 1),
            "peak_rss_mb": round(peak_mb(), 1), "peak_growth_mb": round(peak_mb() - baseline_rss, 1)}


def run_child(mode: str, url: str, prefix: str, start: float, end: float, chunk: int, out: Path) -> dict[str, Any]:
    args = [sys.executable, "-m", "deepfer_bench.export_speed", "--child", mode, "--url", url, "--prefix", prefix,
            "--start", repr(start), "--end", repr(end), "--chunk", str(chunk), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"bench export child {mode} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_export(url: str, points: int, people: int, chunk: int, modes: Sequence[str], work_dir: Path,
                 say: Callable[[str], None] = print) -> dict[str, Any]:
    """Fill, measure each mode in a fresh process, delete the keys. Returns the JSON written by the CLI."""
    from deepfer_bench.machine import machine_info

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    if people < 1 or points < people:
        raise ValueError("need at least one person and one point per person")
    prefix = f"deepfer-bench-export-{uuid.uuid4().hex[:10]}"
    work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        t0 = time.perf_counter()
        start, end = fill(url, prefix, points, people, time.time())
        fill_s = time.perf_counter() - t0
        say(f"wrote {points} points of {people} people under {prefix} in {fill_s:.1f} s "
            f"({points / fill_s:,.0f} points/s, pipelined)")
        for mode in modes:
            out = work_dir / f"export.{'bin' if mode == 'dataframe' else mode}"
            r = run_child(mode, url, prefix, start, end + 1, chunk, out)
            out.unlink(missing_ok=True)
            results.append(r)
            say(f"{mode:>9}: {r['rows']} rows in {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB "
                f"({r['peak_growth_mb']:+} MB over {r['rss_after_imports_mb']} MB after imports)")
    finally:
        deleted = delete_prefix(url, prefix)
        say(f"deleted {deleted} keys under {prefix}")
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"benchmark": "export", "points": points, "people": people, "chunk_points": chunk,
            "fill_seconds": round(fill_s, 1), "results": results, "load_average": load,
            "machine": machine_info(), "note": "each mode in a fresh process; peak RSS = VmHWM"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one measured export run (used by deepfer bench export)")
    parser.add_argument("--child", choices=MODES, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--start", type=float, required=True)
    parser.add_argument("--end", type=float, required=True)
    parser.add_argument("--chunk", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args(argv)
    print(json.dumps(child(a.child, a.url, a.prefix, a.start, a.end, a.chunk, a.out)))


if __name__ == "__main__":
    main()
