"""The ``deepfer`` command line. Each command parses its flags into the settings (validated once), makes one call
into the package that owns the work, and prints what came back."""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from core.redact import install_log_redaction, redact
from core.settings import ConfigError, Settings, load_settings, secret_values

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DeepFER: real-time facial emotion analytics.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that write JSON.")
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)


class UserError(Exception):
    """Printed as one line on stderr, exit status 2."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        # every DeepFER input error (settings, data, weights, media, sources, Redis) is a ValueError
        except (UserError, ConfigError, FileNotFoundError, ValueError) as exc:
            console.print(f"[bold red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", help="TOML settings file (default: $DEEPFER_CONFIG or ./config.toml)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = {"config": config}


def settings_from(ctx: typer.Context, **overrides: dict[str, Any]) -> Settings:
    """The settings of this command; from here on, no log line shows their secrets (Redis password, TURN, token)."""
    settings = load_settings(ctx.obj.get("config") if ctx.obj else None, overrides)
    install_log_redaction(secret_values(settings))
    return settings


def say(text: str) -> None:
    console.print(text, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """Tables for stdout: pipes get whole rows, not 80-column wraps."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def int_list(text: str, option: str) -> list[int]:
    """``"1,32,256"`` -> ``[1, 32, 256]``, or a one-line error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} must list numbers >= 1, got {text!r}")
    return values


def float_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str) -> float:
    """``"90s"``, ``"10m"``, ``"2h"``, ``"7d"`` or plain seconds -> seconds, or a one-line error naming the option."""
    t = text.strip().lower()
    unit = DURATION_UNITS.get(t[-1:], None) if t else None
    try:
        value = float(t[:-1] if unit else t) * (unit or 1.0)
    except ValueError:
        raise UserError(f"{option} must look like 90s, 10m, 2h or 7d, got {text!r}") from None
    if value <= 0:
        raise UserError(f"{option} must be positive, got {text!r}")
    return value


def write_json(path: Path, data: Any) -> None:
    from bench import write_json as write

    write(path, data)
    say(f"wrote {path}")


# ----- classifier: train, evaluate ------------------------------------------------------------------------------------


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="Training data: a <class>/ folder tree, fer2013.csv, or fer2013.csv:Training."),
    out: Path = typer.Option(..., help="Run folder for best.pt, last.pt, log.csv, log.json and curves.png."),
    val: Path | None = typer.Option(
        None, help="Validation data (same forms as --data); else train.val_fraction of --data."
    ),
    model: str | None = typer.Option(None, help="Architecture (baseline_cnn, deepfer_resnet, deepfer_resnet_wide)."),
    epochs: int | None = typer.Option(None, min=1),
    batch_size: int | None = typer.Option(None, min=1),
    lr: float | None = typer.Option(None),
    optimizer: str | None = typer.Option(None, help="sgd or adamw."),
    class_balance: str | None = typer.Option(None, help="none, weights or sampler."),
    patience: int | None = typer.Option(None, min=1, help="Early stopping patience in epochs."),
    seed: int | None = typer.Option(None),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
    init: Path | None = typer.Option(None, help="Fine-tune from this checkpoint (or a shipped model name)."),
    resume: Path | None = typer.Option(None, help="Continue an interrupted run from its last.pt."),
    limit_per_class: int | None = typer.Option(None, min=1, help="Use at most N images per class (quick runs)."),
    compile: bool | None = typer.Option(
        None, "--compile/--no-compile", help="torch.compile the training step (train.compile)."
    ),
) -> None:
    """Train an emotion classifier."""
    from classifier.data import load_training_data
    from classifier.inference import resolve_weights
    from classifier.train import train as run_training

    settings = settings_from(
        ctx,
        train=dict(
            model=model,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            class_balance=class_balance,
            patience=patience,
            seed=seed,
            device=device,
            compile=compile,
        ),
    )
    if resume is not None and not resume.is_file():
        raise UserError(f"checkpoint to resume not found: {resume}")
    init_path = resolve_weights(str(init)) if init is not None else None
    train_set, val_set = load_training_data(
        data, val, settings.paths.data_dir / "cache", limit_per_class, settings.train.seed
    )
    say(
        f"training {init_path and 'from ' + str(init_path) or settings.train.model} on {len(train_set)} faces"
        + (f", validating on {len(val_set)}" if val_set else "")
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("epochs", total=settings.train.epochs, info="")

        def on_epoch(r, total):
            bar.update(
                task, completed=r.epoch, info=f"loss {r.train_loss:.3f} acc {r.train_acc:.3f} val {r.val_acc:.3f}"
            )

        result = run_training(settings.train, train_set, val_set, out, init=init_path, resume=resume, on_epoch=on_epoch)
    say(
        f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}"
        f" ({result.epochs_run} epochs, {result.seconds:.0f} s{', stopped early' if result.stopped_early else ''});"
        f" weights: {out / 'best.pt'}"
    )


@app.command()
@user_errors
def evaluate(
    ctx: typer.Context,
    data: Path = typer.Option(
        ..., help="Labelled faces: a <class>/ folder tree, fer2013.csv or fer2013.csv:PublicTest."
    ),
    json_out: Path = typer.Option(..., "--json", help="Write the report here (top-level 'accuracy' in [0, 1])."),
    weights: str | None = typer.Option(
        None, help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name (default: classifier.weights)."
    ),
    tta: bool = typer.Option(False, "--tta", help="Average each face with its mirror image."),
    confusion_png: Path | None = typer.Option(
        None, "--confusion-png", help="Normalized confusion matrix (default: next to --json)."
    ),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Accuracy, per-class precision/recall/F1, macro and weighted F1, and the confusion matrix."""
    from classifier.evaluate import evaluate_to_files

    settings = settings_from(ctx, classifier=dict(weights=weights, device=device, tta=tta or None))
    report, png = evaluate_to_files(
        settings.classifier, data, json_out, confusion_png, settings.paths.data_dir / "cache"
    )
    table = Table(
        title=f"{report.model} on {report.samples} faces: accuracy {report.accuracy:.2%}, macro F1 "
        f"{report.macro_f1:.3f}"
    )
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for name, m in report.per_class.items():
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    Console().print(table)
    say(f"report: {json_out}  confusion matrix: {png}")


