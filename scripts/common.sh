#!/usr/bin/env bash
# Shared shell code for every script in scripts/: environment set-up and small helpers.
# Source it; do not run it.  Set-up is idempotent: a second call checks and returns in seconds.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${VENV_DIR:-$REPO_ROOT/.venv}"
PYTHON_BIN="${PYTHON_BIN:-python3}"

# Debian packages the data pipeline, corpus generator and tests use.
SYSTEM_PACKAGES=(sox libsox-fmt-all flac espeak-ng flite festival festvox-kallpc16k fortunes bible-kjv wamerican)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

missing_system_packages() {
  local pkg missing=()
  for pkg in "${SYSTEM_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  echo "${missing[@]}"
}

ensure_system_packages() {
  local missing
  missing="$(missing_system_packages "$@")"
  [ -z "$missing" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    log "WARNING: missing system packages ($missing) and no apt-get; install them with your package manager"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    die "missing system packages: $missing
    install them once with:  sudo apt-get install -y $missing
    then re-run this command."
  fi
  log "installing system packages: $missing"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  if ! apt-get install -y -q --no-install-recommends $missing >/dev/null; then
    apt-get update -q >/dev/null || die "apt-get update failed"
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null || die "apt-get install $missing failed"
  fi
}

ensure_venv() {
  local stamp="$VENV_DIR/.requirements.sha256" want
  if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PYTHON_BIN" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null \
      || die "$PYTHON_BIN is missing or older than 3.9; set PYTHON_BIN=/path/to/python3.11"
    log "creating virtual environment $VENV_DIR"
    "$PYTHON_BIN" -m venv "$VENV_DIR" || die "python -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  want="$(sha256sum "$REPO_ROOT/requirements.txt" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python requirements (MindSpore is an ~800 MB download the first time)"
    local pip_log="$VENV_DIR/pip-install.log"
    "$VENV_DIR/bin/python" -m pip install --upgrade pip >"$pip_log" 2>&1 || true
    if ! "$VENV_DIR/bin/python" -m pip install -r "$REPO_ROOT/requirements.txt" >>"$pip_log" 2>&1; then
      tail -n 30 "$pip_log" >&2
      die "pip install -r requirements.txt failed (full log: $pip_log)"
    fi
    echo "$want" > "$stamp"
  fi
  PY="$VENV_DIR/bin/python"
  export PY
  export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
  # MindSpore logs at INFO/WARNING level by default; keep only errors unless asked.
  export GLOG_v="${GLOG_v:-3}"
}

setup_env() {
  ensure_system_packages "$@"
  ensure_venv
}
