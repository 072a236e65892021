"""The GPU session's plan: its stages in order, each one's estimated cost, what it needs carried, and the deepfer
commands it runs (built from what the CLI offers now: `--model` choices, `--teacher`, `--time-budget-s`).
scripts/gpu_session.py runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpu_session import Session

REPO = Path(__file__).resolve().parents[1]

STREAMS = (1, 8, 16, 32)
STOCK_STREAMS = (16,)  # facenet's own post-processing beside the batched one at 16 streams
SMALL_MODELS = {"deepfer_resnet", "baseline_cnn"}  # the CPU default (distillation's student) and the origin CNN
LARGE_FIRST = ("deepfer_resnet18", "deepfer_vgg")  # the from-scratch FER2013 records' architectures before our own
CLIPS = ("mosaic_1080p.mp4",)  # 1920x1080, 9 faces a frame, made by scripts/gpu_bundle.sh; the first found is used
# The ensemble evaluated after the large models: every large model trained (this session or an earlier one whose
# gpu_out came back) with the shipped CPU models, whichever of these classifier/weights holds (different
# architectures and training: what an ensemble gains from), written as gpu_out/ensemble/gpu_ensemble.ensemble.json.
ENSEMBLE_SHIPPED = ("deepfer_resnet", "deepfer_resnet_robust")
ENSEMBLE_NAME = "gpu_ensemble"  # classifier.auto_cuda's first candidate, once shipped in classifier/weights/
DECODE_THREADS = "2"  # sources.decode_threads of the pipeline runs: frame threads per stream, 64 for 32 streams

# Estimated seconds per stage on one H200 (start-up, model loading and CUDA warm-up included). Not measured yet:
# each session writes the measured ones to costs.json; pass that file back with --costs to plan on them.
# Training runs get `--time-budget-s` (the estimate less TRAIN_SLACK_S: start-up, data loading, the last epoch), so
# their costs are what the plan gives them: the models call (380 s) fits one large model, its evaluation, the
# distillation, the ensemble's evaluation and the classifier benchmark (330 s with 35 s of set-up and the 15 s kept
# for the last pack; tests/scripts/test_gpu_session.py checks both calls' sums).
CUDA_COSTS = {"pipeline": 35.0, "bench_stock": 45.0, "detector": 30.0, "train": 150.0, "evaluate": 25.0,
              "distill": 90.0, "ensemble": 25.0, "bench_classifier": 40.0}
TRAIN_SLACK_S = 30.0
# Seconds each call spends before its first stage (estimates): installing the wheels (PyAV's 34 MiB in the bench
# call), unpacking FER2013 (the models call), the preflight imports and the CLI's --help reads.
SETUP_COSTS = {"bench": 25.0, "models": 35.0}
CALL_BUDGETS = {"bench": 290.0, "models": 380.0}  # the --budget-s of the two calls docs/gpu.md gives
CUDA_EPOCHS = 60  # per large model when deepfer train has no --time-budget-s
SMALL_COSTS = {"pipeline": 40.0, "bench_stock": 40.0, "detector": 30.0, "train": 60.0, "evaluate": 30.0,
               "distill": 60.0, "ensemble": 40.0, "bench_classifier": 30.0}


@dataclass
class Stage:
    name: str
    kind: str  # key of the cost table
    needs: tuple[str, ...]  # "media" and/or "data": what must have been carried
    commands: Callable[[Session], list[list[str]] | str]  # the deepfer argv lists, or why the stage cannot run
    env: dict[str, str] = field(default_factory=dict)
    then: str | None = None  # kind of a later stage whose time this one leaves (a training run's evaluation)
    inputs: Callable[[Session], list[Path]] = lambda s: []  # files that, when newer than done.json, make it stale


HEADLINE = ("accuracy", "macro_f1", "epochs_run", "planned_epochs", "stop_reason", "speedup", "recall_of_stock_faces",
            "total.fps_per_stream_mean", "total.fps_per_stream_min", "total.latency_p95_ms_max",
            "utilisation.gpu_percent_mean", "utilisation.process_cores_busy", "batching.detect_full.mean_batch",
            "batching.detect_full.batch_p95", "batching.detect_full.fill", "batching.detect_full.wait_ms_p95",
            "batching.classify.mean_batch", "batching.classify.fill")


def headline(folder: Path) -> dict[str, dict]:
    """The few figures of each JSON a stage wrote (accuracy, fps, p95...), for summary.json."""
    found: dict[str, dict] = {}
    for path in sorted(folder.rglob("*.json")):
        if path.name == "done.json":
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if path.name == "log.json" and isinstance(data, list) and data:  # a training run's epochs
            found[str(path.relative_to(folder))] = {
                "epochs": len(data), "best_val_acc": max(r.get("val_acc", 0) for r in data),
                "epoch_s_mean": round(sum(r.get("seconds", 0) for r in data) / len(data), 2)}
            continue
        picked = {}
        for key in HEADLINE:
            value = data
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None:
                picked[key] = value
        if picked:
            found[str(path.relative_to(folder))] = picked
    return found


def plan(s: Session) -> list[Stage]:
    """The stages, in the order they run: (1) pipeline and detector benchmarks, (2) training of the large models,
    (3) evaluation with and without TTA, (4) distillation of the CPU default from the first large model (straight
    after it: the CPU model is what ships, so a second large model comes after it), then the ensemble of the
    trained models with the shipped ones, with and without TTA, (5) the classifier benchmark."""
    a, dev = s.args, s.args.device
    secs = ["--seconds", "1"] if a.small else ["--seconds", str(a.pipeline_seconds)]
    streams = (1,) if a.small else STREAMS
    stock_streams = () if a.small else STOCK_STREAMS
    frames = "4" if a.small else "60"
    stock_frames = "4" if a.small else "30"  # stock facenet MTCNN runs on the CPU, one full 1080p frame a call
    stages: list[Stage] = []

    def pipeline(n: int, batched: bool) -> Callable[[Session], list[list[str]]]:
        kind = "batched" if batched else "stock"
        return lambda s: [s.deepfer("bench", "pipeline", "--source", str(s.clip), "--streams", str(n), *secs,
                                    "--device", dev, "--out", str(s.stage_dir(f"pipeline_{kind}_{n}") / "bench.json"))]

    decode = {"DEEPFER_SOURCES__DECODE_THREADS": DECODE_THREADS}
    for n in streams:
        stages.append(Stage(f"pipeline_batched_{n}", "pipeline", ("media",), pipeline(n, True),
                            {"DEEPFER_DETECTOR__MTCNN_BATCHED": "true", **decode}))
    for n in (1,) if a.small else stock_streams:
        stages.append(Stage(f"pipeline_stock_{n}", "pipeline", ("media",), pipeline(n, False),
                            {"DEEPFER_DETECTOR__MTCNN_BATCHED": "false", **decode}))
    stages.append(Stage("bench_stock", "bench_stock", ("media",), lambda s: [s.deepfer(
        "bench", "stock", "--source", str(s.clip), "--frames", stock_frames,
        "--out", str(s.stage_dir("bench_stock") / "bench.json"))],
        {"DEEPFER_DETECTOR__DEVICE": dev, "DEEPFER_CLASSIFIER__DEVICE": dev}))
    stages.append(Stage("detector", "detector", ("media",), lambda s: [s.deepfer(
        "bench", "detector", "--source", str(s.clip), "--frames", frames, "--device", dev,
        "--batch-size", "1,8" if a.small else "1,8,32", flag, "--out", str(s.stage_dir("detector") / f"{name}.json"))
        for flag, name in (("--batched", "batched"), ("--stock", "stock"))]))

    for i, model in enumerate(s.models()):  # each model evaluated straight after its training: a later one may not fit
        stages.append(Stage(f"train_{model}", "train", ("data",), partial(train_argvs, model=model), then="evaluate"))
        stages.append(Stage(f"evaluate_{model}", "evaluate", ("data",), partial(evaluate_argvs, model=model),
                            inputs=partial(trained, only=model)))
        if i == 0:
            stages.append(Stage("distill", "distill", ("data",), distill_argvs, inputs=partial(trained, only=model)))
    if not s.models():
        stages.append(Stage("distill", "distill", ("data",), distill_argvs))
    stages.append(Stage("ensemble", "ensemble", ("data",), ensemble_argvs, inputs=trained))
    stages.append(Stage("bench_classifier", "bench_classifier", ("data",), bench_classifier_argv, inputs=trained))
    return stages


def trained(s: Session, only: str | None = None) -> list[Path]:
    """The best.pt of every large model trained so far (or of one)."""
    return [b for b in (s.best(m) for m in s.models() if only in (None, m)) if b]


def train_argvs(s: Session, model: str) -> list[list[str]]:
    return [train_argv(s, model)]


def train_argv(s: Session, model: str, teacher: Path | None = None, name: str | None = None) -> list[str]:
    run = s.stage_dir(name or f"train_{model}") / "run"
    argv = s.deepfer("train", "--data", str(s.fer / "train"), "--val", str(s.fer / "test"), "--model", model,
                     "--out", str(run), "--device", s.args.device, "--seed", "0")
    budgeted = "--time-budget-s" in s.help("train")
    if s.args.small:
        argv += ["--epochs", "1", "--batch-size", "32"] + (["--time-budget-s", "600"] if budgeted else [])
    elif budgeted:  # the schedule is planned for the epochs that fit, and the run ends with a finished best.pt
        est = s.costs.get(name or f"train_{model}", s.costs["distill" if teacher else "train"])
        argv += ["--epochs", "200", "--time-budget-s", str(int(max(min(est, s.left()) - TRAIN_SLACK_S, 10)))]
    else:
        argv += ["--epochs", str(s.args.epochs)]
    if teacher is not None:
        argv += ["--teacher", str(teacher)]
    if (run / "last.pt").exists():  # a run cut by an earlier call continues
        argv += ["--resume", str(run / "last.pt")]
    return argv


def evaluate_argvs(s: Session, model: str) -> list[list[str]] | str:
    weights = s.best(model)
    if weights is None:
        return f"no trained weights for {model}"
    folder = s.stage_dir(f"evaluate_{model}")
    return [s.deepfer("evaluate", "--data", str(s.fer / "test"), "--weights", str(weights), "--device",
                      s.args.device, *tta, report_flag(s), str(folder / f"{name}.json"))
            for tta, name in (((), "plain"), (("--tta",), "tta"))]


def distill_argvs(s: Session) -> list[list[str]] | str:
    if "--teacher" not in s.help("train"):
        return "not available (deepfer train has no --teacher yet)"
    teachers = [b for b in (s.best(m) for m in s.models()) if b]
    if not teachers:
        return "no trained teacher"  # distillation's teacher is the first large model trained
    student = s.stage_dir("distill") / "run" / "best.pt"
    return [train_argv(s, "deepfer_resnet", teacher=teachers[0], name="distill"),
            s.deepfer("evaluate", "--data", str(s.fer / "test"), "--weights", str(student), "--device",
                      s.args.device, report_flag(s), str(s.stage_dir("distill") / "evaluate.json"))]


def report_flag(s: Session) -> str:
    """``deepfer evaluate``'s report file: --report since --json became the stdout flag (older checkouts: --json)."""
    return "--report" if "--report" in s.help("evaluate") else "--json"


