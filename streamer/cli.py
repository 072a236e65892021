"""The ``deepfer`` command line. Every command reads the settings once, then hands typed values to a stage."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from streamer.config import ConfigError, Settings, load_settings, secret_values
from streamer.redact import RedactFilter, install_log_redaction, redact

app = typer.Typer(add_completion=False, no_args_is_help=True, help="DeepFER: real-time facial emotion analytics.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that write JSON.")
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)


class UserError(Exception):
    """Printed as one line on stderr, exit status 2."""


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can cause into one clear line and a non-zero exit, never a traceback."""
    from classifier.data import DatasetError
    from classifier.inference import WeightsError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UserError, ConfigError, DatasetError, WeightsError, FileNotFoundError, ValueError) as exc:
            console.print(f"[bold red]error:[/] {redact(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="TOML settings file (default: $DEEPFER_CONFIG or ./config.toml)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"config": config}


def settings_from(ctx: typer.Context, **overrides: dict[str, Any]) -> Settings:
    """The settings of this command; from here on, no log line shows their secrets (Redis password, TURN, token)."""
    settings = load_settings(ctx.obj.get("config") if ctx.obj else None, overrides)
    install_log_redaction(secret_values(settings))
    return settings


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="Training data: a <class>/ folder tree, fer2013.csv, or fer2013.csv:Training."),
    out: Path = typer.Option(..., help="Run folder for best.pt, last.pt, log.csv, log.json and curves.png."),
    val: Optional[Path] = typer.Option(None, help="Validation data (same forms as --data); else train.val_fraction of --data."),
    model: Optional[str] = typer.Option(None, help="Architecture (baseline_cnn, deepfer_resnet, deepfer_resnet_wide)."),
    epochs: Optional[int] = typer.Option(None, min=1),
    batch_size: Optional[int] = typer.Option(None, min=1),
    lr: Optional[float] = typer.Option(None),
    optimizer: Optional[str] = typer.Option(None, help="sgd or adamw."),
    class_balance: Optional[str] = typer.Option(None, help="none, weights or sampler."),
    patience: Optional[int] = typer.Option(None, min=1, help="Early stopping patience in epochs."),
    seed: Optional[int] = typer.Option(None),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
    init: Optional[Path] = typer.Option(None, help="Fine-tune from this checkpoint (or a shipped model name)."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run from its last.pt."),
    limit_per_class: Optional[int] = typer.Option(None, min=1, help="Use at most N images per class (quick runs)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the training step (train.compile)."),
) -> None:
    """Train an emotion classifier."""
    import numpy as np

    from classifier.data import load_dataset
    from classifier.inference import resolve_weights
    from classifier.train import train as run_training

    settings = settings_from(ctx, train=dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                                             class_balance=class_balance, patience=patience, seed=seed, device=device,
                                             compile=compile))
    if resume is not None and not resume.is_file():
        raise UserError(f"checkpoint to resume not found: {resume}")
    init_path = resolve_weights(str(init)) if init is not None else None
    cache = settings.paths.data_dir / "cache"
    train_set = load_dataset(data, cache_dir=cache)
    val_set = load_dataset(val, cache_dir=cache) if val is not None else None
    if limit_per_class:
        rng = np.random.default_rng(settings.train.seed)
        keep = np.concatenate([rng.permutation(np.flatnonzero(train_set.labels == c))[:limit_per_class]
                               for c in np.unique(train_set.labels)])
        train_set = train_set.subset(np.sort(keep))
    console.print(f"training {init_path and 'from ' + str(init_path) or settings.train.model} on {len(train_set)} faces"
                  + (f", validating on {len(val_set)}" if val_set else ""))
    with progress() as bar:
        task = bar.add_task("epochs", total=settings.train.epochs, info="")

        def on_epoch(r, total):
            bar.update(task, completed=r.epoch, info=f"loss {r.train_loss:.3f} acc {r.train_acc:.3f} val {r.val_acc:.3f}")

        result = run_training(settings.train, train_set, val_set, out, init=init_path, resume=resume, on_epoch=on_epoch)
    console.print(f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}"
                  f" ({result.epochs_run} epochs, {result.seconds:.0f} s{', stopped early' if result.stopped_early else ''});"
                  f" weights: {out / 'best.pt'}")


