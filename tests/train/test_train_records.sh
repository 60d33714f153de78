#!/usr/bin/env bash
# No record disappears silently: at a --max-seq-len shorter than the prompts, train refuses to
# drop records unless --truncate says how; --truncate left trains every record; run.json, the
# train log and `validate --max-seq-len --json` give the same per-record accounting; a split or a
# validation file left empty is an error with the reason; train and eval take --allow-extra-keys.
# Data: the first 12 records of the AWS sample uber10k_prompt_completion.jsonl (long 10-K
# contexts) when ../shared/testdata is here, else 12 written long prompts; plus 2 short records.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-records.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
U=${QUARRY_TESTDATA:-/nonexistent}/bedrock/uber10k_prompt_completion.jsonl
if [ -f "$U" ]; then head -n 12 "$U" > "$W/long.jsonl"
else
  "$PY" -c "
import json
for i in range(12):
    print(json.dumps({'prompt': 'Context: ' + ' '.join('filing %d item %d' % (i, k) for k in range(120)) + ' Question: total?',
                      'completion': 'The total is %d.' % (i * 7)}))" > "$W/long.jsonl"
fi
{ cat "$W/long.jsonl"
  printf '{"prompt": "What is two and two?", "completion": "four"}\n{"prompt": "What is one and one?", "completion": "two"}\n'
} > "$W/data.jsonl"
base=(--model "$W/model" --max-seq-len 128 --device cpu --quiet --max-steps 1 --batch-size 4)

# The default (right) truncation would drop the 12 long records: refused, with the way out.
"$Q" train "${base[@]}" --data "$W/data.jsonl" --out "$W/r0" 2>"$W/err"; rc=$?
check "dropping records without --truncate is refused (exit 1)" "[ $rc -eq 1 ]"
check "the refusal counts, names lines and the flags" "grep -q 'data.jsonl: 12 of 14 records would be dropped' $W/err && grep -q 'lines 1, 2, 3, 4, 5, ...' $W/err && grep -q 'hint: --truncate left keeps the answers' $W/err"
check "nothing trained" "[ ! -e $W/r0/run.json ]"

# --truncate left trains every record; run.json counts them.
"$Q" train "${base[@]}" --data "$W/data.jsonl" --out "$W/left" --truncate left --validation-split 0.25 2>"$W/left.log"; rc=$?
check "--truncate left trains (exit 0)" "[ $rc -eq 0 ]"
check "the log's summary line" "grep -q 'data.jsonl: 14 records at --max-seq-len 128 (--truncate left): 2 whole, 12 truncated' $W/left.log && grep -q 'data.jsonl:1: truncated (left) from' $W/left.log"
check "run.json: every record trained, 12 truncated, none dropped" "$PY - $W/left/run.json <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
d = r['records']['data']
assert (d['records'], d['whole'], d['truncated'], d['dropped']) == (14, 2, 12, 0), d
assert [t['line'] for t in d['truncated_records']] == list(range(1, 13)), d['truncated_records']
assert all(t['kept_tokens'] == 128 and 0 < t['answer_tokens_kept'] <= t['answer_tokens'] for t in d['truncated_records'])
assert r['train_examples'] + r['validation_examples'] == 14, r
assert r['settings']['truncate'] == 'left' and r['settings']['truncate_explicit'] is True, r['settings']
PYEOF"

# validate --max-seq-len gives the same accounting.
"$Q" validate "$W/data.jsonl" --model "$W/model" --max-seq-len 128 --truncate left --scan off --json >"$W/v.json" 2>"$W/v.err"; rc=$?
check "validate --truncate left exits 0" "[ $rc -eq 0 ]"
check "validate's counts equal run.json's" "$PY - $W/v.json $W/left/run.json <<'PYEOF'
import json, sys
v = json.load(open(sys.argv[1]))['files'][0]['truncation']
d = json.load(open(sys.argv[2]))['records']['data']
keys = ['records', 'whole', 'truncated', 'dropped', 'answer_tokens', 'answer_tokens_kept', 'truncated_records']
assert {k: v[k] for k in keys} == {k: d[k] for k in keys}, (v, d)
PYEOF"
"$Q" validate "$W/data.jsonl" --model "$W/model" --max-seq-len 128 --scan off >"$W/v.txt" 2>"$W/v.err"; rc=$?
check "validate (right) reports the drops and warns that train would refuse" "[ $rc -eq 0 ] && grep -q '2 whole, 0 truncated .* 12 dropped' $W/v.txt && grep -q 'data.jsonl:1: dropped: .* answer tokens cut off by --truncate right at 128' $W/v.txt && grep -q 'warning: quarry train would refuse this file: 12 of 14 records would be dropped' $W/v.err"

