"""``deepfer bench crowd``: the walking-crowd clip (made from ../shared, with ground truth) through the pipeline for
several detector settings, and stock MTCNN on the same frames."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import typer

from deepfer.common import UserError, say, settings_from, user_errors, write_json
from deepfer.options import JsonOut

app = typer.Typer()

FULL_RES = {"max_side": 1920, "min_face_size": 20}
EVERY_FRAME: dict[str, dict[str, Any]] = {"gating": {"enabled": False}, "detector": {"detect_every": 1}}
# what each variant changes in the configured settings, by section
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "configured": {},
    "before-i26": {"detector": {"region_native": False, "detect_every_large": 0, "refine_between": False}},  # pre-#26
    "max1920-min20": {"detector": FULL_RES},
    "every1": {"detector": {"detect_every_large": 1, "refine_between": False}},  # 1080p: every frame looked at
    "every2": {"detector": {"detect_every_large": 2, "refine_between": False}},  # 1080p: every other frame, carried
    "every2-refine": {"detector": {"detect_every_large": 2, "refine_between": True}},  # refined in between
    "every3-refine": {"detector": {"detect_every_large": 3, "refine_between": True}},
    # new faces searched for (motion regions away from known faces) at most every N s; known faces refined between
    "discover-0": {"gating": {"discover_every_s": 0.0}},  # every frame the detector sees (before the setting)
    "discover-0.12": {"gating": {"discover_every_s": 0.12}},
    "follow-off": {"gating": {"follow_motion": False}},  # refinement where each face was last detected
    "lost-any-size": {"gating": {"lost_min_face": 0.0}},  # a lost face looked for at every size
    # the former defaults: new and lost faces searched on every frame, at every size, refinement where faces were
    "search-every-frame": {"gating": {"discover_every_s": 0.0, "follow_motion": False, "lost_min_face": 0.0}},
    "discover-0.2": {"gating": {"discover_every_s": 0.2}},
    "discover-0.32": {"gating": {"discover_every_s": 0.32}},
    "discover-0.5": {"gating": {"discover_every_s": 0.5}},
    "max1920-min20-every-frame": {"gating": EVERY_FRAME["gating"], "detector": {**FULL_RES, "detect_every": 1}},
    "yunet": {"detector": {"kind": "yunet"}},
    "yunet-every-frame": {"gating": EVERY_FRAME["gating"], "detector": {"kind": "yunet", "detect_every": 1}},
    "yunet-max1920-min20": {"detector": {"kind": "yunet", **FULL_RES}},
    "yunet-max1920-min20-every-frame": {"gating": EVERY_FRAME["gating"],
                                        "detector": {"kind": "yunet", **FULL_RES, "detect_every": 1}},
    # MTCNN's R-Net + O-Net on YuNet's proposals (full passes); motion regions by P-Net natively, or by YuNet too
    "yunet-mtcnn": {"detector": {"proposals": "yunet"}},
    "yunet-mtcnn-native": {"detector": {"proposals": "yunet", "yunet_proposal_max_side": 1920}},
    "yunet-mtcnn-regions": {"detector": {"proposals": "yunet", "region_proposals": "yunet"}},
    "yunet-mtcnn-else-pnet": {"detector": {"proposals": "yunet", "region_proposals": "yunet_else_pnet"}},
    "yunet-mtcnn-regions-native": {"detector": {"proposals": "yunet", "region_proposals": "yunet",
                                                "yunet_proposal_max_side": 1920}},
}


@app.command()
@user_errors
def crowd(
    ctx: typer.Context,
    *,
    json_out: JsonOut = Path("deepfer_bench/results/crowd_1080p.json"),
    media: Path = typer.Option(Path("../shared/media"), help="The shared media folder the faces are cut from."),
    fer: Path = typer.Option(Path("../shared/datasets/fer2013/test"), help="FER2013 folder (class sub-folders)."),
    cache: Path = typer.Option(Path(tempfile.gettempdir()) / "deepfer-crowd",
                               help="Folder for the generated clip and its truth (reused when made before)."),
    seconds: float = typer.Option(20.0, min=1, help="Length of the clip."),
    fps: int = typer.Option(25, min=1, help="Frame rate of the clip."),
    seed: int = typer.Option(0, help="The clip's random seed (same seed, same clip)."),
    stock_frames: int = typer.Option(100, min=1, help="Frames stock MTCNN runs on (it is slow at 1080p)."),
    stock_spread: bool = typer.Option(True, "--stock-spread/--stock-first",
                                      help="Stock's frames spread evenly over the clip, or its first ones (where "
                                           "every face is new at once)."),
    variants: str = typer.Option("configured,max1920-min20,yunet",
                                 help=f"Comma-separated settings to compare: {', '.join(VARIANTS)}."),
    yunet_model: str | None = typer.Option(None, help="YuNet ONNX file for the yunet variants (default: "
                                                      "detector.yunet_model)."),
) -> None:
    """Fps, faces, share of stock MTCNN's faces, true recall and precision by face size, tracks per person."""
    from deepfer_bench.crowd import bench_crowd
    from deepfer_bench.crowd_clip import make_crowd_clip

    names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise UserError(f"--variants: unknown {unknown or variants!r}; choose from {', '.join(VARIANTS)}")
    if not media.is_dir() or not fer.is_dir():
        raise UserError(f"the crowd clip is made from {media} and {fer} (--media, --fer): not found")
    chosen = []
    for name in names:
        sections = {k: dict(v) for k, v in VARIANTS[name].items()}
        detector = sections.setdefault("detector", {})
        if (detector.get("kind") == "yunet" or detector.get("proposals") == "yunet") and yunet_model:
            detector["yunet_model"] = yunet_model
        chosen.append((name, settings_from(ctx, **sections, sources=dict(file_rate="asap"))))
    say(f"making (or reusing) a {seconds:g} s {fps} fps 1920x1080 crowd clip in {cache}")
    clip = make_crowd_clip(cache, media, fer, seconds, fps, seed=seed)
    result = bench_crowd(chosen, clip, stock_frames, say=say, stock_spread=stock_spread)
    write_json(json_out, result)
    for row in result["runs"]:
        truth = row["truth"]
        sizes = ", ".join(f"{k} {v['recall']}" for k, v in truth["by_size"].items())
        say(f"{row['name']}: {row['fps']} fps, {row['faces']} faces, {row['share_of_stock']} of stock's; recall "
            f"{truth['recall']} ({sizes}), precision {truth['precision']}, tracks per person "
            f"{truth['identity']['tracks_per_person']}")
