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

# ---- C++ inference runner (ascend310_infer/) ----------------------------------------------------
# The runner needs a MindSpore C++ runtime.  On Ascend machines that is the installed MindSpore; on
# CPU machines it is the MindSpore Lite 2.0 C++ runtime (same API), unpacked from its PyPI wheel into
# third_party/ (git-ignored).  PyPI has that version only as a cp37 wheel, which pip downloads for any
# Python when asked for the cp37 tags.  See notes on deployment in the README.
THIRD_PARTY_DIR="${THIRD_PARTY_DIR:-$REPO_ROOT/third_party}"
LITE_DIR="$THIRD_PARTY_DIR/mindspore_lite"
LITE_WHEEL_SPEC="mindspore-lite==2.0.0"
LITE_WHEEL_SHA256="199cd0605cc985b88eddb273db9dfe9000a585ba10ca2292b6b36ebfff07b3ec"
# What the runner and the converter need at link and run time (the rest of the wheel is not used).
LITE_LIBS=(libmindspore-extendrt_python.so libmindspore_converter.so libmindspore_core.so libmindspore_glog.so.0
           libmslite_converter_plugin.so libdnnl.so.2 libopencv_core.so.4.5 libopencv_imgcodecs.so.4.5
           libopencv_imgproc.so.4.5 libmsplugin-ge-litert_python.so)
# The real Ascend library, only to check that the runner compiles and links against it (CANN is absent).
ASCEND_SDK_DIR="$THIRD_PARTY_DIR/mindspore_ascend"
ASCEND_WHEEL_SPEC="mindspore-ascend==1.10.0"
ASCEND_WHEEL_SHA256="cba0fa09d2008ffeb3dc7690009a5a8a1bfd415f4ee4dfab2fbf60654ab72ff4"

ensure_cpp_toolchain() {  # cmake and a C++17 compiler, installed only when missing
  local SYSTEM_PACKAGES=()  # only these, not the speech tools (dynamic scope of ensure_system_packages)
  ensure_system_packages cmake g++ make
}

# fetch_wheel_members SPEC PYTHON_VERSION ABI SHA256 DEST PREFIX [MEMBER_GLOB...]
# Downloads one wheel (no dependencies) for the given Python tags, checks its sha256 (when SHA256 is
# not empty), extracts the members under PREFIX matching any glob into DEST (PREFIX stripped) and
# deletes the wheel.  DEST/.wheel.sha256 records the verified hash: a later call with the same hash
# returns at once.  Concurrent callers are serialised by a lock file.
fetch_wheel_members() {
  local spec="$1" pyver="$2" abi="$3" sha="$4" dest="$5" prefix="$6"; shift 6
  local py="${PY:-$VENV_DIR/bin/python}" stamp="$dest/.wheel.sha256"
  [ -x "$py" ] || py="$PYTHON_BIN"
  mkdir -p "$THIRD_PARTY_DIR"
  (
    flock 9
    if [ -f "$stamp" ] && { [ -z "$sha" ] || [ "$(cat "$stamp")" = "$sha" ]; }; then exit 0; fi
    local dl="$THIRD_PARTY_DIR/.download.$$"
    rm -rf "$dl" && mkdir -p "$dl"
    trap 'rm -rf "$dl"' EXIT
    log "downloading $spec (cp${pyver/./} wheel) from PyPI"
    "$py" -m pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
      --abi "$abi" --platform manylinux1_x86_64 --platform manylinux2014_x86_64 --platform linux_x86_64 \
      --disable-pip-version-check -q "$spec" -d "$dl" >&2 || die "pip download $spec failed (network? proxy?)"
    local wheel got
    wheel="$(ls "$dl"/*.whl 2>/dev/null | head -n1)"
    [ -n "$wheel" ] || die "pip download $spec produced no wheel in $dl"
    got="$(sha256sum "$wheel" | cut -d' ' -f1)"
    if [ -n "$sha" ] && [ "$got" != "$sha" ]; then
      die "$(basename "$wheel"): sha256 $got, expected $sha; refusing to use it"
    fi
    "$py" - "$wheel" "$dl/unpacked" "$prefix" "$@" <<'PYEOF' || die "unpacking $wheel failed"
import fnmatch, os, shutil, sys, zipfile
wheel, out, prefix, globs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if info.is_dir() or not name.startswith(prefix):
            continue
        rel = name[len(prefix):]
        if not any(fnmatch.fnmatch(rel, g) for g in globs):
            continue
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
PYEOF
    echo "$got" > "$dl/unpacked/.wheel.sha256"
    rm -rf "$dest" && mv "$dl/unpacked" "$dest"
    log "unpacked $(basename "$wheel") into $dest"
  ) 9>"$THIRD_PARTY_DIR/.fetch.lock"
}

# missing_files DIR FILE... → succeeds (and prints the first) when one of DIR/FILE is absent
missing_files() {
  local dir="$1" f; shift
  for f in "$@"; do [ -e "$dir/$f" ] || { echo "$dir/$f"; return 0; }; done
  return 1
}

