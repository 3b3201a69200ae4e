#!/usr/bin/env bash
# Usage: bash scripts/run_distribute_train_ascend.sh RANK_SIZE BEGIN RANK_TABLE_FILE [train.py options...]
#   e.g. bash scripts/run_distribute_train_ascend.sh 8 0 ./hccl_config/hccl_8.json
#   One process per Ascend 910 device BEGIN .. BEGIN+RANK_SIZE-1, joined through the HCCL rank table.
#   CONFIG, DATA_DIR, OUTPUT_DIR from the environment; rank i logs to OUTPUT_DIR/rank_i/train.log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# -ge 3 ] || die "usage: bash scripts/run_distribute_train_ascend.sh RANK_SIZE BEGIN RANK_TABLE_FILE [train.py options...]"
is_uint "$1" && is_uint "$2" || die "RANK_SIZE and BEGIN must be whole numbers, got '$1' '$2'"
[ -f "$3" ] || die "rank table file not found: $3"
ensure_venv
cd "$REPO_ROOT"
RANK_SIZE="$1"; BEGIN="$2"; RANK_TABLE_FILE="$(realpath "$3")"; shift 3
OUTPUT_DIR="${OUTPUT_DIR:-runs/distribute_ascend}"
export RANK_SIZE RANK_TABLE_FILE
mapfile -t base < <(train_args Ascend "$OUTPUT_DIR")
pids=()
for ((i = 0; i < RANK_SIZE; i++)); do
  mkdir -p "$OUTPUT_DIR/rank_$i"
  RANK_ID=$i DEVICE_ID=$((BEGIN + i)) "$PY" "${base[@]}" --device_id $((BEGIN + i)) --is_distributed "$@" \
    > "$OUTPUT_DIR/rank_$i/train.log" 2>&1 &
  pids+=($!)
  log "rank $i on device $((BEGIN + i)): pid ${pids[-1]}, log $OUTPUT_DIR/rank_$i/train.log"
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
[ "$status" -eq 0 ] || die "a rank failed (exit $status); see $OUTPUT_DIR/rank_*/train.log"
log "all $RANK_SIZE ranks finished; checkpoints in $OUTPUT_DIR/checkpoints"