@app.command("export-model")
@user_errors
def export_model(
    ctx: typer.Context,
    out: Path = typer.Option(
        ..., help="The .onnx file to write (one file: graph, weights and preprocessing metadata)."
    ),
    weights: str | None = typer.Option(
        None, help="Checkpoint path or shipped model name (default: classifier.weights)."
    ),
    fmt: str = typer.Option("onnx", "--format", help="Output format; onnx is the only one."),
    int8: bool = typer.Option(
        False, "--int8", help="Static int8 quantization (ONNX Runtime), calibrated on training faces."
    ),
    calibration_data: Path | None = typer.Option(
        None, help="Training faces for --int8: a <class>/ folder tree, fer2013.csv or fer2013.csv:Training."
    ),
    calibration_faces: int | None = typer.Option(
        None, min=7, help="Faces drawn for calibration (default: export_model.calibration_faces)."
    ),
) -> None:
    """Export the classifier to ONNX for ONNX Runtime (edge boxes); the file then works wherever weights are named."""
    from classifier.onnx_export import export_from_settings

    settings = settings_from(
        ctx, classifier=dict(weights=weights), export_model=dict(calibration_faces=calibration_faces)
    )
    if fmt != "onnx":
        raise UserError(f"--format must be onnx, got {fmt!r}")
    if int8 and calibration_data is None:
        raise UserError("--int8 needs --calibration-data (training faces, never the test split)")
    if calibration_data is not None and not int8:
        raise UserError("--calibration-data is only used with --int8")
    r = export_from_settings(settings, out, calibration_data if int8 else None)
    say(
        f"wrote {r.path} ({r.precision}, {r.bytes / 1e6:.2f} MB) from {r.source} in {r.seconds:.0f} s"
        + (f"; calibrated on {r.calibration_faces} faces of {calibration_data}" if int8 else "")
        + f"; against PyTorch on {r.check_faces} faces: max |dp| {r.max_prob_diff:.2g}, same top emotion"
        f" {r.top1_agreement:.1%}"
    )


