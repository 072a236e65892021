"""What the cameras stored in Redis: the people seen, exports to files, the day's HTML report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.table import Table

from deepfer.common import (
    UserError,
    parse_duration,
    redis_errors_as_user_errors,
    say,
    settings_from,
    stdout_console,
    user_errors,
)
from deepfer.options import Cameras, JsonFlag, RedisUrl, ShowProgress

app = typer.Typer()


@app.command()
@user_errors
def people(
    ctx: typer.Context,
    camera: str = typer.Option(..., "--camera", help="Camera id, as deepfer run named it (--camera-id)."),
    redis_url: RedisUrl = None,
    since: str | None = typer.Option(None, help="Only people seen in the last 90s / 10m / 2h / 7d."),
    as_json: JsonFlag = False,
) -> None:
    """The people a camera has seen: visitor number (as the dashboard names them), time span, dominant emotion and the
    emotion shown last."""
    from aggregator.embedded_redis import redis_for
    from aggregator.timeseries import people_of
    from deepfer_core.redact import redact

    settings = settings_from(ctx, redis=dict(url=redis_url))
    window = parse_duration(since, "--since") if since else None
    with redis_for(settings) as url:
        with redis_errors_as_user_errors(url):
            found, cameras = people_of(url, settings.redis, camera, time.time() - window if window else None)
    if not found and camera not in cameras:
        raise UserError(
            f"no data for camera {camera!r} in Redis at {redact(url)} (cameras: {', '.join(cameras) or 'none'})"
        )
    if as_json:
        sys.stdout.write(json.dumps([p.to_dict() for p in found], indent=2) + "\n")
        return
    if not found:
        say(f"nobody seen on camera {camera} in the last {since}")
        return

    def clock(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    table = Table(
        title=f"camera {camera}: {len(found)} {'person' if len(found) == 1 else 'people'}"
        + (f" in the last {since}" if since else "")
    )
    for col in ("visitor", "person", "track", "first seen", "last seen", "span", "dominant", "last shown"):
        table.add_column(col, justify="right" if col in ("visitor", "track", "span") else "left", no_wrap=True)
    for p in found:
        share = p.emotion_points.get(p.dominant, 0) / p.points if p.points else 0.0
        span = f"{int(p.duration_s // 60)}m{p.duration_s % 60:04.1f}s" if p.duration_s >= 60 else f"{p.duration_s:.1f}s"
        table.add_row(
            str(p.visitor_number),
            p.person_id,
            str(p.track_id),
            clock(p.first_seen),
            clock(p.last_seen),
            span,
            f"{p.dominant} {share:.0%}",
            f"{p.label} {p.confidence:.0%}",
        )
    stdout_console().print(table)


@app.command()
@user_errors
def export(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (replaced when complete)."),
    camera: Cameras = None,
    all_cameras: bool = typer.Option(False, "--all", help="Every camera with data instead of --camera."),
    person: str | None = typer.Option(None, "--person", help="Only this person's points (with one --camera)."),
    since: str | None = typer.Option(None, help="The last 90s / 10m / 2h / 7d (instead of --start/--end)."),
    start: str | None = typer.Option(None, help="Start: unix seconds or ISO 8601 (no zone: UTC)."),
    end: str | None = typer.Option(None, help="End (exclusive; default: now)."),
    interval: str = typer.Option("point", help="point (one row per stored point), minute, hour or day (roll-ups)."),
    fmt: str | None = typer.Option(
        None, "--format", help="csv, parquet or jsonl (default: from --out's suffix, else export.default_format)."
    ),
    by_camera: bool = typer.Option(
        True, "--by-camera/--combined", help="Roll-ups of several cameras: rows per camera, or combined ('all')."
    ),
    redis_url: RedisUrl = None,
    progress: ShowProgress = None,
) -> None:
    """Stored points or roll-ups of cameras to CSV, Parquet or JSON lines, read and written in chunks (a progress bar
    on stderr when it is a terminal: rows written of those stored, rows/s, ETA)."""
    from aggregator.embedded_redis import redis_for
    from aggregator.export import FORMATS, ExportProgress, ExportQuery, export_to_file, time_range

    settings = settings_from(ctx, redis=dict(url=redis_url))
    if bool(camera) == all_cameras:
        raise UserError("give --camera ID (repeatable) or --all")
    suffix = out.suffix[1:].lower()
    if fmt is None and suffix and suffix not in FORMATS:  # never CSV in a file named .xlsx
        raise UserError(f"cannot write {out.suffix} files: --out must end in {', '.join('.' + f for f in FORMATS)}, "
                        "or say what to write with --format")
    fmt = fmt or (suffix if suffix in FORMATS else settings.export.default_format)
    window = parse_duration(since, "--since") if since else None
    lo, hi = time_range(start, end, since_s=window, default_s=settings.export.default_range_s)
    query = ExportQuery(tuple(camera) if camera else None, lo, hi, interval, person, by_camera)
    from deepfer.progress import bar, wanted

    with redis_for(settings) as url, redis_errors_as_user_errors(url), bar("rows/s", wanted(progress)) as shown:
        task = shown.add_task(out.name, total=None)

        def advance(p: ExportProgress) -> None:
            shown.update(task, completed=p.rows, total=p.planned)

        r = export_to_file(url, settings, query, fmt, out, on_progress=None if shown.disable else advance)
        shown.update(task, total=shown.tasks[task].completed)  # the stored count is at least the rows written
    what = "points" if interval == "point" else f"{interval} rows"
    say(f"wrote {r.rows} {what} of {', '.join(r.cameras) or 'no camera'} to {r.path} ({fmt}, {r.bytes / 1e6:.2f} MB)"
        f" in {r.seconds:.1f} s")


@app.command()
@user_errors
def report(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="The HTML file to write (self-contained: charts inline)."),
    camera: Cameras = None,
    all_cameras: bool = typer.Option(False, "--all", help="Every camera with data (the default without --camera)."),
    day: str | None = typer.Option(None, help="The UTC day YYYY-MM-DD (default: today)."),
    start: str | None = typer.Option(None, help="Instead of --day: start, unix seconds or ISO 8601."),
    end: str | None = typer.Option(None, help="With --start: the end (default: now)."),
    redis_url: RedisUrl = None,
) -> None:
    """A day's report as one HTML file: visitors, emotion mix and satisfaction per hour, dwell times, top numbers."""
    from datetime import UTC, datetime

    from aggregator.embedded_redis import redis_for
    from aggregator.export import day_range, time_range
    from aggregator.report import write_report

    settings = settings_from(ctx, redis=dict(url=redis_url))
    if camera and all_cameras:
        raise UserError("give --camera ID (repeatable) or --all, not both")
    if day is not None and (start is not None or end is not None):
        raise UserError("give --day or --start/--end, not both")
    if start is not None or end is not None:
        lo, hi = time_range(start, end, default_s=86400.0)
    else:
        lo, hi = day_range(day or datetime.now(UTC).date())
    with redis_for(settings) as url, redis_errors_as_user_errors(url):
        r = write_report(url, settings, camera or None, lo, hi, out)
    say(f"wrote {r.path} ({r.bytes / 1e3:.0f} KB): {r.visitors} visitors, {r.points} points on "
        f"{', '.join(r.cameras) or 'no camera'}")
