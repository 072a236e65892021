#!/usr/bin/env bash
# Detect only where and when needed: every figure of "Motion gating and refinement" in docs/performance.md in one run.
#  1. detection fps and faces kept, gated vs a full detection on every frame, on the capacity clips and woman2.mp4
#     (deepfer_bench/results/gating.json),
#  2. 8 live woman2.mp4 cameras through the whole pipeline, gated and not (deepfer_bench/results/pipeline_8streams_*.json),
#  3. CPU of one live camera on the still part of static_scene (its first 9 s: an empty room), gated and not
#     (deepfer_bench/results/pipeline_static_*.json).
# Usage: bash scripts/bench_gating.sh   (clips are made with ffmpeg from $MEDIA, default ../shared/media, once, in
#        .deepfer/clips). Run it on a quiet machine: the figures are per-core throughput and latency.
set -euo pipefail
cd "$(dirname "$0")/.."
MEDIA=${MEDIA:-../shared/media}
PY=${PYTHON:-.venv/bin/python}
deepfer() { "$PY" -m deepfer "$@"; }
mkdir -p deepfer_bench/results .deepfer/clips

deepfer bench gating --media "$MEDIA" --clips-dir .deepfer/clips --out deepfer_bench/results/gating.json
for on in true false; do
  name=$([ "$on" = true ] && echo gated || echo ungated)
  DEEPFER_GATING__ENABLED=$on deepfer bench pipeline --source "$MEDIA/woman2.mp4" --streams 8 --seconds 15 \
    --out deepfer_bench/results/pipeline_8streams_$name.json
  DEEPFER_GATING__ENABLED=$on deepfer bench pipeline --source .deepfer/clips/static_scene.mp4 --streams 1 \
    --seconds 9 --out deepfer_bench/results/pipeline_static_$name.json
done
