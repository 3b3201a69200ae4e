#!/usr/bin/env bash
# Usage: bash scripts/run_standalone_train_cpu.sh [train.py options...]
#   (CONFIG, DATA_DIR, OUTPUT_DIR from the environment; see scripts/common.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ensure_venv
cd "$REPO_ROOT"
OUTPUT_DIR="${OUTPUT_DIR:-runs/standalone_cpu}"
mapfile -t base < <(train_args CPU "$OUTPUT_DIR")
exec "$PY" "${base[@]}" "$@"
