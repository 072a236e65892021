"""How many tracked face-frames a probability threshold would make ``uncertain`` on real clips (issue 32).

The pipeline judges a tracked face on its smoothed probabilities, which are flatter than one frame's; this measures
the share of face-frames below each threshold, smoothed and raw, per model and clip, so ``confidence.min_probability``
is chosen from real faces and not only from PublicTest's single crops.

Usage: python -m deepfer_bench.uncertain_share [--out deepfer_bench/results/uncertain_share_clips.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np

from aggregator.tracker import FaceTracker
from deepfer_bench.machine import machine_info
from deepfer_bench.tracking import analyse_file
from deepfer_core.settings import ConfidenceSettings, load_settings
from streamer.assembly import load_models

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
CLIPS = ("woman2.mp4", "fer_test.mp4")
THRESHOLDS = (0.3, 0.4, 0.5)


def shares(values: np.ndarray, kind: str) -> dict[str, float]:
    return {f"{kind}<{t}": round(float((values < t).mean()), 3) if len(values) else 0.0 for t in THRESHOLDS}


def measure(weights: str, clip: Path) -> dict[str, float | int]:
    """The clip through the pipeline (its detection schedule), then the tracker with the confidence gate off."""
    settings = load_settings(overrides={"classifier": {"weights": weights, "device": "cpu"}})
    results = asyncio.run(analyse_file(settings, load_models(settings), clip))
    tracker = FaceTracker(settings.tracker, settings.smoothing, ConfidenceSettings(enabled=False))
    tracked = [f for r in results for f in tracker.update(r).faces if f.track_id is not None and f.smoothed is not None]
    smoothed = np.array([float(np.max(f.smoothed)) for f in tracked if f.smoothed is not None])
    raw = np.array([float(np.max(f.probabilities)) for f in tracked])
    return {"faces": len(tracked), **shares(smoothed, "smoothed"), **shares(raw, "raw")}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("deepfer_bench/results/uncertain_share_clips.json"))
    parser.add_argument("--weights", action="append", default=None, help="repeatable; default: both shipped models")
    args = parser.parse_args()
    result: dict[str, object] = {"benchmark": "uncertain_share", "machine": machine_info()}
    for weights in args.weights or ["deepfer_resnet", "deepfer_resnet_robust"]:
        for clip in CLIPS:
            if not (MEDIA / clip).is_file():
                raise SystemExit(f"error: {MEDIA / clip} not found (the shared media are needed)")
            result[f"{weights} {clip}"] = row = measure(weights, MEDIA / clip)
            print(weights, clip, row, flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