def ensemble_manifest(s: Session) -> Path:
    return s.stage_dir("ensemble") / f"{ENSEMBLE_NAME}.ensemble.json"


def ensemble_members(s: Session) -> list[str]:
    """The manifest's members: the trained large models' best.pt (relative to the manifest, so the folder can be
    unpacked anywhere and copied beside it), then the shipped CPU models found in classifier/weights."""
    trained_here = [f"../train_{m}/run/best.pt" for m in s.models() if s.best(m)]
    earlier = sorted(f"../{p.parent.parent.name}/run/best.pt" for p in s.out.glob("train_*/run/best.pt"))
    shipped = [n for n in ENSEMBLE_SHIPPED if (REPO / "classifier" / "weights" / f"{n}.pt").is_file()]
    return list(dict.fromkeys(trained_here + earlier)) + shipped


def ensemble_argvs(s: Session) -> list[list[str]] | str:
    """Writes the manifest (equal weights, mean of calibrated probabilities), then evaluates it on PublicTest
    plain and with TTA."""
    members = ensemble_members(s)
    if not any(m.endswith("best.pt") for m in members):
        return "no trained model for the ensemble"
    if len(members) < 2:
        return "one model is no ensemble"
    manifest = ensemble_manifest(s)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    body = {"kind": "ensemble", "combine": "mean_probs", "name": ENSEMBLE_NAME,
            "members": [{"path": m, "weight": 1.0} for m in members]}
    if not manifest.exists() or json.loads(manifest.read_text()) != body:
        manifest.write_text(json.dumps(body, indent=1) + "\n")
    return [s.deepfer("evaluate", "--data", str(s.fer / "test"), "--weights", str(manifest), "--device",
                      s.args.device, *tta, report_flag(s), str(manifest.parent / f"{name}.json"))
            for tta, name in (((), "plain"), (("--tta",), "tta"))]


def bench_classifier_argv(s: Session) -> list[list[str]]:
    weights = ["deepfer_resnet"] + [str(b) for b in (s.best(m) for m in s.models()) if b]
    student = s.stage_dir("distill") / "run" / "best.pt"
    weights += [str(student)] if student.exists() else []
    weights += [str(ensemble_manifest(s))] if ensemble_manifest(s).exists() else []
    small = ["--batch-sizes", "1,8", "--seconds", "0.5"] if s.args.small else ["--batch-sizes", "1,32,256,1024"]
    return [s.deepfer("bench", "classifier", *[a for w in weights for a in ("--weights", w)], *small,
                      "--devices", s.args.device, "--out", str(s.stage_dir("bench_classifier") / "bench.json"))]
