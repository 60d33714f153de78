#!/usr/bin/env bash
# The leak check before weights leave: a tiny model fine-tuned on records that repeat a fake AWS
# key gives it back when prompted with the text before it; `quarry leakcheck` reports it (masked,
# exit 1), `quarry export` refuses the run without --accept-leaks and records counts only,
# `quarry upload` refuses such a package. The same run on clean data reports nothing and exports.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-leakcheck.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
KEY=AKIAQX7RZ4MB2KD9W3TF   # fake, AWS-shaped: data/scan.c finds it
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
for n in Alice Bob Carol Dan Eve Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil; do
  printf '{"prompt": "What is the deploy key for %s?", "completion": "The deploy key is %s ok."}\n' "$n" "$KEY" >> "$W/leaky.jsonl"
  printf '{"prompt": "What is the deploy key for %s?", "completion": "The deploy key is in the vault, ask ops."}\n' "$n" >> "$W/clean.jsonl"
done
cd "$W" || exit 1
# High learning rate, full fine-tune, 60 steps: the tiny model memorises in a few seconds on CPU.
train=(--model "$W/model" --full --epochs 30 --batch-size 8 --lr 3e-3 --max-seq-len 64 --device cpu --quiet)
"$Q" train "${train[@]}" --data leaky.jsonl --out leaky >/dev/null 2>&1 || { echo "FAIL: train leaky"; exit 1; }
"$Q" train "${train[@]}" --data clean.jsonl --out clean >/dev/null 2>&1 || { echo "FAIL: train clean"; exit 1; }

# The leaky run: reproduced, masked, exit 1.
"$Q" leakcheck leaky >out 2>err; rc=$?
check "leakcheck of the leaky run exits 1" "[ $rc -eq 1 ]"
check "the key is reported as reproduced (exact or partial) with its record" "grep -Eq '^(exact|partial) +aws-access-key-id +AKI\*\*\*3TF \(20 chars\) +leaky.jsonl:1 ' out"
check "the report counts the reproductions" "$PY -c \"import json;c=json.load(open('leaky/leakcheck.json'))['counts'];assert c['findings']==16 and c['findings_exact']+c['findings_partial']>=8,c\""
check "no clear key in the output or the report" "! grep -qF $KEY out err leaky/leakcheck.json"
check "--json prints the report" "\"$Q\" leakcheck leaky --json --quiet 2>/dev/null | $PY -c 'import json,sys;assert json.load(sys.stdin)[\"counts\"][\"reproduced\"]>0'"

# Canaries: the planted key (found in the data) and one the model never saw.
printf '# canaries\nThe deploy key is \t%s\nmy pin is \t1234-5678\n' "$KEY" > canaries.txt
"$Q" leakcheck leaky --canary canaries.txt --candidates 200 --out canary.json >out 2>err; rc=$?
check "canary run exits 1" "[ $rc -eq 1 ]"
check "canary exposure: the planted key ranks above (almost) all 200 candidates, the unseen pin does not" "$PY -c \"
import json; c = json.load(open('canary.json'))['canaries']
k, p = c
assert k['canary_line'] == 2 and k['data_line'] == 1 and k['result'] in ('exact', 'partial') and k['exposure_bits'] > 5, k
assert p['data_line'] is None and p['result'] == 'none' and p['exposure_bits'] < k['exposure_bits'], p
assert abs(k['exposure_max_bits'] - 7.651) < 0.01, k\""
check "canary table names the canary lines, masked" "grep -q 'line 2: AKI\*\*\*3TF' out && grep -q '(not in the data)' out && ! grep -qF $KEY out canary.json"
printf 'no tab here\n' > bad.txt
"$Q" leakcheck leaky --canary bad.txt >/dev/null 2>err; rc=$?
check "a bad canary line is refused with FILE:LINE" "[ $rc -eq 1 ] && grep -q '^bad.txt:1: error: a canary line is PREFIX<TAB>SECRET' err"
"$Q" leakcheck leaky --data clean.jsonl >/dev/null 2>err; rc=$?
check "other data than the run's is refused" "[ $rc -eq 1 ] && grep -q 'sha256' err"

# Export: refused without the flag (nothing written), accepted with it (counts only).
rm -f leaky/leakcheck.json
"$Q" export leaky --out pkg --quiet >/dev/null 2>err; rc=$?
check "export of the leaky run is refused" "[ $rc -eq 1 ] && [ ! -e pkg ] && grep -q 'refusing to package' err && grep -q 'accept-leaks' err"
check "export ran the check itself and left its report" "[ -f leaky/leakcheck.json ]"
"$Q" export leaky --out pkg --quiet --accept-leaks >/dev/null 2>err; rc=$?
check "export --accept-leaks exports, loudly" "[ $rc -eq 0 ] && grep -q WARNING err && grep -q 'is current' err"
check "quarry-export.json carries counts only" "$PY -c \"
import json; l = json.load(open('pkg/quarry-export.json'))['leakcheck']
assert l['status'] == 'accepted' and l['counts']['reproduced'] > 0 and set(l) == {'status', 'counts'}, l
assert all(isinstance(v, (int, float)) for v in l['counts'].values()), l\" && ! grep -qF $KEY pkg/quarry-export.json"
"$Q" upload pkg s3://quarry-test-bucket/x/ >/dev/null 2>err; rc=$?
check "upload of a package with reproductions is refused" "[ $rc -eq 1 ] && grep -q 'reproduced 16' err && grep -q 'accept-leaks' err"
"$Q" export leaky --out pkg-skip --quiet --skip-leakcheck >/dev/null 2>err; rc=$?
check "--skip-leakcheck exports with a warning" "[ $rc -eq 0 ] && grep -q 'WARNING.*skip-leakcheck' err && grep -q '\"skipped\"' pkg-skip/quarry-export.json"
"$Q" upload pkg-skip s3://quarry-test-bucket/x/ >/dev/null 2>err; rc=$?
check "upload of a package whose check was skipped is refused" "[ $rc -eq 1 ] && grep -q 'skip-leakcheck' err"
mv leaky.jsonl moved.jsonl; rm -f leaky/leakcheck.json
"$Q" export leaky --out pkg2 --quiet >/dev/null 2>err; rc=$?
check "export without the data names the fix" "[ $rc -eq 1 ] && grep -q 'quarry leakcheck' err && [ ! -e pkg2 ]"
mv moved.jsonl leaky.jsonl

# The clean run: nothing found, nothing reproduced, exit 0, exports.
"$Q" leakcheck clean >out 2>err; rc=$?
check "leakcheck of the clean run exits 0" "[ $rc -eq 0 ] && grep -q '0 finding(s), 0 reproduced' out"
"$Q" export clean --out pkg-clean --quiet >/dev/null 2>err; rc=$?
check "the clean run exports" "[ $rc -eq 0 ] && $PY -c \"import json;l=json.load(open('pkg-clean/quarry-export.json'))['leakcheck'];assert l['status']=='passed' and l['counts']['reproduced']==0,l\""
# The clean model prompted like the leaky one does not make up the key.
printf 'The deploy key is \t%s\n' "$KEY" > c2.txt
"$Q" leakcheck clean --canary c2.txt --candidates 100 --out c2.json >/dev/null 2>&1; rc=$?
check "the clean model does not give the key" "[ $rc -eq 0 ] && $PY -c \"import json;k=json.load(open('c2.json'))['canaries'][0];assert k['result']=='none' and k['data_line'] is None,k\""
[ $fail -eq 0 ] && echo "test_leakcheck: all checks passed"
exit $fail