# ----- still images: predict ------------------------------------------------------------------------------------------


@app.command()
@user_errors
def predict(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Image files (JPEG, PNG, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list on stdout instead of tables."),
    detector: str | None = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    weights: str | None = typer.Option(
        None, help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name (default: classifier.weights)."
    ),
    tta: bool = typer.Option(False, "--tta", help="Average each face with its mirror image."),
) -> None:
    """Find the faces in still images and print each one's emotion and the 7 probabilities."""
    from core.types import EMOTIONS
    from streamer.analysis import analyse_files
    from streamer.assembly import load_models
    from streamer.media import check_image

    settings = settings_from(ctx, classifier=dict(weights=weights, tta=tta or None), detector=dict(kind=detector))
    for path in images:  # every input is checked before the models load
        check_image(path)
    models = load_models(settings)
    out = stdout_console()
    report = []
    for path, faces in analyse_files(images, models.detector, models.classifier, settings.classifier.crop_margin):
        report.append(
            {
                "image": str(path),
                "faces": [
                    {k: v for k, v in f.to_dict().items() if k in ("box", "emotion", "confidence", "probabilities")}
                    for f in faces
                ],
            }
        )
        if not faces:
            (console if as_json else out).print(f"no face found in {path}", highlight=False, soft_wrap=True)
        elif not as_json:
            table = Table(
                title=f"{path}: {len(faces)} face{'s' * (len(faces) > 1)} ({models.detector.name}, "
                f"{models.classifier.name})"
            )
            for col in ("face", "box x1,y1,x2,y2", "emotion", *EMOTIONS):
                table.add_column(col, justify="right", no_wrap=True)
            for i, f in enumerate(faces):
                table.add_row(
                    str(i),
                    ",".join(f"{v:.0f}" for v in f.box.xyxy),
                    f"{f.emotion} {f.confidence:.0%}",
                    *(f"{p:.3f}" for p in f.probabilities),
                )
            out.print(table)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")


@app.command()
@user_errors
def explain(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Image files (JPEG, PNG, ...)."),
    out: Path = typer.Option(..., "--out", help="Folder for the pictures: <image>-face<N>.png, N from 1."),
    emotion: str | None = typer.Option(
        None, "--class", help="Explain this emotion on every face (default: each face's predicted emotion)."
    ),
    detector: str | None = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    weights: str | None = typer.Option(
        None, help="PyTorch checkpoint (.pt) or shipped model name (default: classifier.weights); not .onnx."
    ),
) -> None:
    """Why did it say that? One picture per face: the crop the model saw with its Grad-CAM heat map and the label."""
    import cv2

    from classifier.gradcam import GradCam
    from streamer.analysis import emotion_index, explain_image
    from streamer.assembly import load_models
    from streamer.media import check_image, load_image

    settings = settings_from(ctx, classifier=dict(weights=weights), detector=dict(kind=detector))
    target = emotion_index(emotion)
    for path in images:  # every input is checked before the models load
        check_image(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    models = load_models(settings)
    explainer = GradCam(models.classifier, settings.explain.min_map_size)
    out.mkdir(parents=True, exist_ok=True)
    stdout = stdout_console()
    for path in images:
        faces = explain_image(load_image(path), models.detector, explainer, settings.classifier.crop_margin,
                              settings.explain, target)
        if not faces:
            console.print(f"no face found in {path}", highlight=False, soft_wrap=True)
        for i, face in enumerate(faces, start=1):
            written = out / f"{path.stem}-face{i}.png"
            cv2.imwrite(str(written), cv2.cvtColor(face.picture, cv2.COLOR_RGB2BGR))
            stdout.print(f"{written}: {face.explained} {face.explained_probability:.0%} (predicted {face.emotion}, "
                         f"box {','.join(f'{v:.0f}' for v in face.box.xyxy)})", highlight=False, soft_wrap=True)


# ----- streaming: run, people, serve ----------------------------------------------------------------------------------


@app.command("run")
@user_errors
def run_cmd(
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
    weights: str | None = typer.Option(
        None, help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name (default: classifier.weights)."
    ),
    detector: str | None = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    detect_every: int | None = typer.Option(None, min=1, help="Detect on every k-th frame, carrying boxes between."),
    device: str | None = typer.Option(None, help="auto, cpu or cuda (detector and classifier)."),
    file_rate: str | None = typer.Option(None, help="Files: asap (every frame, as fast as possible) or realtime."),
    track: bool = typer.Option(True, "--track/--no-track", help="Track faces and smooth emotions per camera."),
    redis_url: str | None = typer.Option(
        None,
        "--redis",
        help="Store people and emotions in this Redis (default: redis.url, else 127.0.0.1:6379, else an embedded one).",
    ),
    no_redis: bool = typer.Option(False, "--no-redis", help="Do not store anything in Redis."),
) -> None:
    """Analyse cameras and video files. Files end at end of stream; live sources run until Ctrl-C (outputs flushed)."""
    from streamer.assembly import run_sources

    settings = settings_from(
        ctx,
        classifier=dict(weights=weights, device=device),
        detector=dict(kind=detector, detect_every=detect_every, device=device),
        sources=dict(file_rate=file_rate),
        redis=dict(url=redis_url),
    )
    outcome = run_sources(
        settings, source, camera_id, output, summary_json, track, store=track and not no_redis, say=say
    )
    if outcome.unsaved_points:
        say(f"Redis did not take {outcome.unsaved_points} points; they wait in {outcome.journal_dir} for the next run")
    table = Table(title="interrupted" if outcome.interrupted else None)
    for col in ("camera", "status", "read", "processed", "dropped", "faces", "fps", "p50 ms", "p95 ms"):
        table.add_column(col, justify="right" if col not in ("camera", "status") else "left")
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


@app.command()
@user_errors
def people(
    ctx: typer.Context,
    camera: str = typer.Option(..., "--camera", help="Camera id, as deepfer run named it (--camera-id)."),
    redis_url: str | None = typer.Option(
        None, "--redis", help="Redis URL (default: redis.url, else the local or embedded one)."
    ),
    since: str | None = typer.Option(None, help="Only people seen in the last 90s / 10m / 2h / 7d."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list on stdout instead of a table."),
) -> None:
    """The people a camera has seen: time span, dominant emotion and the emotion shown last."""
    from redis.exceptions import RedisError

    from aggregator.embedded_redis import redis_for
    from aggregator.timeseries import people_of
    from core.redact import redact

    settings = settings_from(ctx, redis=dict(url=redis_url))
    window = parse_duration(since, "--since") if since else None
    with redis_for(settings) as url:
        try:
            found, cameras = people_of(url, settings.redis, camera, time.time() - window if window else None)
        except (RedisError, OSError) as exc:
            raise UserError(f"cannot read Redis at {redact(url)}: {exc}") from None
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
    for col in ("person", "track", "first seen", "last seen", "span", "dominant", "last shown"):
        table.add_column(col, justify="right" if col in ("track", "span") else "left", no_wrap=True)
    for p in found:
        share = p.emotion_points.get(p.dominant, 0) / p.points if p.points else 0.0
        span = f"{int(p.duration_s // 60)}m{p.duration_s % 60:04.1f}s" if p.duration_s >= 60 else f"{p.duration_s:.1f}s"
        table.add_row(
            p.person_id,
            str(p.track_id),
            clock(p.first_seen),
            clock(p.last_seen),
            span,
            f"{p.dominant} {share:.0%}",
            f"{p.label} {p.confidence:.0%}",
        )
    stdout_console().print(table)


def redis_errors_as_user_errors(url: str):
    """A context: Redis down or refusing is one line naming the (redacted) URL."""
    import contextlib

    from redis.exceptions import RedisError

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except (RedisError, OSError) as exc:
            raise UserError(f"cannot read Redis at {redact(url)}: {exc}") from None

    return guard()


@app.command("export")
@user_errors
def export_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="The file to write (replaced when complete)."),
    camera: list[str] = typer.Option([], "--camera", help="Camera id (repeat for several)."),
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
    redis_url: str | None = typer.Option(
        None, "--redis", help="Redis URL (default: redis.url, else the local or embedded one)."
    ),
) -> None:
    """Stored points or roll-ups of cameras to CSV, Parquet or JSON lines, read and written in chunks."""
    from aggregator.embedded_redis import redis_for
    from aggregator.export import FORMATS, ExportQuery, export_to_file, time_range

    settings = settings_from(ctx, redis=dict(url=redis_url))
    if bool(camera) == all_cameras:
        raise UserError("give --camera ID (repeatable) or --all")
    fmt = fmt or (out.suffix[1:].lower() if out.suffix[1:].lower() in FORMATS else settings.export.default_format)
    window = parse_duration(since, "--since") if since else None
    lo, hi = time_range(start, end, since_s=window, default_s=settings.export.default_range_s)
    query = ExportQuery(None if all_cameras else tuple(camera), lo, hi, interval, person, by_camera)
    with redis_for(settings) as url, redis_errors_as_user_errors(url):
        r = export_to_file(url, settings, query, fmt, out)
    what = "points" if interval == "point" else f"{interval} rows"
    say(f"wrote {r.rows} {what} of {', '.join(r.cameras) or 'no camera'} to {r.path} ({fmt}, {r.bytes / 1e6:.2f} MB)"
        f" in {r.seconds:.1f} s")


@app.command("report")
@user_errors
def report_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="The HTML file to write (self-contained: charts inline)."),
    camera: list[str] = typer.Option([], "--camera", help="Camera id (repeat for several)."),
    all_cameras: bool = typer.Option(False, "--all", help="Every camera with data (the default without --camera)."),
    day: str | None = typer.Option(None, help="The UTC day YYYY-MM-DD (default: today)."),
    start: str | None = typer.Option(None, help="Instead of --day: start, unix seconds or ISO 8601."),
    end: str | None = typer.Option(None, help="With --start: the end (default: now)."),
    redis_url: str | None = typer.Option(
        None, "--redis", help="Redis URL (default: redis.url, else the local or embedded one)."
    ),
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


