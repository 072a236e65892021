"""Benchmarks of what is kept: export memory, recall against stock MTCNN, label stability of tracking; and the clips
the benchmarks run on."""

from __future__ import annotations

from pathlib import Path

import typer

from deepfer.common import (
    UserError,
    float_list,
    redis_errors_as_user_errors,
    say,
    settings_from,
    user_errors,
    write_json,
)
from deepfer.options import DetectEvery, Detector, Device, JsonOut, RedisUrl, Weights

app = typer.Typer()


@app.command()
@user_errors
def export(
    ctx: typer.Context,
    *,
    json_out: JsonOut = Path("deepfer_bench/results/export_memory.json"),
    points: int = typer.Option(1_000_000, min=1, help="Points written under a throwaway key prefix (deleted after)."),
    people: int = typer.Option(1000, min=1, help="People they belong to (about ten in view at once)."),
    chunk: int | None = typer.Option(None, min=100, help="Rows per chunk (default: export.chunk_points)."),
    modes: str = typer.Option("csv,parquet,jsonl,dataframe", help="Exports to measure; dataframe = read all first."),
    redis_url: RedisUrl = None,
) -> None:
    """Peak memory (RSS) and speed of exporting N stored points in each format, each in a fresh process, against
    reading them all into one DataFrame."""
    import tempfile

    from aggregator.embedded_redis import redis_for
    from deepfer_bench.export_speed import bench_export

    settings = settings_from(ctx, redis=dict(url=redis_url), export=dict(chunk_points=chunk))
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    with redis_for(settings) as url, redis_errors_as_user_errors(url), tempfile.TemporaryDirectory() as tmp:
        result = bench_export(url, points, people, settings.export.chunk_points, chosen, Path(tmp), say)
    write_json(json_out, result)


@app.command()
@user_errors
def stock(
    ctx: typer.Context,
    *,
    source: Path = typer.Option(..., help="A video file (the 1080p mosaic of deepfer bench clips)."),
    json_out: JsonOut,
    frames: int = typer.Option(90, min=2, help="Frames of the clip both run on."),
    min_prob: float = typer.Option(0.9, min=0, max=1, help="Stock faces counted from this probability."),
    min_iou: float = typer.Option(0.5, min=0, max=1, help="A pipeline face matches a stock face from this IoU."),
) -> None:
    """The whole pipeline (defaults) against stock facenet-pytorch MTCNN on the same frames: fps ratio and recall."""
    from deepfer_bench.stock import bench_stock
    from streamer.media import probe_video

    probe_video(source)
    settings = settings_from(ctx)
    result = bench_stock(settings, source, frames, min_prob, min_iou, say)
    write_json(json_out, result)
    say(f"stock {result['stock']['fps']} fps, pipeline {result['pipeline']['fps']} fps: {result['speedup']}x, "
        f"finding {result['recall_of_stock_faces']:.1%} of stock's {result['stock']['faces']} faces")


@app.command()
@user_errors
def clips(
    media: Path = typer.Option(Path("../shared/media"), help="The shared media folder the clips are made from."),
    out: Path = typer.Option(Path(".deepfer/clips"), "--out", help="Folder for the clips (kept ones are reused)."),
) -> None:
    """Make the capacity clips with ffmpeg: static_scene, still_person, mosaic_1080p, expression_change (.mp4)."""
    from deepfer_bench.clips import standard_clips

    if not media.is_dir():
        raise UserError(f"no media folder at {media} (--media)")
    for name, path in standard_clips(media, out).items():
        say(f"{name}: {path}")


@app.command()
@user_errors
def tracking(
    ctx: typer.Context,
    *,
    source: Path = typer.Option(..., help="A video file; every frame is analysed in order."),
    json_out: JsonOut,
    weights: Weights = None,
    detector: Detector = None,
    detect_every: DetectEvery = None,
    max_side: int | None = typer.Option(None, min=64, help="Downscale frames to this long side for detection."),
    device: Device = None,
    half_lives: str | None = typer.Option(
        None, help="Comma-separated smoothing half-lives (s) to compare (default: smoothing.half_life_s)."
    ),
    switch_margins: str | None = typer.Option(
        None, help="Comma-separated hysteresis margins to compare (default: smoothing.switch_margin)."
    ),
    max_frames: int | None = typer.Option(None, min=1, help="Stop after this many frames."),
    cut_s: float | None = typer.Option(
        None, "--cut-s", min=0, help="The clip's held expression changes at this second (deepfer_bench.clips."
        "expression_change: 6): also report how long the change takes to show."
    ),
) -> None:
    """Tracks found, and shown-label changes per minute raw (per-frame argmax) vs smoothed, on one video."""
    from pydantic import ValidationError

    from deepfer_bench.tracking import bench_tracking
    from deepfer_core.settings import SmoothingSettings
    from streamer.media import probe_video

    probe_video(source)
    settings = settings_from(
        ctx,
        classifier=dict(weights=weights, device=device),
        detector=dict(kind=detector, detect_every=detect_every, max_side=max_side, device=device),
    )
    sweep = []
    if half_lives or switch_margins:
        hls = float_list(half_lives, "--half-lives") if half_lives else [settings.smoothing.half_life_s]
        margins = (
            float_list(switch_margins, "--switch-margins") if switch_margins else [settings.smoothing.switch_margin]
        )
        try:
            sweep = [SmoothingSettings(half_life_s=h, switch_margin=m) for h in hls for m in margins]
        except ValidationError as exc:
            raise UserError(f"--half-lives / --switch-margins: {exc.errors()[0]['msg']}") from None
    report = bench_tracking(settings, source, sweep, max_frames, say, cut_s)
    write_json(json_out, report)
    for r in report["sweep"] or [report]:
        switch = r.get("switch")
        shown = f"; the change to {switch['new_label']} shows after {switch['shown_delay_s']} s" if switch else ""
        say(
            f"half-life {r['half_life_s']:g} s, margin {r['switch_margin']:g}: {r['tracks']} track(s), label changes"
            f" per minute raw {r['raw_changes_per_min']} vs smoothed {r['smoothed_changes_per_min']}{shown}"
        )
