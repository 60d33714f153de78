#!/usr/bin/env bash
# quarry validate --model (--max-seq-len) tokenizes through the path `quarry train` takes (the token
# store, trainer/example_store): a train over the same file and model right after reads the
# token cache the validate wrote. --data-threads (train, eval, validate) changes nothing but the
# threads: the same accounting at 1 and 2 threads, the same losses, and it is not in run.json.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-vcache.XXXXXX); trap 'rm -rf "$W"' EXIT
export QUARRY_CACHE_DIR=$W/cache
unset QUARRY_TOKEN_CACHE QUARRY_DATA_THREADS
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
D=$SRC/examples/data/company_qa_train.jsonl

QUARRY_CACHE_DIR=$W/cache0 "$Q" validate "$D" --model "$W/model" --scan off >/dev/null 2>&1; rc=$?
check "validate --model without --max-seq-len also fills the token cache" "[ $rc -eq 0 ] && [ \$(ls $W/cache0/*.bin 2>/dev/null | wc -l) -eq 1 ]"
"$Q" validate "$D" --model "$W/model" --max-seq-len 128 --scan off --json --data-threads 1 >"$W/v1.json" 2>"$W/v1.err"; rc=$?
check "validate --max-seq-len (exit 0)" "[ $rc -eq 0 ]"
check "validate wrote one token cache file" "[ \$(ls $W/cache/*.bin 2>/dev/null | wc -l) -eq 1 ]"
"$Q" validate "$D" --model "$W/model" --max-seq-len 128 --scan off --json --data-threads 2 >"$W/v2.json" 2>/dev/null
check "the same accounting at 1 and 2 threads (and from the cache)" "cmp -s $W/v1.json $W/v2.json"

base=(--model "$W/model" --data "$D" --max-seq-len 128 --device cpu --max-steps 2 --batch-size 2)
"$Q" train "${base[@]}" --out "$W/r1" --data-threads 2 >"$W/t1.out" 2>"$W/t1.log"; rc=$?
check "train after validate (exit 0)" "[ $rc -eq 0 ]"
check "train reads the token cache validate wrote" "grep -q 'from the token cache' $W/t1.log"
check "--data-threads is not recorded" "! grep -q 'data.threads' $W/r1/run.json"
QUARRY_TOKEN_CACHE=off "$Q" train "${base[@]}" --out "$W/r2" --data-threads 1 --quiet >/dev/null 2>&1
check "the same losses tokenized on 1 thread without the cache" \
  "diff <(cut -d, -f1-6 $W/r1/step_wise_training_metrics.csv) <(cut -d, -f1-6 $W/r2/step_wise_training_metrics.csv) >/dev/null"

for cmd in train eval validate; do
  check "$cmd --help names --data-threads" "\"$Q\" $cmd --help 2>&1 | grep -q -- '--data-threads'"
done
"$Q" validate "$D" --model "$W/model" --data-threads -1 >/dev/null 2>"$W/bad.err"; rc=$?
check "validate --data-threads -1 is a usage error" "[ $rc -eq 2 ] && grep -q 'data-threads' $W/bad.err"
"$Q" train "${base[@]}" --out "$W/r3" --data-threads 0x >/dev/null 2>"$W/bad.err"; rc=$?
check "train --data-threads 0x is a usage error" "[ $rc -eq 2 ] && [ ! -e $W/r3/run.json ]"
"$Q" eval --model "$W/model" --data "$D" --data-threads 2000 >/dev/null 2>"$W/bad.err"; rc=$?
check "eval --data-threads 2000 is a usage error" "[ $rc -eq 2 ] && grep -q 'data-threads' $W/bad.err"

[ $fail = 0 ] && echo "test_validate_cache: all checks passed"
exit $fail
