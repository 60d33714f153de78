#!/usr/bin/env bash
# The TensorBoard event files of `quarry train`, read back with TensorBoard's own reader, hold the
# values of the CSVs at their steps: a plain run (and a crash-cut copy of its file), a run killed
# after a step its checkpoint does not hold and resumed (two files; the first left as it was; the
# killed steps dropped), data parallel (rank 0 writes alone) and a sparse MoE model (aux_loss).
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
"$PY" -c "import tensorboard" 2>/dev/null || { echo "SKIP: tensorboard is not installed for $PY (scripts/requirements-test.txt)"; exit 77; }
W=$(mktemp -d /tmp/quarry-tensorboard.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
CHECK="$SRC/tests/train/check_tensorboard.py"
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 \
  --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
DATA="$SRC/examples/data/company_qa_train.jsonl"
train() {  # train OUT [extra...]
  local out=$1; shift
  "$Q" train --model "$W/model" --data "$DATA" --out "$out" --batch-size 4 --max-seq-len 64 --validation-split 0.2 \
    --eval-every 2 --device cpu --quiet "$@" >/dev/null 2>"$out.log"
}

train "$W/plain" --max-steps 4 || { echo "FAIL: plain run"; cat "$W/plain.log"; exit 1; }
"$PY" "$CHECK" "$W/plain" 1 --truncate || fail=1

# Killed after step 3, whose checkpoint (every 2 steps) is not written: the resumed run computes
# step 3 again and TensorBoard must show the new step 3, not the killed one.
QUARRY_TEST_FAULT=kill-after-step:3 train "$W/resumed" --max-steps 5 --save-every 2; rc=$?
[ $rc -eq 137 ] || { echo "FAIL: the killed run exited $rc, want 137"; fail=1; }
first=$(ls "$W/resumed"/events.out.tfevents.*)
sum=$(sha256sum < "$first")
sleep 1   # a new file, by name after the first
"$Q" train --resume "$W/resumed" >/dev/null 2>"$W/resumed.resume.log" || { echo "FAIL: resume"; cat "$W/resumed.resume.log"; fail=1; }
[ "$(sha256sum < "$first")" = "$sum" ] || { echo "FAIL: resume changed the first event file"; fail=1; }
"$PY" "$CHECK" "$W/resumed" 2 || fail=1

train "$W/ranks" --max-steps 2 --ranks 2 || { echo "FAIL: --ranks 2 run"; cat "$W/ranks.log"; fail=1; }
"$PY" "$CHECK" "$W/ranks" 1 || fail=1

"$Q" init --config "$SRC/tests/export/qwen3-moe-tiny.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/moe" --seed 5 \
  --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: MoE init"; exit 1; }
"$Q" train --model "$W/moe" --data "$DATA" --out "$W/moe-run" --batch-size 4 --max-seq-len 64 --max-steps 2 --device cpu \
  --quiet >/dev/null 2>"$W/moe.log" || { echo "FAIL: MoE run"; cat "$W/moe.log"; fail=1; }
"$PY" "$CHECK" "$W/moe-run" 1 || fail=1

[ $fail -eq 0 ] && echo "test_train_tensorboard: all checks passed"
exit $fail