# --- evaluate (classifier) ---
@app.command()
@user_errors
def evaluate(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="Labelled faces: a <class>/ folder tree, fer2013.csv or fer2013.csv:PublicTest."),
    json_out: Path = typer.Option(..., "--json", help="Write the report here (top-level 'accuracy' in [0, 1])."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    tta: bool = typer.Option(False, "--tta", help="Average each face with its mirror image."),
    confusion_png: Optional[Path] = typer.Option(None, "--confusion-png", help="Normalized confusion matrix (default: next to --json)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Accuracy, per-class precision/recall/F1, macro and weighted F1, and the confusion matrix."""
    from rich.table import Table

    from classifier.data import load_dataset
    from classifier.evaluate import evaluate as run_evaluation, save_confusion_png
    from classifier.inference import EmotionClassifier

    settings = settings_from(ctx, classifier=dict(weights=weights, device=device, tta=tta or None))
    clf = EmotionClassifier.load(settings.classifier.weights, settings.classifier.device, tta=settings.classifier.tta)
    dataset = load_dataset(data, cache_dir=settings.paths.data_dir / "cache")
    report = run_evaluation(clf, dataset)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(report.to_json())
    png = confusion_png or json_out.with_suffix(".png")
    save_confusion_png(report, png)
    table = Table(title=f"{report.model} on {report.samples} faces: accuracy {report.accuracy:.2%}, macro F1 {report.macro_f1:.3f}")
    for col in ("class", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="right")
    for name, m in report.per_class.items():
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    Console().print(table)
    console.print(f"report: {json_out}  confusion matrix: {png}")


# --- predict, bench classifier (detectors + classifier) ---
def int_list(text: str, option: str) -> list[int]:
    """``"1,32,256"`` -> ``[1, 32, 256]``, or a one-line error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} must list numbers >= 1, got {text!r}")
    return values


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


@app.command()
@user_errors
def predict(
    ctx: typer.Context,
    images: list[Path] = typer.Argument(..., help="Image files (JPEG, PNG, ...)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list on stdout instead of tables."),
    detector: Optional[str] = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    tta: bool = typer.Option(False, "--tta", help="Average each face with its mirror image."),
) -> None:
    """Find the faces in still images and print each one's emotion and the 7 probabilities."""
    from PIL import Image, UnidentifiedImageError
    from rich.table import Table

    from classifier import EMOTIONS
    from classifier.inference import EmotionClassifier
    from classifier.predict import analyze_image, load_image
    from detectors import build_detector

    settings = settings_from(ctx, classifier=dict(weights=weights, tta=tta or None), detector=dict(kind=detector))
    for path in images:  # check every input before any work, so a typo in the last one costs nothing
        if not path.is_file():
            raise UserError(f"image not found: {path}" if not path.exists() else f"not a file: {path}")
        try:
            Image.open(path).close()
        except (UnidentifiedImageError, OSError):
            raise UserError(f"{path} is not an image PIL can read") from None
    clf = EmotionClassifier.load(settings.classifier.weights, settings.classifier.device, tta=settings.classifier.tta)
    det = build_detector(settings.detector)
    out = Console() if sys.stdout.isatty() else Console(width=160)  # pipes get whole rows, not 80-column wraps
    report = []
    for path in images:
        faces = analyze_image(load_image(path), det, clf, settings.classifier.crop_margin)
        report.append({"image": str(path), "faces": [
            {k: v for k, v in f.to_dict().items() if k in ("box", "emotion", "confidence", "probabilities")} for f in faces]})
        if not faces:
            (console if as_json else out).print(f"no face found in {path}", highlight=False, soft_wrap=True)
        elif not as_json:
            table = Table(title=f"{path}: {len(faces)} face{'s' * (len(faces) > 1)} ({det.name}, {clf.name})")
            for col in ("face", "box x1,y1,x2,y2", "emotion", *EMOTIONS):
                table.add_column(col, justify="right", no_wrap=True)
            for i, f in enumerate(faces):
                table.add_row(str(i), ",".join(f"{v:.0f}" for v in f.box.xyxy), f"{f.emotion} {f.confidence:.0%}",
                              *(f"{p:.3f}" for p in f.probabilities))
            out.print(table)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")


@bench_app.command("classifier")
@user_errors
def bench_classifier_cmd(
    ctx: typer.Context,
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    batch_sizes: str = typer.Option("1,32,256", help="Comma-separated batch sizes."),
    seconds: float = typer.Option(3.0, min=0.0, help="Time spent per batch size and device."),
    devices: str = typer.Option("auto", help="auto (CPU, plus CUDA when present), cpu or cuda."),
) -> None:
    """Classifier faces/s and per-batch latency (mean, p50, p95 ms) per batch size, on CPU and GPU."""
    import torch

    from classifier.bench import bench_classifier
    from classifier.inference import EmotionClassifier
    from streamer.machine_info import machine_info

    settings = settings_from(ctx, classifier=dict(weights=weights))
    sizes = int_list(batch_sizes, "--batch-sizes")
    if devices not in ("auto", "cpu", "cuda"):
        raise UserError(f"--devices must be auto, cpu or cuda, got {devices!r}")
    names = (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]) if devices == "auto" else [devices]
    rows = []
    for name in names:
        clf = EmotionClassifier.load(settings.classifier.weights, name, tta=settings.classifier.tta)
        console.print(f"benchmarking {clf.name} ({clf.path}) on {name}, batch sizes {sizes}, {seconds:g} s each", soft_wrap=True)
        rows += bench_classifier(clf, sizes, seconds)
    result = {"benchmark": "classifier", "model": clf.name, "weights": str(clf.path), "tta": settings.classifier.tta,
              "seconds_per_point": seconds, "machine": machine_info(), "results": rows}
    write_json(json_out, result)
    for r in rows:
        lat = r["latency_ms"]
        console.print(f"{r['device']:>5} batch {r['batch_size']:>4}: {r['faces_per_s']:9.1f} faces/s, latency ms"
                      f" mean {lat['mean']:.2f} p50 {lat['p50']:.2f} p95 {lat['p95']:.2f}", highlight=False, soft_wrap=True)
    console.print(f"wrote {json_out}")


@bench_app.command("detector")
@user_errors
def bench_detector_cmd(
    ctx: typer.Context,
    source: Path = typer.Option(..., help="A video file; its first --frames frames are decoded once, then detected."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    frames: int = typer.Option(120, min=1, help="Frames to decode and detect."),
    detector: Optional[str] = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    max_side: Optional[str] = typer.Option(None, help="Comma-separated long-side limits (default: detector.max_side)."),
    batch_size: Optional[str] = typer.Option(None, help="Comma-separated frames per call (default: 1 and detector.batch_size)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda (default: detector.device)."),
    min_face_size: Optional[int] = typer.Option(None, help="Smallest face in original pixels (default: detector.min_face_size)."),
    batched: Optional[bool] = typer.Option(None, "--batched/--stock", help="MTCNN tensor post-processing (default: detector.mtcnn_batched)."),
) -> None:
    """Detection frames/s and faces found per max_side and batch size, on real video frames."""
    from detectors.bench import bench_detector, read_frames
    from streamer.machine_info import machine_info

    settings = settings_from(ctx, detector=dict(kind=detector, device=device, min_face_size=min_face_size, mtcnn_batched=batched))
    sides = int_list(max_side, "--max-side") if max_side else [settings.detector.max_side]
    sizes = int_list(batch_size, "--batch-size") if batch_size else sorted({1, settings.detector.batch_size})
    clip = read_frames(source, frames)
    h, w = clip[0].shape[:2]
    console.print(f"{settings.detector.kind} on {len(clip)} frames of {source} ({w}x{h}), max_side {sides}, batch {sizes}", soft_wrap=True)
    rows = bench_detector(settings.detector, clip, sides, sizes)
    write_json(json_out, {"benchmark": "detector", "source": str(source), "frame_size": [w, h],
                          "settings": settings.detector.model_dump(mode="json"), "machine": machine_info(), "results": rows})
    for r in rows:
        console.print(f"{r['detector']} max_side {r['max_side']:>5} batch {r['batch_size']:>3}: {r['fps']:7.2f} fps"
                      f" ({r['ms_per_frame']:.1f} ms/frame), faces {r['faces_found']} in {r['frames_with_face']}/{r['frames']} frames",
                      highlight=False, soft_wrap=True)
    console.print(f"wrote {json_out}")


# --- run, bench pipeline (streaming pipeline) ---
@app.command("run")
@user_errors
def run_cmd(
    ctx: typer.Context,
    source: list[str] = typer.Option(..., "--source", "-s", help="Video file, rtsp:// or rtsps:// URL, /dev/videoN or a webcam index; repeat for more cameras."),
    camera_id: list[str] = typer.Option([], "--camera-id", help="Id of the matching --source (default: derived from its URI)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Annotated MP4 (x-<camera>.mp4 per camera when several)."),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Per-camera counts, fps, latency and per-face results."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    detector: Optional[str] = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    detect_every: Optional[int] = typer.Option(None, min=1, help="Detect on every k-th frame, carrying boxes between."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda (detector and classifier)."),
    file_rate: Optional[str] = typer.Option(None, help="Files: asap (every frame, as fast as possible) or realtime."),
    track: bool = typer.Option(True, "--track/--no-track", help="Track faces and smooth emotions per camera."),
    redis_url: Optional[str] = typer.Option(None, "--redis", help="Store people and emotions in this Redis (default: redis.url, else 127.0.0.1:6379, else an embedded one)."),
    no_redis: bool = typer.Option(False, "--no-redis", help="Do not store anything in Redis."),
) -> None:
    """Analyse cameras and video files. Files end at end of stream; live sources run until Ctrl-C (outputs are flushed)."""
    from streamer.run import run_command

    settings = settings_from(ctx, classifier=dict(weights=weights, device=device),
                             detector=dict(kind=detector, detect_every=detect_every, device=device),
                             sources=dict(file_rate=file_rate), redis=dict(url=redis_url))
    code = run_command(settings, source, camera_id, output, summary_json, track, console, store=track and not no_redis)
    if code:
        raise typer.Exit(code)


@bench_app.command("pipeline")
@user_errors
def bench_pipeline_cmd(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="A video file, played as N live cameras at its own frame rate."),
    streams: int = typer.Option(1, min=1, help="Concurrent copies of the stream."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    seconds: Optional[float] = typer.Option(None, min=1, help="Stop after this long (default: the file's length)."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    detector: Optional[str] = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    detect_every: Optional[int] = typer.Option(None, min=1),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Per-stream fps, drops, capture-to-result latency p50/p95, CPU/GPU use and the decode/detect/classify split."""
    from streamer.run import bench_command

    settings = settings_from(ctx, classifier=dict(weights=weights, device=device),
                             detector=dict(kind=detector, detect_every=detect_every, device=device))
    bench_command(settings, source, streams, seconds, json_out, console)


@bench_app.command("cluster")
@user_errors
def bench_cluster_cmd(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="A video file, played as live cameras at its own frame rate."),
    cameras: int = typer.Option(2, min=1, help="Cameras (copies of the file) in each configuration."),
    workers: str = typer.Option("1,2", help="Comma-separated worker counts; the machine's CPUs are split between them."),
    seconds: float = typer.Option(10.0, min=1, help="Measuring window, after 3 s of warm-up."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    detect_every: Optional[int] = typer.Option(None, min=1),
) -> None:
    """The same cameras on 1..N Ray workers of a local test cluster: fps, drops, latency, and Redis load per camera."""
    from dashboard.cluster_bench import bench_cluster
    from streamer.sources import probe_file

    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError("bench cluster needs Ray: pip install 'deepfer[cluster]'") from None
    probe_file(source)
    counts = [int(w) for w in workers.split(",") if w.strip().isdigit() and int(w) > 0]
    if not counts:
        raise UserError(f"--workers {workers!r}: give positive counts like 1,2")
    settings = settings_from(ctx, detector=dict(detect_every=detect_every))
    console.print(f"benchmarking {cameras} camera(s) of {source} on {counts} worker(s), {seconds:g} s each")
    result = bench_cluster(settings, source, cameras, counts, seconds)
    write_json(json_out, result)
    for run in result["runs"]:
        console.print(f"{run['workers']} worker(s) x {run['cpus_per_worker']} CPU: {run['total_fps']} fps in all, "
                      f"per camera {[c['fps'] for c in run['per_camera']]} fps, p95 "
                      f"{[c['latency_p95_ms'] for c in run['per_camera']]} ms; Redis per camera {run['redis']}")
    console.print(f"wrote {json_out}")


@bench_app.command("webrtc")
@user_errors
def bench_webrtc_cmd(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="A video file each scripted visitor sends as its camera (looped)."),
    visitors: int = typer.Option(1, min=1, help="Concurrent WebRTC visitors."),
    seconds: float = typer.Option(20.0, min=1, help="Measured time, after a few seconds of warm-up."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    detect_every: Optional[int] = typer.Option(None, min=1),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
) -> None:
    """Live-demo path over loopback WebRTC: arrival-to-send latency p50/p95, fps in/processed/back, drops, CPU."""
    import asyncio

    from streamer.bench import bench_webrtc
    from streamer.machine_info import machine_info
    from streamer.run import load_models
    from streamer.sources import probe_file

    settings = settings_from(ctx, classifier=dict(weights=weights, device=device),
                             detector=dict(detect_every=detect_every, device=device))
    probe_file(source)
    detector, classifier = load_models(settings)
    console.print(f"benchmarking {visitors} WebRTC visitor(s) sending {source} for {seconds:g} s")
    result = asyncio.run(bench_webrtc(settings, detector, classifier, source, visitors, seconds))
    result["machine"] = machine_info()
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2) + "\n")
    t = result["total"]
    console.print(f"{visitors} visitor(s): {t['processed_fps_mean']} processed fps each, arrival-to-send latency "
                  f"p50 {t['latency_p50_ms_max']} ms p95 {t['latency_p95_ms_max']} ms; wrote {json_out}")


# --- people (aggregator) ---
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


def float_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise UserError(f"{option} is empty")
    return values


@app.command()
@user_errors
def people(
    ctx: typer.Context,
    camera: str = typer.Option(..., "--camera", help="Camera id, as deepfer run named it (--camera-id)."),
    redis_url: Optional[str] = typer.Option(None, "--redis", help="Redis URL (default: redis.url, else the local or embedded one)."),
    since: Optional[str] = typer.Option(None, help="Only people seen in the last 90s / 10m / 2h / 7d."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list on stdout instead of a table."),
) -> None:
    """The people a camera has seen: time span, dominant emotion and the emotion shown last."""
    import asyncio
    import time

    from redis.exceptions import RedisError
    from rich.table import Table

    from aggregator.embedded_redis import connect_or_start
    from aggregator.timeseries import EmotionTimeSeries

    settings = settings_from(ctx, redis=dict(url=redis_url))
    window = parse_duration(since, "--since") if since else None
    url, embedded = (settings.redis.url, None) if settings.redis.url else connect_or_start(settings)

    async def query():
        ts = EmotionTimeSeries.from_url(url, settings.redis)
        try:
            found = await ts.people(camera, since=time.time() - window if window else None)
            return found, ([] if found else [c for c, _ in await ts.cameras()])
        finally:
            await ts.aclose()

    try:
        found, cameras = asyncio.run(query())
    except (RedisError, OSError) as exc:
        raise UserError(f"cannot read Redis at {redact(url)}: {exc}") from None
    finally:
        if embedded is not None:
            embedded.stop()
    if not found and camera not in cameras:
        raise UserError(f"no data for camera {camera!r} in Redis at {redact(url)} "
                        f"(cameras: {', '.join(cameras) or 'none'})")
    if as_json:
        sys.stdout.write(json.dumps([p.to_dict() for p in found], indent=2) + "\n")
        return
    if not found:
        console.print(f"nobody seen on camera {camera} in the last {since}")
        return

    def clock(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))

    table = Table(title=f"camera {camera}: {len(found)} {'person' if len(found) == 1 else 'people'}"
                  + (f" in the last {since}" if since else ""))
    for col in ("person", "track", "first seen", "last seen", "span", "dominant", "last shown"):
        table.add_column(col, justify="right" if col in ("track", "span") else "left", no_wrap=True)
    for p in found:
        share = p.emotion_points.get(p.dominant, 0) / p.points if p.points else 0.0
        span = f"{int(p.duration_s // 60)}m{p.duration_s % 60:04.1f}s" if p.duration_s >= 60 else f"{p.duration_s:.1f}s"
        table.add_row(p.person_id, str(p.track_id), clock(p.first_seen), clock(p.last_seen), span,
                      f"{p.dominant} {share:.0%}", f"{p.label} {p.confidence:.0%}")
    (Console() if sys.stdout.isatty() else Console(width=160)).print(table)


@bench_app.command("tracking")
@user_errors
def bench_tracking_cmd(
    ctx: typer.Context,
    source: Path = typer.Option(..., help="A video file; every frame is analysed in order."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    detector: Optional[str] = typer.Option(None, help="mtcnn or haar (default: detector.kind)."),
    detect_every: Optional[int] = typer.Option(None, min=1, help="Detect on every k-th frame, carrying boxes between."),
    max_side: Optional[int] = typer.Option(None, min=64, help="Downscale frames to this long side for detection."),
    device: Optional[str] = typer.Option(None, help="auto, cpu or cuda."),
    half_lives: Optional[str] = typer.Option(None, help="Comma-separated smoothing half-lives (s) to compare (default: smoothing.half_life_s)."),
    switch_margins: Optional[str] = typer.Option(None, help="Comma-separated hysteresis margins to compare (default: smoothing.switch_margin)."),
    max_frames: Optional[int] = typer.Option(None, min=1, help="Stop after this many frames."),
) -> None:
    """Tracks found, and shown-label changes per minute raw (per-frame argmax) vs smoothed, on one video."""
    import time

    from pydantic import ValidationError

    from aggregator.measure import analyse_video, track_results
    from classifier.inference import EmotionClassifier
    from detectors import build_detector
    from streamer.config import SmoothingSettings
    from streamer.machine_info import machine_info

    if not source.is_file():
        raise UserError(f"video not found: {source}")
    settings = settings_from(ctx, classifier=dict(weights=weights, device=device),
                             detector=dict(kind=detector, detect_every=detect_every, max_side=max_side, device=device))
    hls = float_list(half_lives, "--half-lives") if half_lives else [settings.smoothing.half_life_s]  # a sweep
    margins = float_list(switch_margins, "--switch-margins") if switch_margins else [settings.smoothing.switch_margin]
    try:
        combos = [SmoothingSettings(half_life_s=h, switch_margin=m) for h in hls for m in margins]
    except ValidationError as exc:
        raise UserError(f"--half-lives / --switch-margins: {exc.errors()[0]['msg']}") from None
    clf = EmotionClassifier.load(settings.classifier.weights, settings.classifier.device, tta=settings.classifier.tta)
    det = build_detector(settings.detector)
    console.print(f"analysing {source} with {det.name} (detect every {settings.detector.detect_every}) + {clf.name}", soft_wrap=True)
    started = time.perf_counter()
    results = analyse_video(source, det, clf, settings.detector.detect_every, settings.classifier.crop_margin,
                            settings.pipeline.classify_carried, max_frames=max_frames)
    analysis_s = time.perf_counter() - started
    main_run = track_results(results, settings.tracker, settings.smoothing)
    runs = [track_results(results, settings.tracker, c) for c in combos] if half_lives or switch_margins else [main_run]
    report = {"benchmark": "tracking", "source": str(source), "weights": str(clf.path), "model": clf.name,
              "detector": det.name, "detect_every": settings.detector.detect_every,
              "max_side": settings.detector.max_side, "analysis_s": round(analysis_s, 2),
              "tracker": settings.tracker.model_dump(), **{k: v for k, v in main_run.items()},
              "sweep": [{k: v for k, v in r.items() if k != "per_track"} for r in runs] if len(runs) > 1 else [],
              "machine": machine_info()}
    write_json(json_out, report)
    for r in runs:
        console.print(f"half-life {r['half_life_s']:g} s, margin {r['switch_margin']:g}: {r['tracks']} track(s), label changes"
                      f" per minute raw {r['raw_changes_per_min']} vs smoothed {r['smoothed_changes_per_min']}", highlight=False)
    console.print(f"wrote {json_out}")


# --- serve (dashboard) ---
@app.command()
@user_errors
def serve(
    ctx: typer.Context,
    host: Optional[str] = typer.Option(None, help="Address to bind (default: dashboard.host, 127.0.0.1). Anything but loopback needs a token."),
    port: Optional[int] = typer.Option(None, min=0, max=65535, help="Port (default: dashboard.port, 8000)."),
    token: Optional[str] = typer.Option(None, help="API token, 16+ characters (default: dashboard.token). Prefer $DEEPFER_DASHBOARD__TOKEN: flags show in ps."),
    redis_url: Optional[str] = typer.Option(None, "--redis", help="Redis URL (default: redis.url, else 127.0.0.1:6379, else an embedded one)."),
    weights: Optional[str] = typer.Option(None, help="Checkpoint path or shipped model name (default: classifier.weights)."),
    tls_cert: Optional[str] = typer.Option(None, help="PEM certificate: serve HTTPS (browsers give the live demo a camera only over HTTPS or on localhost)."),
    tls_key: Optional[str] = typer.Option(None, help="PEM private key of --tls-cert."),
    cluster: Optional[str] = typer.Option(None, help="Run cameras on the Ray cluster at this address ('auto' or HEAD:PORT; default: cluster.address, empty: in this process)."),
) -> None:
    """Start the dashboard and its API: cameras, live preview, people, metrics, image upload, the live WebRTC demo."""
    import uvicorn

    from aggregator.embedded_redis import connect_or_start
    from classifier.inference import resolve_weights
    from dashboard.app import create_app
    settings = settings_from(ctx, dashboard=dict(host=host, port=port, token=token, tls_cert=tls_cert, tls_key=tls_key),
                             redis=dict(url=redis_url),
                             classifier=dict(weights=weights), cluster=dict(address=cluster))
    resolve_weights(settings.classifier.weights)  # a missing model fails here in one line, not in the server's start-up
    if settings.dashboard.tls_cert:
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(settings.dashboard.tls_cert, settings.dashboard.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise UserError(f"cannot use the TLS certificate {settings.dashboard.tls_cert} with key {settings.dashboard.tls_key}: {exc}") from None
    url, embedded = connect_or_start(settings)  # likewise "no Redis and no redis-server"
    settings = settings.model_copy(update={"redis": settings.redis.model_copy(update={"url": url})})
    if settings.cluster.address:
        from dashboard.cluster import ClusterError, connect

        try:
            connect(settings)  # joins once here, so an unreachable cluster is one line, not a failed start-up
        except ClusterError as exc:
            if embedded is not None:
                embedded.stop()
            raise UserError(str(exc)) from None
        console.print(f"Cameras run on the Ray cluster at {settings.cluster.address}", highlight=False, soft_wrap=True)
    d = settings.dashboard
    shown = f"[{d.host}]" if ":" in d.host else d.host
    console.print(f"Redis: {redact(url)}" + (" (embedded, data in " + str(embedded.dir) + ")" if embedded else ""),
                  highlight=False, soft_wrap=True)
    scheme = "https" if d.tls_cert else "http"
    console.print(f"DeepFER dashboard on {scheme}://{shown}:{d.port}/ (live demo: /demo)"
                  + (" (API token required)" if d.token else ""), highlight=False, soft_wrap=True)
    tls = {"ssl_certfile": d.tls_cert, "ssl_keyfile": d.tls_key} if d.tls_cert else {}
    try:
        uvicorn.run(create_app(settings), host=d.host, port=d.port, log_level="info", timeout_graceful_shutdown=5,
                    log_config=uvicorn_log_config(secret_values(settings)), **tls)
    finally:
        if embedded is not None:
            embedded.stop()


def uvicorn_log_config(secrets: list[str]) -> dict[str, Any]:
    """uvicorn's own logging set-up, with its handlers (which do not go through the root logger) redacted too."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactFilter, "secrets": secrets}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config


if __name__ == "__main__":
    app()
