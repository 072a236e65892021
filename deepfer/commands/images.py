"""Still images: the emotion of each face found (predict), and why the model said it (explain)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from deepfer.common import UserError, console, settings_from, stdout_console, user_errors
from deepfer.options import Detector, Images, Tta, Weights

app = typer.Typer()


@app.command()
@user_errors
def predict(
    ctx: typer.Context,
    images: Images,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list on stdout instead of tables."),
    detector: Detector = None,
    weights: Weights = None,
    tta: Tta = False,
) -> None:
    """Find the faces in still images and print each one's emotion and the 7 probabilities."""
    from deepfer_core.types import EMOTIONS
    from streamer.analysis import analyse_files
    from streamer.assembly import load_models
    from streamer.media import check_image

    settings = settings_from(ctx, classifier=dict(weights=weights, tta=tta or None), detector=dict(kind=detector))
    for path in images:  # every input is checked before the models load
        check_image(path)
    models = load_models(settings)
    out = stdout_console()
    report = []
    for path, faces in analyse_files(images, models.detector, models.classifier, settings.classifier.crop_margin,
                                     settings.confidence):
        report.append(
            {
                "image": str(path),
                "faces": [
                    {k: v for k, v in f.to_dict().items()
                     if k in ("box", "emotion", "confidence", "confident", "probabilities")}
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
    images: Images,
    out: Path = typer.Option(..., "--out", help="Folder for the pictures: <image>-face<N>.png, N from 1."),
    emotion: str | None = typer.Option(
        None, "--class", help="Explain this emotion on every face (default: each face's predicted emotion)."
    ),
    detector: Detector = None,
    weights: str | None = typer.Option(
        None, help="PyTorch checkpoint (.pt) or shipped model name (default: classifier.weights); not .onnx."
    ),
) -> None:
    """Why did it say that? One picture per face: the crop the model saw with its Grad-CAM heat map and the label."""
    import cv2

    from streamer.analysis import emotion_index, explain_image
    from streamer.assembly import build_explainer, load_models
    from streamer.media import check_image, load_image

    settings = settings_from(ctx, classifier=dict(weights=weights), detector=dict(kind=detector))
    target = emotion_index(emotion)
    for path in images:  # every input is checked before the models load
        check_image(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    models = load_models(settings)
    explainer = build_explainer(settings, models)
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