@app.command()
@user_errors
def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(
        None, help="Address to bind (default: dashboard.host, 127.0.0.1). Anything but loopback needs a token."
    ),
    port: int | None = typer.Option(None, min=0, max=65535, help="Port (default: dashboard.port, 8000)."),
    token: str | None = typer.Option(None, help="API token (default: dashboard.token or $DEEPFER_DASHBOARD__TOKEN)."),
    redis_url: str | None = typer.Option(
        None, "--redis", help="Redis URL (default: redis.url, else 127.0.0.1:6379, else an embedded one)."
    ),
    weights: str | None = typer.Option(
        None, help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name (default: classifier.weights)."
    ),
    tls_cert: str | None = typer.Option(
        None,
        help="PEM certificate: serve HTTPS (browsers give the live demo a camera only over HTTPS or on localhost).",
    ),
    tls_key: str | None = typer.Option(None, help="PEM private key of --tls-cert."),
    cluster: str | None = typer.Option(
        None,
        help="Run cameras on the Ray cluster at this address ('auto' or HEAD:PORT; default: cluster.address, "
        "empty: in this process).",
    ),
) -> None:
    """Start the dashboard and its API: cameras, live preview, people, metrics, image upload, the live WebRTC demo."""
    from dashboard.server import serve as run_server

    settings = settings_from(
        ctx,
        dashboard=dict(host=host, port=port, token=token, tls_cert=tls_cert, tls_key=tls_key),
        redis=dict(url=redis_url),
        classifier=dict(weights=weights),
        cluster=dict(address=cluster),
    )
    run_server(settings, say)


