#!/usr/bin/env bash
# `make run` until the embedded demo model exists: runs glint on a tiny fixture model end to end.
set -euo pipefail
glint=${1:-build/glint}
model=tests/fixtures/models/tiny-fsf-f32
"$glint" info -m "$model"
"$glint" generate -m "$model" --ids "1 2 3 4 5 6 7 8" -n 16 --print-ids
