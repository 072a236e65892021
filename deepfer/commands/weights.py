"""Commands that write a model file from trained weights: the ONNX export and the temperature calibration."""

from __future__ import annotations

from pathlib import Path

import typer

from deepfer.common import UserError, say, settings_from, user_errors
from deepfer.options import Device

app = typer.Typer()


@app.command()
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


@app.command()
@user_errors
def calibrate(
    ctx: typer.Context,
    data: Path = typer.Option(..., help="Training faces (<class>/ tree or fer2013.csv:Training), never a test split."),
    out: Path = typer.Option(..., help="Write the calibrated checkpoint here (may be the --weights file itself)."),
    weights: str | None = typer.Option(None, help="Checkpoint path or shipped name (default: classifier.weights)."),
    fraction: float = typer.Option(0.1, min=0.01, max=1.0, help="Share of each class held out to fit on."),
    seed: int = typer.Option(0, help="Which faces are held out (train.val_fraction with train.seed holds out the "
                                     "same ones)."),
    degrade: list[str] | None = typer.Option(
        None, help="Fit on the slice under these conditions too (as evaluate --degrade), e.g. clean, size=24, size=16."
    ),
    device: Device = None,
) -> None:
    """Temperature scaling: fit T on held-out training faces, store it in the checkpoint (and so in ONNX exports)."""
    from classifier.calibrate import calibrate as run_calibration
    from classifier.data import load_dataset
    from classifier.degrade import DegradationError, parse_conditions
    from classifier.loading import configured_weights

    settings = settings_from(ctx, classifier=dict(weights=weights, device=device))
    try:
        conditions = parse_conditions(degrade or ["clean"])
    except DegradationError as exc:
        raise UserError(str(exc)) from None
    try:
        faces = load_dataset(data, settings.paths.data_dir / "cache")
        r = run_calibration(configured_weights(settings.classifier), faces, out, fraction, seed, conditions,
                            device or "cpu")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    say(f"temperature {r.temperature:.4f} fitted on {r.faces} faces ({', '.join(r.conditions)}) of {r.data}: NLL "
        f"{r.nll_before:.4f} -> {r.nll_after:.4f}, ECE {r.ece_before:.4f} -> {r.ece_after:.4f}; wrote {out}")