ensure_mindspore_lite() {  # → $LITE_DIR/{include,lib}: the Lite 2.0 C++ runtime, converter and headers
  local globs=("include/*") files=(include/api/model.h) lib gone
  for lib in "${LITE_LIBS[@]}"; do globs+=("lib/$lib"); files+=("lib/$lib"); done
  if [ -f "$LITE_DIR/.wheel.sha256" ] && gone="$(missing_files "$LITE_DIR" "${files[@]}")"; then
    log "$gone is missing; fetching MindSpore Lite again"
    rm -f "$LITE_DIR/.wheel.sha256"
  fi
  fetch_wheel_members "$LITE_WHEEL_SPEC" 3.7 cp37m "$LITE_WHEEL_SHA256" "$LITE_DIR" mindspore_lite/ "${globs[@]}" \
    || return 1
  if gone="$(missing_files "$LITE_DIR" "${files[@]}")"; then die "$LITE_WHEEL_SPEC has no $gone"; fi
}

ensure_mindspore_ascend_sdk() {  # → $ASCEND_SDK_DIR/{include,lib/libmindspore.so} of MindSpore 1.10 for Ascend
  local files=(include/api/model.h lib/libmindspore.so) gone
  if [ -f "$ASCEND_SDK_DIR/.wheel.sha256" ] && gone="$(missing_files "$ASCEND_SDK_DIR" "${files[@]}")"; then
    log "$gone is missing; fetching $ASCEND_WHEEL_SPEC again"
    rm -f "$ASCEND_SDK_DIR/.wheel.sha256"
  fi
  fetch_wheel_members "$ASCEND_WHEEL_SPEC" 3.9 cp39 "$ASCEND_WHEEL_SHA256" "$ASCEND_SDK_DIR" mindspore/ \
    "include/*" "lib/libmindspore.so" || return 1
  if gone="$(missing_files "$ASCEND_SDK_DIR" "${files[@]}")"; then die "$ASCEND_WHEEL_SPEC has no $gone"; fi
}

# prepare_lite_model MINDIR OUT_DIR BUILD_DIR → prints the path of the model for the Lite runtime.
# MindSpore Lite 2.0 reads MindIR version 1 only (MindSpore 2.x writes version 3), so the model goes
# ONNX → Lite converter → MindIR v1.  The ONNX is export.py's <stem>.onnx beside the MindIR, or is
# exported from the MindIR's graph into OUT_DIR.  BUILD_DIR is `ascend310_infer/build.sh lite`'s output.
prepare_lite_model() {
  local mindir="$1" out="$2" build="$3" stem onnx converted
  local py="${PY:-$VENV_DIR/bin/python}" tool="$REPO_ROOT/ascend310_infer/tools/mindir_tool.py"
  stem="$(basename "${mindir%.*}")"
  onnx="${mindir%.*}.onnx"
  mkdir -p "$out"
  if [ ! -f "$onnx" ]; then
    onnx="$out/$stem.onnx"
    if [ ! "$onnx" -nt "$mindir" ]; then  # exported before from this very MindIR: reuse it
      log "no ONNX beside $mindir; exporting its graph to $onnx"
      "$py" "$tool" onnx "$mindir" "$onnx" >/dev/null || die "cannot export $mindir to ONNX"
    fi
  fi
  converted="$out/${stem}_lite"
  # MindSpore writes read-only files; the converter would not overwrite one
  rm -rf "$converted.mindir" "${converted}_graph.mindir" "${converted}_variables"
  LD_LIBRARY_PATH="$(cat "$build/mindspore_lib_dir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" GLOG_v="${GLOG_v:-3}" \
    "$build/convert_to_lite" "$onnx" "$converted" mindir >&2 || die "converting $onnx for MindSpore Lite failed"
  # A model over the protobuf size limit comes out as <name>_graph.mindir + <name>_variables/ (weights).
  if [ ! -f "$converted.mindir" ] && [ -f "${converted}_graph.mindir" ]; then converted="${converted}_graph"; fi
  # An ONNX exported with another --n_frames or --batch_size than the MindIR must not pass unnoticed:
  # every input's shape must agree (one line per model: its input shapes, e.g. "1x64x368 1").
  local shapes
  mapfile -t shapes < <("$py" "$tool" shape "$mindir" "$converted.mindir")
  [ "${#shapes[@]}" -eq 2 ] || die "cannot read the input shapes of $mindir and $converted.mindir"
  [ "${shapes[0]}" = "${shapes[1]}" ] || die "$onnx takes inputs of shapes (${shapes[1]}) but $mindir takes (${shapes[0]}):
    export both with the same --n_frames and --batch_size (or delete $onnx to re-export it from the MindIR)"
  echo "$converted.mindir"
}

