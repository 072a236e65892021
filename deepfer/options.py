"""The flags several commands share, each written once: ``weights: Weights = None`` gives ``--weights`` with its
help. A flag whose help says something only one command means stays with that command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Weights = Annotated[
    str | None,
    typer.Option(help="Checkpoint (.pt), ONNX export (.onnx), ensemble manifest (.json/.toml), shipped model name "
                      "or auto (default: classifier.weights)."),
]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda.")]
Detector = Annotated[
    str | None, typer.Option(help="mtcnn, haar or yunet (default: detector.kind; yunet needs detector.yunet_model).")
]
Tta = Annotated[bool, typer.Option("--tta", help="Average each face with its mirror image.")]
# every --json that is a flag says the same: JSON on stdout, the human-readable text (and progress) on stderr or gone
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the results as JSON on stdout instead of tables; messages go to stderr.")
]
ShowProgress = Annotated[
    bool | None, typer.Option("--progress/--no-progress",
                              help="Progress bar on stderr (default: when stderr is a terminal; never with --json).")
]
Images = Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG, ...).")]
DetectEvery = Annotated[
    int | None, typer.Option(min=1, help="Detect on every k-th frame, carrying boxes between.")
]
RedisUrl = Annotated[
    str | None, typer.Option("--redis", help="Redis URL (default: redis.url, else the local or embedded one).")
]
Cameras = Annotated[list[str] | None, typer.Option("--camera", help="Camera id (repeat for several).")]
# the benchmarks write their results to one JSON file, --out (--json is the stdout flag of the commands that print
# results); required, so with no default: the commands take their flags keyword-only (``ctx, *, ...``) to keep --out
# in its place among the flags that have one
JsonOut = Annotated[Path, typer.Option("--out", help="Write the results to this JSON file.")]
