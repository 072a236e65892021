"""How many tracked face-frames a probability threshold would make ``uncertain`` on real clips (issue 32).

The pipeline judges a tracked face on its smoothed probabilities, which are flatter than one frame's; this measures
the share of face-frames below each threshold, smoothed and raw, per model and clip, so ``confidence.min_probability``
is chosen from real faces and not only from PublicTest.

Usage: python scripts/uncertain_share.py [--out deepfer_bench/results/uncertain_share_clips.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepfer import analyze_video
from deepfer_core.settings import load_settings

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
THRESHOLDS = (0.3, 0.4, 0.5)


def shares(values: np.ndarray, kind: str) -> dict[str, float]:
    return {f"{kind}<{t}": round(float((values < t).mean()), 3) for t in THRESHOLDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("deepfer_bench/results/uncertain_share_clips.json"))
    parser.add_argument("--weights", action="append", default=None, help="repeatable; default: both shipped models")
    args = parser.parse_args()
    result: dict[str, dict[str, float | int]] = {}
    for weights in args.weights or ["deepfer_resnet", "deepfer_resnet_robust"]:
        for clip in ("woman2.mp4", "fer_test.mp4"):
            settings = load_settings(overrides={"confidence": {"enabled": False}})
            video = analyze_video(MEDIA / clip, settings=settings, weights=weights, device="cpu")
            tracked = [f for frame in video for f in frame.faces if f.track_id is not None]
            smoothed = np.array([max(f.probabilities.values()) for f in tracked])
            raw = np.array([max(f.raw_probabilities.values()) for f in tracked])
            result[f"{weights} {clip}"] = {"faces": len(tracked), **shares(smoothed, "smoothed"), **shares(raw, "raw")}
            print(weights, clip, result[f"{weights} {clip}"], flush=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