# --truncate right accepts the drops, lists them in run.json.
"$Q" train "${base[@]}" --data "$W/data.jsonl" --out "$W/right" --truncate right 2>"$W/right.log"; rc=$?
check "--truncate right trains what is left (exit 0)" "[ $rc -eq 0 ] && grep -q '2 whole, 0 truncated .* 12 dropped (0 empty, 0 without an answer, 12 with the answer cut off)' $W/right.log"
check "run.json lists the dropped lines and reasons" "$PY -c \"
import json; d = json.load(open('$W/right/run.json'))['records']['data']
assert d['dropped'] == 12 and d['dropped_by_reason']['answer_cut'] == 12, d
assert [x['line'] for x in d['dropped_records']] == list(range(1, 13)) and {x['reason'] for x in d['dropped_records']} == {'answer_cut'}, d
\""

# Empty after drops: the split, the validation file, the data file: errors with the reason.
"$Q" train "${base[@]}" --data "$W/data.jsonl" --out "$W/s0" --truncate right --validation-split 0.1 2>"$W/err"; rc=$?
check "a split left empty by drops says why" "[ $rc -eq 1 ] && grep -q 'validation-split 0.1 of 2 records gives 0 for validation and 2 for training (12 of the 14 records were dropped' $W/err"
"$Q" train "${base[@]}" --data "$W/data.jsonl" --validation "$W/long.jsonl" --out "$W/s1" --truncate right 2>"$W/err"; rc=$?
check "a validation file with every record dropped is refused" "[ $rc -eq 1 ] && grep -q 'long.jsonl: no record left to train on: all 12 were dropped' $W/err"

# eval: the run's truncation is its default; on the base model it refuses the same way.
"$Q" eval --model "$W/left" --data "$W/data.jsonl" --device cpu --json >"$W/e.json" 2>"$W/err"; rc=$?
check "eval of the run scores all 14 records (its --truncate left)" "[ $rc -eq 0 ] && $PY -c \"import json;d=json.load(open('$W/e.json'));assert d['records']==14 and d['records_report']['truncated']==12,d['records_report']\""
"$Q" eval --model "$W/model" --data "$W/data.jsonl" --max-seq-len 128 --device cpu 2>"$W/err" >/dev/null; rc=$?
check "eval with the default truncation refuses to drop records" "[ $rc -eq 1 ] && grep -q '12 of 14 records would be dropped' $W/err"

# --allow-extra-keys reaches train and eval.
printf '{"prompt": "What is two and two?", "completion": "four", "source": "x"}\n{"prompt": "What is one and one?", "completion": "two", "source": "y"}\n' > "$W/extra.jsonl"
"$Q" train "${base[@]}" --data "$W/extra.jsonl" --out "$W/x0" 2>"$W/err"; rc=$?
check "train refuses an extra key by default" "[ $rc -eq 1 ] && grep -q 'unknown key \"source\"' $W/err"
"$Q" train "${base[@]}" --data "$W/extra.jsonl" --out "$W/x1" --allow-extra-keys 2>"$W/err"; rc=$?
check "train --allow-extra-keys trains, warning" "[ $rc -eq 0 ] && grep -q 'warning: unknown key \"source\"' $W/err"
"$Q" train "${base[@]}" --data "$W/extra.jsonl" --out "$W/x2" 2>"$W/err"; rc=$?
check "after an --allow-extra-keys run the strict run still refuses (no cache shortcut)" "[ $rc -eq 1 ]"
"$Q" eval --model "$W/model" --data "$W/extra.jsonl" --device cpu >/dev/null 2>"$W/err"; rc=$?
check "eval refuses an extra key by default" "[ $rc -eq 1 ]"
"$Q" eval --model "$W/model" --data "$W/extra.jsonl" --device cpu --allow-extra-keys >/dev/null 2>"$W/err"; rc=$?
check "eval --allow-extra-keys scores the file" "[ $rc -eq 0 ]"

[ $fail -eq 0 ] && echo "test_train_records: all checks passed"
exit $fail
