#!/usr/bin/env bash
# gpt-oss's harmony template dates its system message with strftime_now: `quarry train` pins the
# run's day into run.json's template_date (so resume, eval and leakcheck render the same tokens),
# and keeps a --template-date given. Other templates record none unless given.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-harmony.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" \
    --seed 5 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
QA="$W/qa.jsonl"
for i in 1 2 3 4; do
  printf '{"system": "Be brief.", "messages": [{"role": "user", "content": "Q%s?"}, {"role": "assistant", "content": "A%s."}]}\n' $i $i
done > "$QA"
base=(--model "$W/model" --data "$QA" --max-seq-len 512 --device cpu --quiet --max-steps 1 --batch-size 2)
date_of() { "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["template"], r["settings"].get("template_date"))' "$1/run.json"; }
before=$(date +%F)
"$Q" train "${base[@]}" --template gpt-oss --out "$W/a" 2>"$W/a.log" || { echo "FAIL: train a:"; cat "$W/a.log"; exit 1; }
after=$(date +%F)
got=$(date_of "$W/a")
if [ "$got" != "gpt-oss $before" ] && [ "$got" != "gpt-oss $after" ]; then
  echo "FAIL: unpinned gpt-oss run records '$got', want 'gpt-oss $before'"; fail=1
fi
"$Q" train "${base[@]}" --template harmony --template-date 2025-08-05 --out "$W/b" 2>"$W/b.log" || { echo "FAIL: train b"; cat "$W/b.log"; exit 1; }
got=$(date_of "$W/b")
[ "$got" = "harmony 2025-08-05" ] || { echo "FAIL: pinned run records '$got'"; fail=1; }
"$Q" train "${base[@]}" --template chatml --out "$W/c" 2>"$W/c.log" || { echo "FAIL: train c"; cat "$W/c.log"; exit 1; }
got=$(date_of "$W/c")
[ "$got" = "chatml " ] || [ "$got" = "chatml None" ] || { echo "FAIL: chatml run records '$got'"; fail=1; }
[ $fail -eq 0 ] && echo "test_train_harmony_date: all cases passed"
exit $fail
