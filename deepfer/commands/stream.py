"""Cameras and video files through the pipeline, until they end or Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from deepfer.common import console, say, settings_from, user_errors
from deepfer.options import DetectEvery, Detector, ShowProgress, Weights

app = typer.Typer()


@app.command()
@user_errors
def run(
    ctx: typer.Context,
    source: list[str] = typer.Option(
        ...,
        "--source",
        "-s",
        help="Video file, rtsp:// or rtsps:// URL, /dev/videoN or a webcam index; repeat for more cameras.",
    ),
    camera_id: list[str] = typer.Option(
        [], "--camera-id", help="Id of the matching --source (default: derived from its URI)."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Annotated MP4 (x-<camera>.mp4 per camera when several)."
    ),
    summary_json: Path | None = typer.Option(
        None, "--summary-json", help="Per-camera counts, fps, latency and per-face results."
    ),
    weights: Weights = None,
    detector: Detector = None,
    detect_every: DetectEvery = None,
    device: str | None = typer.Option(None, help="auto, cpu or cuda (detector and classifier)."),
    file_rate: str | None = typer.Option(None, help="Files: asap (every frame, as fast as possible) or realtime."),
    track: bool = typer.Option(True, "--track/--no-track", help="Track faces and smooth emotions per camera."),
    redis_url: str | None = typer.Option(
        None,
        "--redis",
        help="Store people and emotions in this Redis (default: redis.url, else 127.0.0.1:6379, else an embedded one).",
    ),
    no_redis: bool = typer.Option(False, "--no-redis", help="Do not store anything in Redis."),
    progress: ShowProgress = None,
) -> None:
    """Analyse cameras and video files. Files end at end of stream; live sources run until Ctrl-C (outputs flushed).
    Files show a progress bar on stderr (frames done of all, fps, ETA) when it is a terminal."""
    from deepfer.progress import RunProgress, wanted
    from streamer.assembly import run_sources

    settings = settings_from(
        ctx,
        classifier=dict(weights=weights, device=device),
        detector=dict(kind=detector, detect_every=detect_every, device=device),
        sources=dict(file_rate=file_rate),
        redis=dict(url=redis_url),
    )
    outcome = run_sources(
        settings, source, camera_id, output, summary_json, track, store=track and not no_redis, say=say,
        progress=lambda sources: RunProgress(sources, wanted(progress)),
    )
    if outcome.unsaved_points:
        say(f"Redis did not take {outcome.unsaved_points} points; they wait in {outcome.journal_dir} for the next run")
    table = Table(title="interrupted" if outcome.interrupted else None)
    for col in ("camera", "status", "read", "processed", "dropped", "faces", "fps", "p50 ms", "p95 ms"):
        if col == "camera":  # ids are never ellipsized: the whole id, folded onto more lines when it must
            table.add_column(col, overflow="fold", min_width=max(len(c) for c in [col, *outcome.stats]))
        else:
            table.add_column(col, justify="right" if col != "status" else "left")
    for s in outcome.stats.values():
        table.add_row(
            s.camera_id,
            s.status,
            str(s.frames_read),
            str(s.frames_processed),
            str(s.frames_dropped),
            str(s.faces),
            f"{s.fps:.1f}",
            str(s.latency_p50_ms),
            str(s.latency_p95_ms),
        )
    console.print(table)
    for s in outcome.failed:
        console.print(f"[bold red]error:[/] camera {s.camera_id}: {s.last_error}", highlight=False, soft_wrap=True)
    if outcome.failed:
        raise typer.Exit(1)
