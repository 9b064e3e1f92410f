#!/usr/bin/env bash
# Decode A/B on one GPU machine, as bench/RESULTS.md's session-5 comparisons were made: a base tree
# and this tree built side by side, `glint bench` alternated (base, this, base, this) in one call, so
# both see the same card, clocks and copy bandwidth.
#   here:   scripts/gpu-base.sh BASE_COMMIT [PATCH...]   (makes .base_src and builds it here first;
#           git-ignored: carry it to the GPU machine)
#   there:  scripts/gpu-test.sh build && scripts/gpu-ab.sh .base_src [CTX]   (CTX default 256,4096,131072)
# The env variable switches of the CUDA backend (GLINT_CUDA_BRANCHES, GLINT_CUDA_ATTEND_TC, ...) are
# compared the same way with one build: run `glint bench` with the switch 0 and 1 alternately.
set -uo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: scripts/gpu-ab.sh BASE_SOURCE_DIR [CTX]}
ctx=${2:-256,4096,131072}
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
if ! { cmake -S "$base" -B /tmp/glint-base -DCMAKE_BUILD_TYPE=Release -DGLINT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    "${extra[@]}" && cmake --build /tmp/glint-base -j16 --target glint; } >"$OUT/ab_build.log" 2>&1; then
    tail -20 "$OUT/ab_build.log"
    exit 1
fi
for b in /tmp/glint-base/glint "$BUILD/glint" /tmp/glint-base/glint "$BUILD/glint"; do
    echo "## $b"
    "$b" bench --synthetic glm-5.1-478b-nvfp4 --backend cuda --layers 12 --ctx "$ctx" 2>&1 | grep -v "^bench: making"
done | tee "$OUT/ab.txt"
