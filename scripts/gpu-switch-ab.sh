#!/usr/bin/env bash
# Decode A/B of one of the CUDA backend's environment switches with one build (scripts/gpu-test.sh
# build first): scripts/gpu-env-ab.sh with VAR set to each value in turn, the round twice, so every
# value sees the same card, clocks and copy bandwidth (bench/RESULTS.md's method).
#   scripts/gpu-switch-ab.sh VAR "VALUES" [CTX] [more glint bench arguments...]
#   e.g. scripts/gpu-switch-ab.sh GLINT_CUDA_ASYNC_UPLOAD "0 1" 256,4096,131072
#        scripts/gpu-switch-ab.sh GLINT_CUDA_GEMV_PAST_L1 "0 1" 4096 --speculative-num-steps 2
set -uo pipefail
cd "$(dirname "$0")/.."
var=${1:?usage: scripts/gpu-switch-ab.sh VAR "VALUES" [CTX] [bench args...]}
values=${2:?usage: scripts/gpu-switch-ab.sh VAR "VALUES" [CTX] [bench args...]}
ctx=${3:-256,4096,131072}
shift $(($# < 3 ? $# : 3))
settings=()
for v in $values; do settings+=("$var=$v"); done
exec scripts/gpu-env-ab.sh "$ctx" "${settings[@]}" -- "$@"
