#!/usr/bin/env bash
# Set up (idempotent) and run the end-to-end demo of a model family on a corpus the project generates.
# Usage: bash scripts/run_demo.sh [--model jasper|deepspeech2|dscnn] [--quick] [--work_dir DIR] [--from STAGE]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup_env
ensure_voices || true   # the held-out-engine probe set speaks with a neural voice (optional)
cd "$REPO_ROOT"
exec "$PY" utils/run_demo.py "$@"