# ----- benchmarks -----------------------------------------------------------------------------------------------------


@bench_app.command("classifier")
@user_errors
def bench_classifier_cmd(
    ctx: typer.Context,
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    weights: list[str] | None = typer.Option(
        None,
        help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name; repeat to compare "
        "(default: classifier.weights).",
    ),
    batch_sizes: str = typer.Option("1,32,256", help="Comma-separated batch sizes."),
    seconds: float = typer.Option(
        3.0, min=0.0, help="Time spent per batch size, classifier and device (in all rounds together)."
    ),
    rounds: int = typer.Option(
        1, min=1, help="Interleaved rounds: every classifier runs in each, so outside load hits all alike."
    ),
    devices: str = typer.Option("auto", help="auto (CPU, plus CUDA when present), cpu or cuda."),
    threads: int | None = typer.Option(
        None, min=1, help="CPU threads for PyTorch and ONNX Runtime alike (default: each one's own, one per core)."
    ),
) -> None:
    """Classifier faces/s and per-batch latency (mean, p50, p95 ms) per batch size, on CPU and GPU; with several
    --weights, each one's speed-up over the first."""
    import torch

    from bench.classifier import bench_classifier

    settings = settings_from(ctx, classifier=dict(onnx_threads=threads))
    sizes = int_list(batch_sizes, "--batch-sizes")
    if devices not in ("auto", "cpu", "cuda"):
        raise UserError(f"--devices must be auto, cpu or cuda, got {devices!r}")
    names = (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]) if devices == "auto" else [devices]
    result = bench_classifier(
        settings, weights or [settings.classifier.weights], sizes, seconds, names, rounds, threads, say
    )
    write_json(json_out, result)
    for r in result["results"]:
        lat = r["latency_ms"]
        say(
            f"{r['model']:>30} {r['device']:>5} batch {r['batch_size']:>4}: {r['faces_per_s']:9.1f} faces/s"
            f" (best round {r['faces_per_s_best']:.1f}), latency ms mean {lat['mean']:.2f} p50 {lat['p50']:.2f}"
            f" p95 {lat['p95']:.2f}"
        )
    for sp in result["speedups"]:
        say(
            f"{Path(sp['weights']).name} vs {Path(sp['against']).name} {sp['device']} batch {sp['batch_size']}:"
            f" {sp['ratio']:.2f}x (median of rounds {sp['ratio_median_of_rounds']:.2f}x)"
        )


