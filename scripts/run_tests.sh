#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite.  Extra arguments go to pytest, e.g. -m "not slow".
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup_env
ensure_torch
ensure_tensorflow
ensure_voices || true
find_arm_models
cd "$REPO_ROOT"
exec "$PY" -m pytest "$@"
