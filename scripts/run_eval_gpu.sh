#!/usr/bin/env bash
# Usage: bash scripts/run_eval_gpu.sh DEVICE_ID PATH_CHECKPOINT [eval.py options...]
#   (CONFIG, EVAL_DATA, OUTPUT_DIR from the environment; see scripts/common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# -ge 2 ] && is_uint "$1" || die "usage: bash scripts/run_eval_gpu.sh DEVICE_ID PATH_CHECKPOINT [eval.py options...]"
ensure_venv
cd "$REPO_ROOT"
run_eval GPU "$@"
