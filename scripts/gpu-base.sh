#!/usr/bin/env bash
# Makes .base_src, the base tree scripts/gpu-ab.sh builds beside this one on the GPU machine, from a
# commit, and builds glint from it here first (CUDA included when nvcc is here; warnings are errors),
# so that no device time goes to a base that does not compile.
#   scripts/gpu-base.sh COMMIT [PATCH...]
# Each PATCH (a file, e.g. `git diff COMMIT -- src/cli/cmd_model.c > p.diff`) is applied to the base
# first: to give the base this tree's bench loop, say, and compare the kernels alone.
# .base_src is git-ignored; carry it to the GPU machine with .debs.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=${1:?usage: scripts/gpu-base.sh COMMIT [PATCH...]}
shift
rm -rf .base_src && mkdir .base_src
git archive "$commit" | tar -x -C .base_src
rm -rf .base_src/models .base_src/tests/fixtures && mkdir .base_src/tests/fixtures  # not needed to build glint
for patch in "$@"; do
    # (git apply run inside .base_src would treat it as part of this repository and skip the paths)
    patch -p1 --forward --batch -d .base_src <"$patch" >/dev/null ||
        { echo "gpu-base.sh: $patch does not apply to $commit" >&2; exit 1; }
done
cuda=OFF
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then cuda=ON; fi
check=/tmp/glint-base-check
rm -rf "$check"
if ! { cmake -S .base_src -B "$check" -DCMAKE_BUILD_TYPE=Release -DGLINT_CUDA=$cuda -DCMAKE_CUDA_ARCHITECTURES=90 &&
       cmake --build "$check" -j "$(nproc)" --target glint; } >"$check.log" 2>&1; then
    grep -E "error|warning" "$check.log" | head -20 || true
    echo "gpu-base.sh: the base at $commit does not build (GLINT_CUDA=$cuda; log: $check.log)" >&2
    exit 1
fi
echo "gpu-base.sh: .base_src = $commit$([ $# -gt 0 ] && echo " + $*"), $(du -sh .base_src | cut -f1), builds here (GLINT_CUDA=$cuda)"
