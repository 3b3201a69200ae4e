#!/usr/bin/env bash
# Ascend-310 inference with the C++ runner, for any model of the zoo:
# preprocess.py → ascend310_infer (zoo_infer) → postprocess.py (WER/CER, or accuracy for keyword spotting).
#
# Usage: bash scripts/run_infer_310.sh MINDIR_PATH NEED_PREPROCESS(y|n) [DEVICE_ID]
#            [--device_target Ascend310|Ascend|CPU] [--manifest JSON] [--work_dir DIR] [--config CFG]
#            [--set KEY=VALUE ...]
#   MINDIR_PATH      the model from export.py, with its sidecar MINDIR_PATH.json (front end, labels, input
#                    names and shapes): preprocess.py and postprocess.py take their settings from it
#   NEED_PREPROCESS  y: compute the model's inputs for --manifest into WORK_DIR/preprocess/<manifest name>/;
#                    n: reuse them (the only folder there, or the one of --manifest)
#   DEVICE_ID        Ascend device (default 0)
#   --device_target  Ascend310 (default) or Ascend run the MindIR as given.  CPU runs it with the
#                    MindSpore Lite 2.0 runtime (fetched into third_party/), which reads MindIR version 1
#                    only: the model is converted from the ONNX export beside it (<stem>.onnx, from
#                    export.py --file_format ONNX with the same shape; re-exported from the MindIR
#                    when absent) into WORK_DIR/model/.
#   --work_dir       default ./infer_310_work; the result is WORK_DIR/result/metrics.json (+ the report,
#                    timing.tsv and the runner's <utt_id>_<k>.bin file per model output k)
#   --config         a config YAML for preprocess.py, checked against the model's sidecar (default: the
#                    sidecar alone)
#   --set            a config override for preprocess.py, as in the Python scripts; repeatable
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

[ $# -ge 2 ] || usage
MINDIR="$(realpath -m "$1")"
NEED_PREPROCESS="$2"
shift 2
DEVICE_ID=0
if is_uint "${1:-}"; then DEVICE_ID="$1"; shift; fi
DEVICE=Ascend310 MANIFEST="" WORK_DIR="infer_310_work" CONFIG_ARGS=() SET_ARGS=()
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "option $1 needs a value"
  case "$1" in
    --device_target) DEVICE="$2" ;;
    --manifest) MANIFEST="$(realpath -m "$2")" ;;
    --work_dir) WORK_DIR="$2" ;;
    --config) CONFIG_ARGS=(--config "$(realpath -m "$2")") ;;
    --set) SET_ARGS+=(--set "$2") ;;
    *) die "unknown option $1 (see: bash $0)" ;;
  esac
  shift 2
done
WORK_DIR="$(realpath -m "$WORK_DIR")"
case "$NEED_PREPROCESS" in y|n) ;; *) die "NEED_PREPROCESS must be y or n, got '$NEED_PREPROCESS'" ;; esac
case "$DEVICE" in Ascend310|Ascend|CPU) ;; *) die "--device_target must be Ascend310, Ascend or CPU, got '$DEVICE'" ;; esac
[ -f "$MINDIR" ] || die "MindIR not found: $MINDIR (export it with export.py --file_format MINDIR)"

# The preprocessed data set: WORK_DIR/preprocess/<manifest name>/ (its name keys metrics.json).
if [ -n "$MANIFEST" ]; then
  PRE_DIR="$WORK_DIR/preprocess/$(basename "$MANIFEST" .json)"
elif [ "$NEED_PREPROCESS" = y ]; then
  die "NEED_PREPROCESS=y needs --manifest JSON"
else
  mapfile -t found < <(find "$WORK_DIR/preprocess" -mindepth 2 -maxdepth 2 -name inputs.txt 2>/dev/null)
  [ "${#found[@]}" -eq 1 ] || die "found ${#found[@]} preprocessed data sets under $WORK_DIR/preprocess; pick one with --manifest"
  PRE_DIR="$(dirname "${found[0]}")"
fi
if [ "$NEED_PREPROCESS" = n ] && [ ! -f "$PRE_DIR/inputs.txt" ]; then
  die "$PRE_DIR/inputs.txt not found: run with NEED_PREPROCESS=y"
fi

ensure_venv
cd "$REPO_ROOT"
mkdir -p "$WORK_DIR"

# ---- the runner and the model it runs
if [ "$DEVICE" = CPU ]; then
  BUILD_DIR="$(bash ascend310_infer/build.sh lite)"
  MODEL="$(prepare_lite_model "$MINDIR" "$WORK_DIR/model" "$BUILD_DIR")"
else
  BUILD_DIR="$(bash ascend310_infer/build.sh ascend)"
  MODEL="$MINDIR"
fi

# ---- the model's inputs, shaped as its sidecar MINDIR.json says
if [ "$NEED_PREPROCESS" = y ]; then
  "$PY" preprocess.py --manifest "$MANIFEST" --output_dir "$PRE_DIR" --mindir "$MINDIR" "${CONFIG_ARGS[@]}" \
    "${SET_ARGS[@]}" || die "preprocess.py failed"
fi

# ---- inference and scoring
RESULT_DIR="$WORK_DIR/result"
mkdir -p "$RESULT_DIR"
rm -f "$RESULT_DIR/metrics.json"
log "running $BUILD_DIR/zoo_infer on $DEVICE (log: $WORK_DIR/infer.log)"
LD_LIBRARY_PATH="$(cat "$BUILD_DIR/mindspore_lib_dir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  "$BUILD_DIR/zoo_infer" --mindir_path "$MODEL" --input_dir "$PRE_DIR" --result_dir "$RESULT_DIR" \
  --device_target "$DEVICE" --device_id "$DEVICE_ID" >"$WORK_DIR/infer.log" \
  || die "the runner failed (see above and $WORK_DIR/infer.log)"
tail -n 1 "$WORK_DIR/infer.log" >&2
# The preprocess folder's model.json (the sidecar) tells postprocess.py the labels, task and output rule.
"$PY" postprocess.py --result_dir "$RESULT_DIR" --preprocess_dir "$PRE_DIR" || die "postprocess.py failed"
