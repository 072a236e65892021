"""Benchmarks of speed: the classifier, the detector, the live pipeline, the events out and motion gating."""

from __future__ import annotations

from pathlib import Path

import typer

from deepfer.common import UserError, int_list, say, settings_from, user_errors, write_json
from deepfer.options import Detector, Device, JsonOut, Weights

app = typer.Typer()


@app.command()
@user_errors
def classifier(
    ctx: typer.Context,
    *,
    json_out: JsonOut,
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

    from deepfer_bench.classifier import bench_classifier

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


@app.command()
@user_errors
def detector(
    ctx: typer.Context,
    *,
    source: Path = typer.Option(..., help="A video file; its first --frames frames are decoded once, then detected."),
    json_out: JsonOut,
    frames: int = typer.Option(120, min=1, help="Frames to decode and detect."),
    detector: Detector = None,
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
    from deepfer_bench.detector import bench_detector
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


@app.command()
@user_errors
def pipeline(
    ctx: typer.Context,
    *,
    source: str | None = typer.Option(None, "--source", help="A video file, played as N live cameras at its own "
                                      "frame rate (or --scene)."),
    scene: str | None = typer.Option(None, help="A generated 1080p 25 fps camera instead of --source: crowd, single "
                                     "or empty (made from --media, cached in the temp folder)."),
    streams: int = typer.Option(1, "--streams", "--cameras", min=1, help="Concurrent live cameras."),
    json_out: JsonOut = Path("deepfer_bench/results/pipeline_live.json"),
    seconds: float | None = typer.Option(None, min=1, help="Stop after this long (default: the file's length)."),
    media: Path = typer.Option(Path("../shared/media"), help="Shared media folder the --scene clips are made from."),
    weights: Weights = None,
    detector: Detector = None,
    detect_every: int | None = typer.Option(None, min=1),
    device: Device = None,
) -> None:
    """Per-stream fps, drops, capture-to-result latency p50/p95, CPU/GPU use and the decode/detect/classify split."""
    import tempfile

    from deepfer_bench.crowd_clip import CrowdTruth
    from deepfer_bench.pipeline_speed import SCENES, bench_pipeline, scene_clip
    from streamer.media import probe_video

    if (source is None) == (scene is None):
        raise UserError("give one of --source FILE or --scene crowd|single|empty")
    truth: CrowdTruth | None = None  # the crowd clip's: recall and precision in the JSON
    if scene is not None:
        if scene not in SCENES:
            raise UserError(f"--scene: {scene!r} is not one of {', '.join(SCENES)}")
        if not media.is_dir():
            raise UserError(f"--scene clips are made from {media} (--media): not found")
        source, truth = scene_clip(scene, Path(tempfile.gettempdir()) / "deepfer-crowd", media,
                                   media.parent / "datasets/fer2013/test", seconds or 20.0)
    assert source is not None
    probe_video(source)
    settings = settings_from(
        ctx,
        classifier=dict(weights=weights, device=device),
        detector=dict(kind=detector, detect_every=detect_every, device=device),
    )
    result = bench_pipeline(settings, source, streams, seconds, say, truth)
    write_json(json_out, result)
    t = result["total"]
    say(
        f"{streams} stream(s): {t['fps_per_stream_mean']} fps each (min {t['fps_per_stream_min']}), "
        f"dropped {t['frames_dropped']}/{t['frames_read']}, latency p50 {t['latency_p50_ms_max']} ms "
        f"p95 {t['latency_p95_ms_max']} ms, {result['utilisation']['cores_busy_per_camera']} cores per camera"
    )
    if "accuracy" in result:
        a = result["accuracy"]
        say(f"ground truth, on the {a['frames_scored']} analysed frames: recall {a['recall']} (>= 32 px "
            f"{a['recall_32_up']}), precision {a['precision']}, by size {a['recall_by_size']}")


@app.command()
@user_errors
def events(
    ctx: typer.Context,
    *,
    source: str = typer.Option(..., "--source", help="A video file, played as N live cameras at its own frame rate."),
    streams: int = typer.Option(8, min=1, help="Concurrent copies of the stream."),
    seconds: float = typer.Option(10.0, min=1, help="Measuring window."),
    mqtt: str = typer.Option("127.0.0.1:1883", help="The MQTT broker HOST:PORT events go to."),
    webhook: list[str] = typer.Option([], help="Also POST the events to this URL (repeatable)."),
    repeats: int = typer.Option(3, min=1, help="Runs with events and as many without (alternating); medians."),
    loopback_webhook: bool = typer.Option(True, help="POST every payload to a webhook receiver of the bench's own "
                                                     "on loopback (a separate process)."),
    json_out: JsonOut,
    detect_every: int | None = typer.Option(None, min=1),
    device: Device = None,
) -> None:
    """CPU of events out (the events sink, MQTT and webhook threads) as a share of the whole process, and the
    process's CPU per frame with and without events (medians of --repeats runs; load average in the JSON)."""
    from deepfer_bench.events_cost import bench_events

    host, _, port = mqtt.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--mqtt must be HOST:PORT, got {mqtt!r}")
    settings = settings_from(
        ctx,
        classifier=dict(device=device),
        detector=dict(detect_every=detect_every, device=device),
        mqtt=dict(enabled=True, host=host, port=int(port)),
        webhooks=dict(hooks=[{"url": u, "secret": "bench"} for u in webhook] or None),
    )
    result = bench_events(settings, source, streams, seconds, say, repeats=repeats, loopback_webhook=loopback_webhook)
    write_json(json_out, result)
    m, load = result["median"], result["load_average"]
    say(f"{streams} stream(s), median of {repeats}: events {m['events_share_pct']}% of the process; CPU per frame "
        f"{m['cpu_ms_per_frame_with_events']} ms with events, {m['cpu_ms_per_frame_without_events']} ms without "
        f"({m['difference_pct']:+}%); load average {load['before'][0]} before, {load['after'][0]} after")


@app.command()
@user_errors
def gating(
    ctx: typer.Context,
    *,
    json_out: JsonOut,
    media: Path = typer.Option(Path("../shared/media"), help="Folder with woman2.mp4, fer_test.mp4, no-faces.jpg."),
    clips: str = typer.Option("static_scene,still_person,mosaic_1080p,woman2", help="Comma-separated clips."),
    clips_dir: Path = typer.Option(Path(".deepfer/clips"), help="Where the clips are made (once)."),
    frames: int | None = typer.Option(None, min=1, help="At most this many frames of each clip."),
    detect_every: int | None = typer.Option(None, min=1),
    device: Device = None,
) -> None:
    """Detection fps and faces kept with motion gating and refinement against a full detection on every frame."""
    from deepfer_bench.gating import bench_gating

    settings = settings_from(ctx, detector=dict(detect_every=detect_every, device=device))
    names = [c.strip() for c in clips.split(",") if c.strip()]
    write_json(json_out, bench_gating(settings, media, clips_dir, names, frames, say))