@bench_app.command("detector")
@user_errors
def bench_detector_cmd(
    ctx: typer.Context,
    source: Path = typer.Option(..., help="A video file; its first --frames frames are decoded once, then detected."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    frames: int = typer.Option(120, min=1, help="Frames to decode and detect."),
    detector: str | None = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    max_side: str | None = typer.Option(None, help="Comma-separated long-side limits (default: detector.max_side)."),
    batch_size: str | None = typer.Option(
        None, help="Comma-separated frames per call (default: 1 and detector.batch_size)."
    ),
    device: str | None = typer.Option(None, help="auto, cpu or cuda (default: detector.device)."),
    min_face_size: int | None = typer.Option(
        None, help="Smallest face in original pixels (default: detector.min_face_size)."
    ),
    batched: bool | None = typer.Option(
        None, "--batched/--stock", help="MTCNN tensor post-processing (default: detector.mtcnn_batched)."
    ),
) -> None:
    """Detection frames/s and faces found per max_side and batch size, on real video frames."""
    from bench.detector import bench_detector
    from streamer.media import probe_video

    probe_video(source)
    settings = settings_from(
        ctx, detector=dict(kind=detector, device=device, min_face_size=min_face_size, mtcnn_batched=batched)
    )
    sides = int_list(max_side, "--max-side") if max_side else [settings.detector.max_side]
    sizes = int_list(batch_size, "--batch-size") if batch_size else sorted({1, settings.detector.batch_size})
    say(f"{settings.detector.kind} on the first {frames} frames of {source}, max_side {sides}, batch {sizes}")
    result = bench_detector(settings.detector, source, frames, sides, sizes)
    write_json(json_out, result)
    for r in result["results"]:
        say(
            f"{r['detector']} max_side {r['max_side']:>5} batch {r['batch_size']:>3}: {r['fps']:7.2f} fps"
            f" ({r['ms_per_frame']:.1f} ms/frame), faces {r['faces_found']} in {r['frames_with_face']}/{r['frames']} "
            f"frames"
        )


@bench_app.command("pipeline")
@user_errors
def bench_pipeline_cmd(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="A video file, played as N live cameras at its own frame rate."),
    streams: int = typer.Option(1, min=1, help="Concurrent copies of the stream."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    seconds: float | None = typer.Option(None, min=1, help="Stop after this long (default: the file's length)."),
    weights: str | None = typer.Option(
        None, help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name (default: classifier.weights)."
    ),
    detector: str | None = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    detect_every: int | None = typer.Option(None, min=1),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Per-stream fps, drops, capture-to-result latency p50/p95, CPU/GPU use and the decode/detect/classify split."""
    from bench.pipeline import bench_pipeline
    from streamer.media import probe_video

    probe_video(source)
    settings = settings_from(
        ctx,
        classifier=dict(weights=weights, device=device),
        detector=dict(kind=detector, detect_every=detect_every, device=device),
    )
    result = bench_pipeline(settings, source, streams, seconds, say)
    write_json(json_out, result)
    t = result["total"]
    say(
        f"{streams} stream(s): {t['fps_per_stream_mean']} fps each (min {t['fps_per_stream_min']}), "
        f"dropped {t['frames_dropped']}/{t['frames_read']}, latency p50 {t['latency_p50_ms_max']} ms "
        f"p95 {t['latency_p95_ms_max']} ms"
    )


@bench_app.command("gating")
@user_errors
def bench_gating_cmd(
    ctx: typer.Context,
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    media: Path = typer.Option(Path("../shared/media"), help="Folder with woman2.mp4, fer_test.mp4, no-faces.jpg."),
    clips: str = typer.Option("static_scene,still_person,mosaic_1080p,woman2", help="Comma-separated clips."),
    clips_dir: Path = typer.Option(Path(".deepfer/clips"), help="Where the clips are made (once)."),
    frames: int | None = typer.Option(None, min=1, help="At most this many frames of each clip."),
    detect_every: int | None = typer.Option(None, min=1),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Detection fps and faces kept with motion gating and refinement against a full detection on every frame."""
    from bench.gating import bench_gating

    settings = settings_from(ctx, detector=dict(detect_every=detect_every, device=device))
    names = [c.strip() for c in clips.split(",") if c.strip()]
    write_json(json_out, bench_gating(settings, media, clips_dir, names, frames, say))


@bench_app.command("cluster")
@user_errors
def bench_cluster_cmd(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="A video file, played as live cameras at its own frame rate."),
    cameras: int = typer.Option(2, min=1, help="Cameras (copies of the file) in each configuration."),
    workers: str = typer.Option(
        "1,2", help="Comma-separated worker counts; the machine's CPUs are split between them."
    ),
    seconds: float = typer.Option(10.0, min=1, help="Measuring window, after 3 s of warm-up."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    detect_every: int | None = typer.Option(None, min=1),
) -> None:
    """The same cameras on 1..N Ray workers of a local test cluster: fps, drops, latency, and Redis load per camera."""
    from bench.cluster import bench_cluster
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


@bench_app.command("webrtc")
@user_errors
def bench_webrtc_cmd(
    ctx: typer.Context,
    source: str = typer.Option(
        ..., "--source", help="A video file each scripted visitor sends as its camera (looped)."
    ),
    visitors: int = typer.Option(1, min=1, help="Concurrent WebRTC visitors."),
    seconds: float = typer.Option(20.0, min=1, help="Measured time, after a few seconds of warm-up."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    weights: str | None = typer.Option(
        None, help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name (default: classifier.weights)."
    ),
    detect_every: int | None = typer.Option(None, min=1),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Live-demo path over loopback WebRTC: arrival-to-send latency p50/p95, fps in/processed/back, drops, CPU."""
    from bench.webrtc import bench_webrtc
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


@bench_app.command("export")
@user_errors
def bench_export_cmd(
    ctx: typer.Context,
    json_out: Path = typer.Option(
        Path("bench/results/export_memory.json"), "--json", help="Write the results here."
    ),
    points: int = typer.Option(1_000_000, min=1, help="Points written under a throwaway key prefix (deleted after)."),
    people: int = typer.Option(1000, min=1, help="People they belong to (about ten in view at once)."),
    chunk: int | None = typer.Option(None, min=100, help="Rows per chunk (default: export.chunk_points)."),
    modes: str = typer.Option("csv,parquet,jsonl,dataframe", help="Exports to measure; dataframe = read all first."),
    redis_url: str | None = typer.Option(
        None, "--redis", help="Redis URL (default: redis.url, else the local or embedded one)."
    ),
) -> None:
    """Peak memory (RSS) and speed of exporting N stored points in each format, each in a fresh process, against
    reading them all into one DataFrame."""
    import tempfile

    from aggregator.embedded_redis import redis_for
    from bench.export import bench_export

    settings = settings_from(ctx, redis=dict(url=redis_url), export=dict(chunk_points=chunk))
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    with redis_for(settings) as url, redis_errors_as_user_errors(url), tempfile.TemporaryDirectory() as tmp:
        result = bench_export(url, points, people, settings.export.chunk_points, chosen, Path(tmp), say)
    write_json(json_out, result)


@bench_app.command("stock")
@user_errors
def bench_stock_cmd(
    ctx: typer.Context,
    source: Path = typer.Option(..., help="A video file (the 1080p mosaic of deepfer bench clips)."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    frames: int = typer.Option(90, min=2, help="Frames of the clip both run on."),
    min_prob: float = typer.Option(0.9, min=0, max=1, help="Stock faces counted from this probability."),
    min_iou: float = typer.Option(0.5, min=0, max=1, help="A pipeline face matches a stock face from this IoU."),
) -> None:
    """The whole pipeline (defaults) against stock facenet-pytorch MTCNN on the same frames: fps ratio and recall."""
    from bench.stock import bench_stock
    from streamer.media import probe_video

    probe_video(source)
    settings = settings_from(ctx)
    result = bench_stock(settings, source, frames, min_prob, min_iou, say)
    write_json(json_out, result)
    say(f"stock {result['stock']['fps']} fps, pipeline {result['pipeline']['fps']} fps: {result['speedup']}x, "
        f"finding {result['recall_of_stock_faces']:.1%} of stock's {result['stock']['faces']} faces")


@bench_app.command("clips")
@user_errors
def bench_clips_cmd(
    media: Path = typer.Option(Path("../shared/media"), help="The shared media folder the clips are made from."),
    out: Path = typer.Option(Path(".deepfer/clips"), "--out", help="Folder for the clips (kept ones are reused)."),
) -> None:
    """Make the capacity clips with ffmpeg: static_scene, still_person, mosaic_1080p, expression_change (.mp4)."""
    from bench.clips import standard_clips

    if not media.is_dir():
        raise UserError(f"no media folder at {media} (--media)")
    for name, path in standard_clips(media, out).items():
        say(f"{name}: {path}")


@bench_app.command("tracking")
@user_errors
def bench_tracking_cmd(
    ctx: typer.Context,
    source: Path = typer.Option(..., help="A video file; every frame is analysed in order."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    weights: str | None = typer.Option(
        None, help="Checkpoint (.pt), ONNX export (.onnx) or shipped model name (default: classifier.weights)."
    ),
    detector: str | None = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    detect_every: int | None = typer.Option(None, min=1, help="Detect on every k-th frame, carrying boxes between."),
    max_side: int | None = typer.Option(None, min=64, help="Downscale frames to this long side for detection."),
    device: str | None = typer.Option(None, help="auto, cpu or cuda."),
    half_lives: str | None = typer.Option(
        None, help="Comma-separated smoothing half-lives (s) to compare (default: smoothing.half_life_s)."
    ),
    switch_margins: str | None = typer.Option(
        None, help="Comma-separated hysteresis margins to compare (default: smoothing.switch_margin)."
    ),
    max_frames: int | None = typer.Option(None, min=1, help="Stop after this many frames."),
    cut_s: float | None = typer.Option(
        None, "--cut-s", min=0, help="The clip's held expression changes at this second (bench.clips."
        "expression_change: 6): also report how long the change takes to show."
    ),
) -> None:
    """Tracks found, and shown-label changes per minute raw (per-frame argmax) vs smoothed, on one video."""
    from pydantic import ValidationError

    from bench.tracking import bench_tracking
    from core.settings import SmoothingSettings
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


if __name__ == "__main__":
    app()
