#!/usr/bin/env bash
# Every figure of issue 15 (more cameras per CPU) in one run, as JSON in deepfer_bench/results/ with the machine named:
#  1. scripts/bench_gating.sh: detection gated vs full, 8 live woman2 cameras and the still scene, gating on and off;
#  2. the whole pipeline against stock facenet-pytorch MTCNN on the 1080p mosaic (stock_mosaic_1080p.json);
#  3. stable labels: label changes a minute on woman2.mp4 for a sweep of smoothing settings (tracking_woman2.json),
#     and how long a held change of expression takes to show (tracking_expression_change.json).
# Usage: bash scripts/bench_capacity.sh   (about 6 minutes on 2 cores; run it on a quiet machine)
set -euo pipefail
cd "$(dirname "$0")/.."
MEDIA=${MEDIA:-../shared/media}
PY=${PYTHON:-.venv/bin/python}
deepfer() { "$PY" -m deepfer "$@"; }
mkdir -p deepfer_bench/results .deepfer/clips

deepfer bench clips --media "$MEDIA" --out .deepfer/clips
bash scripts/bench_gating.sh
deepfer bench stock --source .deepfer/clips/mosaic_1080p.mp4 --frames 90 --out deepfer_bench/results/stock_mosaic_1080p.json
sweep=(--half-lives 0.5,1,1.5,2,3 --switch-margins 0.05,0.1,0.2)
deepfer bench tracking --source "$MEDIA/woman2.mp4" "${sweep[@]}" --out deepfer_bench/results/tracking_woman2.json
deepfer bench tracking --source .deepfer/clips/expression_change.mp4 --cut-s 6 "${sweep[@]}" \
  --out deepfer_bench/results/tracking_expression_change.json