# ---- evaluation launcher ------------------------------------------------------------------------
# run_eval DEVICE DEVICE_ID CHECKPOINT [eval.py args...]: EVAL_DATA (manifests or MindRecord folders,
# space separated; default $DATA_DIR/dev), CONFIG and OUTPUT_DIR (default runs/eval) from the environment.
run_eval() {
  local device="$1" device_id="$2" ckpt="$3"; shift 3
  [ -f "$ckpt" ] || die "checkpoint not found: $ckpt"
  local -a data
  read -r -a data <<< "${EVAL_DATA:-$DATA_DIR/dev}"
  "$PY" eval.py --config "$CONFIG" --checkpoint "$ckpt" --manifest "${data[@]}" \
    --output_dir "${OUTPUT_DIR:-runs/eval}" --device_target "$device" --device_id "$device_id" "$@"
}

# ---- optional test dependencies -----------------------------------------------------------------
# PyTorch is needed only by pt2mind.py and the tests that compare against a PyTorch Jasper; it is not
# in requirements.txt.  Best effort: without it those tests are skipped.
TORCH_PIN="torch==2.13.0"
ensure_torch() {
  "$PY" -c "import torch" >/dev/null 2>&1 && return 0
  log "installing $TORCH_PIN (optional: checkpoint converter and its tests)"
  "$PY" -m pip install -q --only-binary=:all: "$TORCH_PIN" >>"$VENV_DIR/pip-install.log" 2>&1 \
    || log "WARNING: could not install $TORCH_PIN; PyTorch-based tests will be skipped"
}

# ---- optional TensorFlow (parity tests of the DS-CNN only) --------------------------------------
# tests/test_dscnn_tf.py compares the MFCC front end with TensorFlow's own ops and the converted
# DS-CNNs with ARM's frozen graphs run by TensorFlow.  TensorFlow lives in its own virtual environment
# so that nothing in the project imports it; the tests find it through TF_PYTHON (exported here) or
# .venv-tf/bin/python.  Best effort: without it those tests are skipped.
TF_VENV_DIR="${TF_VENV_DIR:-$REPO_ROOT/.venv-tf}"
TF_PINS=(tensorflow-cpu==2.21.0 numpy==2.4.6)
ensure_tensorflow() {
  local py="$TF_VENV_DIR/bin/python" stamp="$TF_VENV_DIR/.pins" want="${TF_PINS[*]}"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && "$py" -c "import tensorflow" >/dev/null 2>&1; then
    export TF_PYTHON="$py"
    return 0
  fi
  log "installing ${TF_PINS[*]} into $TF_VENV_DIR (optional: TensorFlow parity tests of the DS-CNN)"
  mkdir -p "$TF_VENV_DIR"
  local pip_log="$TF_VENV_DIR/pip-install.log"
  if { [ -x "$py" ] || "$PYTHON_BIN" -m venv "$TF_VENV_DIR" >"$pip_log" 2>&1; } \
     && "$py" -m pip install -q --only-binary=:all: "${TF_PINS[@]}" >>"$pip_log" 2>&1 \
     && "$py" -c "import tensorflow" >>"$pip_log" 2>&1; then
    echo "$want" > "$stamp"
    export TF_PYTHON="$py"
  else
    log "WARNING: could not set up TensorFlow in $TF_VENV_DIR (log: $pip_log); its parity tests will be skipped"
  fi
}

# ARM's released DS-CNN graphs for the conversion tests: $ARM_KWS_DIR, else a copy beside the checkout
# (../shared/pretrained/arm_kws), else what utils/download_speech_commands.py --arm_models fetched.
find_arm_models() {
  local d
  for d in "${ARM_KWS_DIR:-}" "$REPO_ROOT/../shared/pretrained/arm_kws" "$REPO_ROOT/.cache/arm_kws"; do
    if [ -n "$d" ] && [ -f "$d/DS_CNN_S.pb" ]; then export ARM_KWS_DIR="$d"; return 0; fi
  done
  log "NOTE: ARM's DS-CNN graphs not found (set ARM_KWS_DIR); their conversion tests will be skipped"
}

# ---- optional neural voices ---------------------------------------------------------------------
# hibari, Kokoro-82M and Piper voices and the room simulator for the corpus generators
# (utils/corpus/neural.py, acoustics.py): only corpora that ask for them need them.  Pinned in
# requirements-voices.txt and installed on top of requirements.txt (whose pins it keeps); a stamp makes
# a second call return at once.  Returns 1 (with a warning) when pip fails: callers decide whether
# that is fatal (a corpus that uses the voices) or not (tests skip).
ensure_voices() {
  local py="${PY:-$VENV_DIR/bin/python}" req="$REPO_ROOT/requirements-voices.txt"
  local stamp="$VENV_DIR/.voices.sha256" pip_log="$VENV_DIR/pip-install.log" want
  want="$(cat "$REPO_ROOT/requirements.txt" "$req" | sha256sum | cut -d' ' -f1)"
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  log "installing the optional neural voices (requirements-voices.txt, about 350 MB)"
  if ! "$py" -m pip install -q --only-binary=:all: -r "$req" -c "$REPO_ROOT/requirements.txt" >>"$pip_log" 2>&1; then
    tail -n 20 "$pip_log" >&2
    log "WARNING: could not install requirements-voices.txt (full log: $pip_log); neural voices are unavailable"
    return 1
  fi
  echo "$want" > "$stamp"
}

