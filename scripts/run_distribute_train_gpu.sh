#!/usr/bin/env bash
# Usage: bash scripts/run_distribute_train_gpu.sh [RANK_SIZE (default 8)] [train.py options...]
#   Data-parallel GPU training through msrun (NCCL); CONFIG, DATA_DIR, OUTPUT_DIR, MASTER_PORT from the environment.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_venv
cd "$REPO_ROOT"
RANK_SIZE=8
if is_uint "${1:-}"; then RANK_SIZE="$1"; shift; fi
run_msrun "$RANK_SIZE" GPU "${OUTPUT_DIR:-runs/distribute_gpu}" "$@"
