#!/usr/bin/env bash
# Decode A/B of several environment settings with one build (scripts/gpu-test.sh build first): `glint
# bench` on the NVFP4 preset once per setting, the round ROUNDS times (default 2), so every setting
# sees the same card, clocks and copy bandwidth (bench/RESULTS.md's method). A setting joins
# variables with '+'; "-" is the defaults; arguments after "--" go to every `glint bench`. One compact
# line per run (% of copy per context), the full output in $OUT/env_ab.txt.
#   scripts/gpu-env-ab.sh CTX SETTING... [-- BENCH ARGS...]
#   e.g. scripts/gpu-env-ab.sh 4096,131072 - GLINT_CUDA_MMA_CHAINS=2,2 GLINT_CUDA_ATTEND_CHAINS=1 \
#            GLINT_CUDA_MMA_CHAINS=2,2+GLINT_CUDA_ATTEND_CHAINS=1
set -uo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/gpu-env-ab.sh CTX SETTING... [-- BENCH ARGS...]"
ctx=${1:?$usage}
shift
settings=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do settings+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the "--"
[ ${#settings[@]} -gt 0 ] || { echo "$usage" >&2; exit 2; }
OUT=${OUT:-/tmp/glint-gpu-out}
BUILD=${BUILD:-build-gpu}
mkdir -p "$OUT"
: >"$OUT/env_ab.txt"
for round in $(seq "${ROUNDS:-2}"); do
    for setting in "${settings[@]}"; do
        vars=()
        [ "$setting" != "-" ] && IFS='+' read -r -a vars <<<"$setting"
        log=$(env "${vars[@]}" "$BUILD/glint" bench --synthetic glm-5.1-478b-nvfp4 --backend cuda --layers 12 \
            --ctx "$ctx" "$@" 2>&1 | grep -v "^bench: making")
        { echo "## $setting (round $round)"; echo "$log"; } >>"$OUT/env_ab.txt"
        # the rows of the table: context, tok/s, ms, GB, GB/s, % of copy, % of read
        line=$(echo "$log" | awk '$1 ~ /^[0-9]+$/ && NF >= 7 {printf "%s %s (%s tok/s)  ", $1, $6, $2}')
        echo "round $round  ${setting}: ${line:-FAILED: $(echo "$log" | tail -1)}"
    done
done
