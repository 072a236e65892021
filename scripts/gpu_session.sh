#!/usr/bin/env bash
# On the lent GPU machine, from the repository root: the whole GPU session in one command (see docs/gpu.md).
# Passes whatever scripts/gpu_bundle.sh carried (gpu_carry/wheels, gpu_carry/av, gpu_carry/data, gpu_carry/media) to
# scripts/gpu_session.py; extra arguments (--budget-s S, --device cpu --small ...) go through. Output: gpu_out/ and,
# packed, $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
args=()
for d in gpu_carry/wheels gpu_carry/av; do [ -d "$d" ] && args+=(--wheels "$d"); done
[ -f gpu_carry/data/fer2013.tar.xz ] && args+=(--data-archive gpu_carry/data/fer2013.tar.xz)
[ -d gpu_carry/media ] && args+=(--media gpu_carry/media)
[ -f gpu_carry/costs.json ] && args+=(--costs gpu_carry/costs.json)
mkdir -p gpu_out
export PYTHONUNBUFFERED=1
"${PYTHON:-python3}" scripts/gpu_session.py "${args[@]}" "$@" 2>&1 | tee -a gpu_out/session.log
