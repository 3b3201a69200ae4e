#!/usr/bin/env bash
# Usage: bash scripts/run_standalone_train_ascend.sh [DEVICE_ID] [train.py options...]
#   (CONFIG, DATA_DIR, OUTPUT_DIR from the environment; see scripts/common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_venv
cd "$REPO_ROOT"
DEVICE_ID=0
if is_uint "${1:-}"; then DEVICE_ID="$1"; shift; fi
OUTPUT_DIR="${OUTPUT_DIR:-runs/standalone_ascend}"
mapfile -t base < <(train_args Ascend "$OUTPUT_DIR")
exec "$PY" "${base[@]}" --device_id "$DEVICE_ID" "$@"
