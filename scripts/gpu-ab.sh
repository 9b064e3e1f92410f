#!/usr/bin/env bash
# Decode A/B on one GPU machine, as bench/RESULTS.md's session-5 comparisons were made: a base tree
# and this tree built side by side, `glint bench` alternated (base, this, base, this) in one call, so
# both see the same card, clocks and copy bandwidth.
#   here:   scripts/gpu-base.sh BASE_COMMIT [PATCH...]   (makes .base_src and builds it here first;
#           git-ignored: carry it to the GPU machine)
#   there:  scripts/gpu-test.sh build && scripts/gpu-ab.sh .base_src [CTX [TREE...]]
#           (CTX default 256,4096,131072)
# More source trees (TREE..., e.g. `git archive` of other branches into .ab_NAME, git-ignored,
# carried like .base_src) are built the same way, all at once (nvcc's longest files set the time, not
# the cores), and take their turns in each round (base, this, tree 1, tree 2, ...); with OPS=1 each of
# them also runs the op tests (tests/cuda/test_cuda_ops) first, its last line printed.
# The env variable switches of the CUDA backend (GLINT_CUDA_BRANCHES, GLINT_CUDA_ATTEND_TC, ...) are
# compared the same way with one build: run `glint bench` with the switch 0 and 1 alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/gpu-ab.sh BASE_SOURCE_DIR [CTX [TREE...]]}
ctx=${2:-256,4096,131072}
shift $(($# < 2 ? $# : 2))
trees=("$@")
OUT=${OUT:-/tmp/glint-gpu-out}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
scripts/gpu-deps.sh unpack /tmp/deps >/dev/null
libdir=/tmp/deps/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=/tmp/deps
export PKG_CONFIG_LIBDIR=$libdir/pkgconfig:/tmp/deps/usr/share/pkgconfig
extra=()
if ! command -v pkg-config >/dev/null; then
    export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    extra+=(-DPKG_CONFIG_EXECUTABLE=/tmp/deps/usr/bin/pkgconf)
fi
# build_tree SRC DIR LOG TARGET...: a Release CUDA build of SRC into DIR, its output in LOG.
build_tree() {
    local src=$1 dir=$2 log=$3
    shift 3
    cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DGLINT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        "${extra[@]}" >"$log" 2>&1 && cmake --build "$dir" -j16 --target "$@" >>"$log" 2>&1
}
dirs=(/tmp/glint-base) logs=("$OUT/ab_build.log") pids=()
build_tree "$base" /tmp/glint-base "$OUT/ab_build.log" glint &
pids+=($!)
targets=(glint)
[[ ${OPS:-0} == 1 ]] && targets+=(test_cuda_ops)
for i in "${!trees[@]}"; do
    dirs+=(/tmp/glint-tree$i) logs+=("$OUT/ab_build_tree$i.log")
    build_tree "${trees[$i]}" /tmp/glint-tree$i "$OUT/ab_build_tree$i.log" "${targets[@]}" &
    pids+=($!)
done
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "gpu-ab.sh: the build of ${dirs[$i]} failed (${logs[$i]}):"
        tail -20 "${logs[$i]}"
        exit 1
    fi
done
binaries=(/tmp/glint-base/glint "$BUILD/glint")
for i in "${!trees[@]}"; do
    if [[ ${OPS:-0} == 1 ]]; then
        echo "## ops of ${trees[$i]}: $(/tmp/glint-tree$i/tests/cuda/test_cuda_ops 2>&1 | tail -1)"
    fi
    binaries+=(/tmp/glint-tree$i/glint)
done
for round in 1 2; do
    for b in "${binaries[@]}"; do
        echo "## $b (round $round)"
        "$b" bench --synthetic glm-5.1-478b-nvfp4 --backend cuda --layers 12 --ctx "$ctx" 2>&1 | grep -v "^bench: making"
    done
done | tee "$OUT/ab.txt"
