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
  export PY VIRTUAL_ENV="$VENV_DIR"
  export PATH="$VENV_DIR/bin:$PATH"  # launchers such as msrun start workers with the python on PATH
  export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
  # MindSpore logs at INFO/WARNING level by default; keep only errors unless asked.
  export GLOG_v="${GLOG_v:-3}"
}

setup_env() {
  ensure_system_packages "$@"
  ensure_venv
}

# ---- training launchers -------------------------------------------------------------------------
# Settings common to the run_*_train_*.sh scripts; override through the environment:
#   CONFIG (default src/configs/jasper10x5dr.yaml), DATA_DIR (MindRecord folders train/ and dev/,
#   default data/mindrecord), OUTPUT_DIR (default runs/<script name>).  Arguments after the positional
#   ones go to train.py unchanged (e.g. --epochs 10 --set data.batch_size=32).
CONFIG="${CONFIG:-src/configs/jasper10x5dr.yaml}"
DATA_DIR="${DATA_DIR:-data/mindrecord}"

is_uint() { [[ "${1:-}" =~ ^[0-9]+$ ]]; }

train_args() {  # train_args DEVICE OUTPUT_DIR  → the train.py argument list (printed one per line)
  printf '%s\n' train.py --config "$CONFIG" --data_dir "$DATA_DIR" --output_dir "$2" --device_target "$1"
}

run_msrun() {  # run_msrun WORKERS DEVICE OUTPUT_DIR [train.py args...]
  local workers="$1" device="$2" out="$3"; shift 3
  command -v "$VENV_DIR/bin/msrun" >/dev/null || die "msrun not found in $VENV_DIR (it ships with MindSpore)"
  mkdir -p "$out"
  local port="${MASTER_PORT:-$((8000 + RANDOM % 2000))}"
  log "msrun: $workers workers on $device, logs in $out/msrun_logs"
  mapfile -t base < <(train_args "$device" "$out")
  "$VENV_DIR/bin/msrun" --worker_num="$workers" --local_worker_num="$workers" --master_port="$port" \
    --log_dir="$out/msrun_logs" --join=True "${base[@]}" --is_distributed "$@"
}
