# tests/dist/common.sh — shared by the data-parallel tests: a tiny fp32 model and a train command.
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=$(command -v python3 || true)
[ -n "$PY" ] || { echo "SKIP: python3 (standard library) is needed to compare runs"; exit 77; }
W=$(mktemp -d /tmp/quarry-dist.XXXXXX); [ -n "${KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
fail=0
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" \
  --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
DATA="$SRC/examples/data/company_qa_train.jsonl"

# train OUT METHOD [extra...]: 6 steps of 4 sequences (micro-batch 1: the same micro-batches at any world
# size up to 4, so only the order of the sums differs), validation and checkpoints every 3 steps.
train() {
  local out=$1 method=$2 lora=(); shift 2
  [ "$method" = lora ] && lora=(--lora-r 4)
  "$Q" train --model "$W/model" --data "$DATA" --out "$out" --method "$method" --epochs 1 --batch-size 4 \
    --micro-batch 1 --max-seq-len 64 --lr 2e-3 "${lora[@]}" --validation-split 0.2 --eval-every 3 --save-every 3 \
    --max-steps 6 --device cpu --quiet "$@" >/dev/null 2>"$out.log"
}

# close NAME RUN REF: losses, grad norms, validation losses and final weights within 1e-6 relative.
close() {
  if ! "$PY" "$SRC/tests/dist/compare.py" "$2" "$3" 1e-6 >"$2.cmp" 2>&1; then
    echo "FAIL $1: differs from the single-rank run"; cat "$2.cmp"; fail=1
  fi
}
