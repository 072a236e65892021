"""Benchmarks of live load beyond one process: Ray workers and WebRTC visitors."""

from __future__ import annotations

import typer

from deepfer.common import UserError, int_list, say, settings_from, user_errors, write_json
from deepfer.options import Device, JsonOut, Weights

app = typer.Typer()


@app.command()
@user_errors
def cluster(
    ctx: typer.Context,
    *,
    source: str = typer.Option(..., "--source", help="A video file, played as live cameras at its own frame rate."),
    cameras: int = typer.Option(2, min=1, help="Cameras (copies of the file) in each configuration."),
    workers: str = typer.Option(
        "1,2", help="Comma-separated worker counts; the machine's CPUs are split between them."
    ),
    seconds: float = typer.Option(10.0, min=1, help="Measuring window, after 3 s of warm-up."),
    json_out: JsonOut,
    detect_every: int | None = typer.Option(None, min=1),
) -> None:
    """The same cameras on 1..N Ray workers of a local test cluster: fps, drops, latency, and Redis load per camera."""
    from deepfer_bench.ray_scaling import bench_cluster
    from streamer.media import probe_video

    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("bench cluster needs Ray: pip install 'deepfer[cluster]'") from None
    probe_video(source)
    counts = int_list(workers, "--workers")
    settings = settings_from(ctx, detector=dict(detect_every=detect_every))
    say(f"benchmarking {cameras} camera(s) of {source} on {counts} worker(s), {seconds:g} s each")
    result = bench_cluster(settings, source, cameras, counts, seconds)
    write_json(json_out, result)
    for run in result["runs"]:
        say(
            f"{run['workers']} worker(s) x {run['cpus_per_worker']} CPU: {run['total_fps']} fps in all, "
            f"per camera {[c['fps'] for c in run['per_camera']]} fps, p95 "
            f"{[c['latency_p95_ms'] for c in run['per_camera']]} ms; Redis per camera {run['redis']}"
        )


@app.command()
@user_errors
def webrtc(
    ctx: typer.Context,
    *,
    source: str = typer.Option(
        ..., "--source", help="A video file each scripted visitor sends as its camera (looped)."
    ),
    visitors: int = typer.Option(1, min=1, help="Concurrent WebRTC visitors."),
    seconds: float = typer.Option(20.0, min=1, help="Measured time, after a few seconds of warm-up."),
    json_out: JsonOut,
    weights: Weights = None,
    detect_every: int | None = typer.Option(None, min=1),
    device: Device = None,
) -> None:
    """Live-demo path over loopback WebRTC: arrival-to-send latency p50/p95, fps in/processed/back, drops, CPU."""
    from deepfer_bench.webrtc import bench_webrtc
    from streamer.media import probe_video

    probe_video(source)
    settings = settings_from(
        ctx, classifier=dict(weights=weights, device=device), detector=dict(detect_every=detect_every, device=device)
    )
    result = bench_webrtc(settings, source, visitors, seconds, say)
    write_json(json_out, result)
    t = result["total"]
    say(
        f"{visitors} visitor(s): {t['processed_fps_mean']} processed fps each, arrival-to-send latency "
        f"p50 {t['latency_p50_ms_max']} ms p95 {t['latency_p95_ms_max']} ms"
    )
