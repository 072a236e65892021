#!/usr/bin/env bash
# Small boxes, every figure of docs/onnx.md in one run:
#  1. export the shipped classifier to ONNX fp32 and int8 (int8 calibrated on training faces) under runs/onnx/,
#  2. PublicTest accuracy of both (deepfer_bench/results/eval_onnx_{fp32,int8}.json),
#  3. PyTorch vs ONNX fp32 vs ONNX int8 faces/s at batch 1, 32, 256 in the same interleaved rounds, with each
#     library's default threads and with one thread (deepfer_bench/results/classifier_onnx_cpu{,_1thread}.json),
#  4. MTCNN's P/R/O-Nets in ONNX Runtime vs PyTorch (deepfer_bench/results/mtcnn_onnx_cpu{,_1thread}.json).
# Usage: bash scripts/bench_onnx.sh [FER2013 folder with train/ and test/]   (default: ../shared/datasets/fer2013;
#        the video comes from $MEDIA, default ../shared/media)
set -euo pipefail
cd "$(dirname "$0")/.."
FER=${1:-../shared/datasets/fer2013}
MEDIA=${MEDIA:-../shared/media}
PY=${PYTHON:-.venv/bin/python}
deepfer() { "$PY" -m deepfer "$@"; }
mkdir -p runs/onnx deepfer_bench/results

deepfer export-model --out runs/onnx/deepfer_resnet_fp32.onnx
deepfer export-model --int8 --calibration-data "$FER/train" --out runs/onnx/deepfer_resnet_int8.onnx
for p in fp32 int8; do
  deepfer evaluate --data "$FER/test" --weights runs/onnx/deepfer_resnet_$p.onnx --device cpu \
    --report deepfer_bench/results/eval_onnx_$p.json --confusion-png runs/onnx/eval_onnx_$p.png
done
W=(--weights deepfer_resnet --weights runs/onnx/deepfer_resnet_fp32.onnx --weights runs/onnx/deepfer_resnet_int8.onnx)
deepfer bench classifier "${W[@]}" --devices cpu --seconds 6 --rounds 6 --out deepfer_bench/results/classifier_onnx_cpu.json
deepfer bench classifier "${W[@]}" --devices cpu --seconds 6 --rounds 6 --threads 1 --out deepfer_bench/results/classifier_onnx_cpu_1thread.json
"$PY" -m deepfer_bench.mtcnn_onnx --source "$MEDIA/woman2.mp4" --out deepfer_bench/results/mtcnn_onnx_cpu.json
"$PY" -m deepfer_bench.mtcnn_onnx --source "$MEDIA/woman2.mp4" --threads 1 --out deepfer_bench/results/mtcnn_onnx_cpu_1thread.json
