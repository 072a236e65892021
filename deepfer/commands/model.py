"""The classifier itself: train it and measure it."""

from __future__ import annotations

import sys
from pathlib import Path

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

from deepfer.common import UserError, console, say, settings_from, user_errors
from deepfer.options import Device, JsonFlag, ShowProgress, Tta, Weights

app = typer.Typer()


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="Training data: a <class>/ folder tree, fer2013.csv, or fer2013.csv:Training."),
    out: Path = typer.Option(..., help="Run folder for best.pt, last.pt, log.csv, log.json and curves.png."),
    val: Path | None = typer.Option(
        None, help="Validation data (same forms as --data); else train.val_fraction of --data."
    ),
    model: str | None = typer.Option(
        None, help="Architecture (baseline_cnn, deepfer_resnet, deepfer_resnet_wide, deepfer_resnet18, deepfer_vgg)."
    ),
    epochs: int | None = typer.Option(None, min=1),
    batch_size: int | None = typer.Option(None, min=1),
    lr: float | None = typer.Option(None),
    optimizer: str | None = typer.Option(None, help="sgd or adamw."),
    class_balance: str | None = typer.Option(None, help="none, weights or sampler."),
    patience: int | None = typer.Option(None, min=1, help="Early stopping patience in epochs."),
    seed: int | None = typer.Option(None),
    device: Device = None,
    init: Path | None = typer.Option(None, help="Fine-tune from this checkpoint (or a shipped model name)."),
    resume: Path | None = typer.Option(None, help="Continue an interrupted run from its last.pt."),
    limit_per_class: int | None = typer.Option(None, min=1, help="Use at most N images per class (quick runs)."),
    compile: bool | None = typer.Option(
        None, "--compile/--no-compile", help="torch.compile the training step (train.compile)."
    ),
    time_budget_s: float | None = typer.Option(
        None, min=0, help="Wall-clock budget in seconds, data loading included: plan the cosine for the epochs that "
        "fit (measured on the first ones), then stop with a finished best.pt (train.time_budget_s)."
    ),
    teacher: list[Path] | None = typer.Option(
        None, help="Distil from this checkpoint, shipped model name or ensemble manifest (.json/.toml); repeat for an "
        "ensemble of teachers."
    ),
    distill_alpha: float | None = typer.Option(None, min=0, max=1, help="Weight of the teacher's soft labels."),
    distill_temperature: float | None = typer.Option(None, min=0.01, help="Softmax temperature of distillation."),
) -> None:
    """Train an emotion classifier (optionally distilled from a teacher, within a time budget)."""
    import time

    began = time.time()
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
            time_budget_s=time_budget_s,
            distill_alpha=distill_alpha,
            distill_temperature=distill_temperature,
        ),
    )
    if resume is not None and not resume.is_file():
        raise UserError(f"checkpoint to resume not found: {resume}")
    init_path = resolve_weights(str(init)) if init is not None else None
    teachers = [resolve_weights(str(t)) for t in teacher or []]
    train_set, val_set = load_training_data(
        data, val, settings.paths.data_dir / "cache", limit_per_class, settings.train.seed
    )
    say(
        f"training {init_path and 'from ' + str(init_path) or settings.train.model} on {len(train_set)} faces"
        + (f", validating on {len(val_set)}" if val_set else "")
        + (f", distilled from {', '.join(map(str, teachers))}" if teachers else "")
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
                task, completed=r.epoch, total=total,
                info=f"loss {r.train_loss:.3f} acc {r.train_acc:.3f} val {r.val_acc:.3f}",
            )

        result = run_training(settings.train, train_set, val_set, out, init=init_path, resume=resume,
                              on_epoch=on_epoch, teachers=teachers, started=began)
    say(
        f"best validation accuracy {result.best_val_acc:.4f} at epoch {result.best_epoch}"
        f" ({result.epochs_run} of {result.planned_epochs} planned epochs, {result.seconds:.0f} s, stopped by"
        f" {result.stop_reason.replace('_', ' ')}); weights: {out / 'best.pt'}"
    )


@app.command()
@user_errors
def evaluate(
    ctx: typer.Context,
    data: Path = typer.Option(
        ..., help="Labelled faces: a <class>/ folder tree, fer2013.csv or fer2013.csv:PublicTest."
    ),
    report_path: Path | None = typer.Option(
        None, "--report", help="Write the JSON report to this file (top-level 'accuracy' in [0, 1]) and the "
        "confusion matrix next to it."
    ),
    as_json: JsonFlag = False,
    weights: Weights = None,
    tta: Tta = False,
    confusion_png: Path | None = typer.Option(
        None, "--confusion-png", help="Normalized confusion matrix (default: next to --report)."
    ),
    device: Device = None,
    degrade: list[str] | None = typer.Option(
        None, help="Measure on degraded faces instead: size=24 (shrunk to 24 px and back), blur=1.5 (Gaussian "
        "sigma), jpeg=30 (quality), noise=8, combined with commas; repeat for several conditions, or 'sweep'.",
    ),
    progress: ShowProgress = None,
) -> None:
    """Accuracy, per-class precision/recall/F1, macro and weighted F1, calibration error (ECE) and the confusion
    matrix; with --degrade, accuracy, macro F1 and ECE per degradation. --report writes the report to a file,
    --json prints it on stdout."""
    from deepfer.progress import bar, wanted

    settings = settings_from(ctx, classifier=dict(weights=weights, device=device, tta=tta or None))
    with bar("faces/s", wanted(progress, as_json)) as shown:
        task = shown.add_task("faces", total=None)

        def on_progress(done: int, total: int) -> None:
            shown.update(task, completed=done, total=total)

        if degrade:
            _evaluate_degraded(settings, data, report_path, degrade, as_json, on_progress)
            return
        from classifier.evaluate import evaluate_to_files

        report, png = evaluate_to_files(
            settings.classifier, data, report_path, confusion_png, settings.paths.data_dir / "cache", on_progress
        )
    if as_json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        table = Table(
            title=f"{report.model} on {report.samples} faces: accuracy {report.accuracy:.2%}, macro F1 "
            f"{report.macro_f1:.3f}, ECE {report.ece:.3f}"
        )
        for col in ("class", "precision", "recall", "F1", "support"):
            table.add_column(col, justify="right")
        for name, m in report.per_class.items():
            table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
        Console().print(table)
    written = [f"report: {report_path}"] * (report_path is not None) + [f"confusion matrix: {png}"] * (png is not None)
    if written:
        say("  ".join(written))


def _evaluate_degraded(settings, data: Path, report_path: Path | None, degrade: list[str], as_json: bool,
                       on_progress) -> None:
    import json

    from classifier.data import load_dataset
    from classifier.degrade import DegradationError, parse_conditions
    from classifier.evaluate import robustness
    from classifier.loading import build_classifier

    try:
        conditions = parse_conditions(degrade)
    except DegradationError as exc:
        raise UserError(str(exc)) from None
    result = robustness(build_classifier(settings.classifier), load_dataset(data, settings.paths.data_dir / "cache"),
                        conditions, on_progress)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(result, indent=1))
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
    else:
        table = Table(title=f"{result['model']} on {result['samples']} degraded faces "
                            f"(T = {result['temperature']:.3f})")
        for col in ("degradation", "accuracy", "macro F1", "ECE"):
            table.add_column(col, justify="right")
        for c in result["conditions"]:
            table.add_row(c["degradation"], f"{c['accuracy']:.2%}", f"{c['macro_f1']:.3f}", f"{c['ece']:.3f}")
        Console().print(table)
    if report_path is not None:
        say(f"report: {report_path}")
