"""Still images: the emotion of each face found (predict), and why the model said it (explain)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from deepfer.common import UserError, console, settings_from, stdout_console, user_errors
from deepfer.options import Detector, Images, JsonFlag, Tta, Weights

app = typer.Typer()

ANNOTATED_SUFFIXES = (".jpg", ".jpeg", ".png")  # what --output writes (OpenCV picks the encoder from the suffix)


@app.command()
@user_errors
def predict(
    ctx: typer.Context,
    images: Images,
    as_json: JsonFlag = False,
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the image with each face's box, number and emotion here (.jpg, .jpeg or "
        ".png; one input image only)."
    ),
    detector: Detector = None,
    weights: Weights = None,
    tta: Tta = False,
) -> None:
    """Find the faces in still images and print each one's emotion and the 7 probabilities; faces are numbered from
    1 in the detector's order (MTCNN: largest first), as in explain and the dashboard."""
    from deepfer_core.types import EMOTIONS
    from streamer.analysis import analyse_files
    from streamer.assembly import load_models
    from streamer.media import check_image, load_image

    settings = settings_from(ctx, classifier=dict(weights=weights, tta=tta or None), detector=dict(kind=detector))
    for path in images:  # every input is checked before the models load
        check_image(path)
    if output is not None:
        if len(images) != 1:
            raise UserError(f"--output takes one input image, got {len(images)}: run predict once per image")
        if output.is_dir():
            raise UserError(f"--output {output} is a folder, not an image file")
        if output.suffix.lower() not in ANNOTATED_SUFFIXES:
            raise UserError(f"--output {output}: the suffix must be one of {', '.join(ANNOTATED_SUFFIXES)}")
    models = load_models(settings)
    out = stdout_console()
    report = []
    for path, faces in analyse_files(images, models.detector, models.classifier, settings.classifier.crop_margin,
                                     settings.confidence):
        report.append(
            {
                "image": str(path),
                "faces": [
                    {"face": i} | {k: v for k, v in f.to_dict().items()
                                   if k in ("box", "emotion", "confidence", "confident", "probabilities")}
                    for i, f in enumerate(faces, start=1)
                ],
            }
        )
        if output is not None:
            _write_annotated(load_image(path), faces, output)
            console.print(f"wrote {output}", highlight=False, soft_wrap=True)
        if not faces:
            (console if as_json else out).print(f"no face found in {path}", highlight=False, soft_wrap=True)
        elif not as_json:
            table = Table(
                title=f"{path}: {len(faces)} face{'s' * (len(faces) > 1)} ({models.detector.name}, "
                f"{models.classifier.name})"
            )
            for col in ("face", "box x1,y1,x2,y2", "emotion", *EMOTIONS):
                table.add_column(col, justify="right", no_wrap=True)
            for i, f in enumerate(faces, start=1):
                table.add_row(
                    str(i),
                    ",".join(f"{v:.0f}" for v in f.box.xyxy),
                    f"{f.emotion} {f.confidence:.0%}",
                    *(f"{p:.3f}" for p in f.probabilities),
                )
            out.print(table)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")


def _write_annotated(image, faces, path: Path) -> None:
    """The image with the boxes and labels ``deepfer run --output`` draws, each face's number where run shows its
    track (``#1 happy 87%``)."""
    import dataclasses

    import cv2

    from streamer.drawing import draw_faces

    numbered = [dataclasses.replace(f, track_id=i) for i, f in enumerate(faces, start=1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(draw_faces(image, numbered), cv2.COLOR_RGB2BGR)):
        raise UserError(f"cannot write {path}")


@app.command()
@user_errors
def explain(
    ctx: typer.Context,
    images: Images,
    out: Path = typer.Option(
        ..., "--out", help="Folder for the pictures: <image>-face<N>.png, N from 1 in the detector's order, as predict "
        "numbers them."
    ),
    emotion: str | None = typer.Option(
        None, "--class", help="Explain this emotion on every face (default: each face's predicted emotion)."
    ),
    detector: Detector = None,
    weights: str | None = typer.Option(
        None, help="PyTorch checkpoint (.pt) or shipped model name (default: classifier.weights); not .onnx."
    ),
) -> None:
    """Why did it say that? One picture per face: the crop the model saw with its Grad-CAM heat map and the label;
    faces are numbered from 1 in the detector's order (MTCNN: largest first), as in predict and the dashboard."""
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
