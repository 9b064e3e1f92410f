#!/usr/bin/env bash
# Decode A/B of one of the CUDA backend's environment switches with one build (scripts/gpu-test.sh
# build first): `glint bench` on the NVFP4 preset with VAR set to each value in turn, the round
# twice, so every value sees the same card, clocks and copy bandwidth (bench/RESULTS.md's method).
#   scripts/gpu-switch-ab.sh VAR "VALUES" [CTX] [more glint bench arguments...]
#   e.g. scripts/gpu-switch-ab.sh GLINT_CUDA_ASYNC_UPLOAD "0 1" 256,4096,131072
#        scripts/gpu-switch-ab.sh GLINT_CUDA_GEMV_PAST_L1 "0 1" 4096 --speculative-num-steps 2
set -uo pipefail
cd "$(dirname "$0")/.."
var=${1:?usage: scripts/gpu-switch-ab.sh VAR "VALUES" [CTX] [bench args...]}
values=${2:?usage: scripts/gpu-switch-ab.sh VAR "VALUES" [CTX] [bench args...]}
ctx=${3:-256,4096,131072}
shift $(($# < 3 ? $# : 3))
OUT=${OUT:-/tmp/glint-gpu-out}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
for round in 1 2; do
    for v in $values; do
        echo "## $var=$v (round $round)"
        env "$var=$v" "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --backend cuda --layers 12 --ctx "$ctx" "$@" 2>&1 |
            grep -v "^bench: making"
    done
done | tee "$OUT/switch_ab_$var.txt"
