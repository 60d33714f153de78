#!/usr/bin/env bash
# --attention auto|cudnn|quarry on a machine without a GPU: the choice recorded in run.json and
# said in the log, cudnn refused with its fix where it cannot run, a misspelling a usage error;
# eval and generate take the same flag.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-attn.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 5 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
QA="$SRC/examples/data/company_qa_train.jsonl"
base=(--model "$W/model" --data "$QA" --max-seq-len 64 --device cpu --max-steps 1 --batch-size 2)

"$Q" train "${base[@]}" --out "$W/auto" 2>"$W/auto.log"
check "auto run exits 0" "[ $? -eq 0 ]"
check "auto on cpu: quarry's kernel, in run.json" "$PY -c \"import json;r=json.load(open('$W/auto/run.json'));assert r['attention']=='quarry',r.get('attention')\""
check "the choice said once in the log" "[ \$(grep -c 'attention: quarry' $W/auto.log) -eq 1 ]"

"$Q" train "${base[@]}" --attention quarry --out "$W/q" --quiet 2>"$W/q.log"
check "--attention quarry runs" "[ $? -eq 0 ] && $PY -c \"import json;assert json.load(open('$W/q/run.json'))['attention']=='quarry'\""

"$Q" train "${base[@]}" --attention cudnn --out "$W/c" 2>"$W/c.log"; rc=$?
check "--attention cudnn on cpu is an error naming the fix (exit 1)" "[ $rc -eq 1 ] && grep -q 'error: --attention cudnn needs a CUDA device' $W/c.log && grep -q -- '--attention auto' $W/c.log"
check "refused before the run directory is made" "[ ! -e $W/c ]"

"$Q" train "${base[@]}" --attention flash --out "$W/f" 2>"$W/f.log"; rc=$?
check "a misspelt --attention is a usage error naming the values" "[ $rc -eq 2 ] && grep -q -- \"--attention must be auto, cudnn or quarry (got 'flash')\" $W/f.log"

"$Q" eval --model "$W/auto" --data "$QA" --device cpu --attention cudnn 2>"$W/e.log" >/dev/null; rc=$?
check "eval --attention cudnn on cpu is an error" "[ $rc -ne 0 ] && grep -q 'quarry eval: error: --attention cudnn needs a CUDA device' $W/e.log"
"$Q" eval --model "$W/auto" --data "$QA" --device cpu --max-seq-len 64 --attention quarry >/dev/null 2>"$W/e2.log"
check "eval --attention quarry runs" "[ $? -eq 0 ]"
"$Q" generate --model "$W/auto" --prompt hi --max-new-tokens 2 --device cpu --attention nope >/dev/null 2>"$W/g.log"; rc=$?
check "generate --attention checks its value" "[ $rc -ne 0 ] && grep -q \"'nope' is not auto, cudnn or quarry\" $W/g.log"
exit $fail
