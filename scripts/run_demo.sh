#!/usr/bin/env bash
# Set up (idempotent) and run the end-to-end demo on a generated LibriSpeech-layout corpus.
# Usage: bash scripts/run_demo.sh [--quick] [--work_dir DIR] [--from STAGE]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup_env
cd "$REPO_ROOT"
exec "$PY" utils/run_demo.py "$@"
