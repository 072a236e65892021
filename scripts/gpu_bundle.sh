#!/usr/bin/env bash
# Here (with internet, before a GPU session): build the git-ignored folders a GPU session carries, check that each
# device call stays under the 64 MiB the device takes (working tree + carried folders), and print the device calls.
#
#   gpu_carry/wheels/  cp312 manylinux wheels of what the device image lacks (exact versions, --no-deps)
#   gpu_carry/av/      PyAV alone (34 MiB: with FER2013 it would not fit in one call)
#   gpu_carry/data/    fer2013.tar.xz of ../shared/datasets/fer2013/{train,test} (the JPEGs as they are, ~44 MiB)
#   gpu_carry/media/   the 1080p clip made from ../shared/media (deepfer bench clips' mosaic_1080p, 9 faces a frame, 18 s)
#
# Usage: scripts/gpu_bundle.sh [--skip-data] [--resume] [--bench-budget S] [--train-budget S]   (SHARED=, PYTHON=)
#   --resume: carry gpu_out/ too (the last pack unpacked here), so a fresh machine skips the stages done before
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
ROOT=$PWD
SHARED=${SHARED:-$ROOT/../shared}
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEEPFER=("$PY" -m deepfer)
CARRY=gpu_carry
LIMIT=$((64 * 1024 * 1024))
SKIP_DATA=0
RESUME=0
BENCH_BUDGET=290   # device seconds for the benchmark call; the training call gets the rest of the 15 minutes
TRAIN_BUDGET=380
while [ $# -gt 0 ]; do
  case $1 in
    --skip-data) SKIP_DATA=1 ;;
    --resume) RESUME=1 ;;
    --bench-budget) BENCH_BUDGET=$2; shift ;;
    --train-budget) TRAIN_BUDGET=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# What the device image lacks (KINDS.md lists it: torch, numpy, opencv, scipy, sklearn, matplotlib, pandas, pyarrow,
# psutil, rich, typer... are there), found by running the dry run with an import probe. Versions: those the tests
# run with here, inside pyproject's ranges (facenet-pytorch is pinned there). typer, rich and typing-extensions travel
# too so the CLI runs on the versions it is tested with (typer 0.29 needs rich >= 13.8).
WHEELS=(annotated-types==0.8.0 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
        typing-inspection==0.4.5 typing-extensions==4.16.0 typer==0.29.2 rich==15.0.0 facenet-pytorch==2.5.3
        redis==8.1.0)
AV=(av==18.1.0)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

grep -qxF "/$CARRY/" .gitignore || printf '/%s/\n' "$CARRY" >> .gitignore
mkdir -p "$CARRY/wheels" "$CARRY/av" "$CARRY/data" "$CARRY/media"

download() {  # folder, requirement...
  local dir=$1; shift
  rm -f "$dir"/*.whl  # exactly the listed wheels: two versions of one package stop the install there
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d "$dir" "$@" 2> >(grep -v 'is neither a file nor a directory' >&2)
}
echo "wheels -> $CARRY/wheels, $CARRY/av"
download "$CARRY/wheels" "${WHEELS[@]}"
download "$CARRY/av" "${AV[@]}"
for dir in "$CARRY/wheels" "$CARRY/av"; do  # one version of each package, or the install stops
  dups=$(ls "$dir" | sed -E 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
  [ -z "$dups" ] || { echo "two versions of: $dups in $dir (remove the old one)" >&2; exit 1; }
done

if [ "$SKIP_DATA" = 0 ] && [ ! -s "$CARRY/data/fer2013.tar.xz" ]; then
  [ -d "$SHARED/datasets/fer2013/train" ] || { echo "no $SHARED/datasets/fer2013" >&2; exit 1; }
  echo "data -> $CARRY/data/fer2013.tar.xz (xz -9, a few minutes on 2 cores)"
  tar -C "$SHARED/datasets" -cf - fer2013/train fer2013/test | xz -9 -T0 > "$CARRY/data/fer2013.tar.xz.tmp"
  mv "$CARRY/data/fer2013.tar.xz.tmp" "$CARRY/data/fer2013.tar.xz"
fi

if [ ! -s "$CARRY/media/mosaic_1080p.mp4" ]; then
  echo "media -> $CARRY/media (1080p clips)"
  "${DEEPFER[@]}" bench clips --media "$SHARED/media" --out .deepfer/clips >/dev/null
  # played three times over (18 s, no re-encoding), so a pipeline run measures past its warm-up
  ffmpeg -v error -y -stream_loop 2 -i .deepfer/clips/mosaic_1080p.mp4 -c copy "$CARRY/media/mosaic_1080p.mp4"
fi

# The tree that travels: tracked files and untracked files git does not ignore (what the device counts).
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null \
             | awk '{s += $1} END {print s + 0}')
size() { du -sb "$@" | awk '{s += $1} END {print s + 0}'; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
check() {  # name, folders...
  local name=$1; shift
  local total=$((tree_bytes + $(size "$@")))
  echo "$name call: tree $(mib "$tree_bytes") + $* = $(mib "$total") (limit 64 MiB)"
  [ "$total" -le "$LIMIT" ] || { echo "$name call is over the 64 MiB limit" >&2; exit 1; }
}
BENCH_CARRY=("$CARRY/wheels" "$CARRY/av" "$CARRY/media")
TRAIN_CARRY=("$CARRY/wheels" "$CARRY/data")
if [ "$RESUME" = 1 ] && [ -d gpu_out ]; then BENCH_CARRY+=(gpu_out); TRAIN_CARRY+=(gpu_out); fi
check bench "${BENCH_CARRY[@]}"
[ "$SKIP_DATA" = 1 ] || check train "${TRAIN_CARRY[@]}"
[ -f "$CARRY/costs.json" ] && echo "planning on measured costs: $CARRY/costs.json"

json_list() { printf '%s\n' "$@" | "$PY" -c 'import json, sys; print(json.dumps(sys.stdin.read().split()))'; }
call() {  # part, budget, folders...
  local part=$1 budget=$2; shift 2
  local cmd="set -o pipefail; bash scripts/gpu_session.sh --part $part --budget-s $budget"
  echo "  run(command=$(printf '%s' "$cmd" | "$PY" -c 'import json, sys; print(json.dumps(sys.stdin.read()))'),"
  echo "      carry=$(json_list "$@"), timeout_s=$((budget + 45)))"
}
cat <<EOF

The device calls (one after the other, at once, while the machine is still warm; give_back after the second).
FER2013 (44 MiB) and PyAV (34 MiB) do not fit in one 64 MiB call, so the benchmarks and the training travel apart:
a stage whose inputs were not carried is skipped and not marked done, and the output folder gpu_out/ stays on a
warm machine, so the second call adds to the first. Each call leaves summary.json and gpu_session.tar.gz.NN in \$OUT:
  cat <files_at>/gpu_session.tar.gz.* | tar -xz    # -> gpu_out/ (summary.json, costs.json, one folder per stage)
1) benchmarks (pipeline at 1/8/16/32 streams on 1080p, stock MTCNN, detector):
$(call bench "$BENCH_BUDGET" "${BENCH_CARRY[@]}")
2) training, evaluation (with and without TTA), distillation, classifier benchmark:
$(call models "$TRAIN_BUDGET" "${TRAIN_CARRY[@]}")
EOF
