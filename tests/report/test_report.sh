#!/usr/bin/env bash
# `quarry report RUN` on a tiny run (a few steps on the tiny model, records holding <script>),
# rendered by headless Chromium: a non-trivial screenshot, and from the DOM the run's name, its
# settings and record counts, the <script> text shown as text (no script element), the plots'
# paths with one point per CSV row, the cost figures of `quarry cost --json`, the answers table.
# Also: --out never replaces a file without --force, a changed base is refused before loading
# (as generate), --no-generate writes the page without loading a model. SKIP (77) without chromium.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-report.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
export OMP_NUM_THREADS=1
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" \
  --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
"$PY" - "$W/data.jsonl" <<'PYEOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(15):
        f.write(json.dumps({"prompt": "What is %d plus %d? <script>alert('x%d')</script> & \"q\"" % (i, i, i),
                            "completion": "It is %d. </pre><b>bold</b>" % (2 * i)}) + "\n")
    # One record longer than --max-seq-len: truncated (left), counted.
    f.write(json.dumps({"prompt": " ".join("word%d" % k for k in range(80)), "completion": "long"}) + "\n")
PYEOF
"$Q" train --model "$W/model" --data "$W/data.jsonl" --out "$W/run-a" --device cpu --quiet --epochs 2 --batch-size 4 \
  --max-seq-len 80 --truncate left --validation-split 0.25 --eval-every 2 --lr 1e-3 2>"$W/train.log" \
  || { cat "$W/train.log"; echo "FAIL: train"; exit 1; }

t0=$(date +%s.%N)
"$Q" report "$W/run-a" --device cpu --prompts 2 --max-new-tokens 4 --base-model meta.llama3-1-8b-instruct-v1:0 \
  --gpu-hour-price 2.5 >"$W/out" 2>"$W/err"; rc=$?
t1=$(date +%s.%N)
check "report exits 0" "[ $rc -eq 0 ] || cat $W/err"
check "it says where it wrote" "grep -q 'quarry report: wrote $W/run-a/report.html' $W/out"
check "the page is private to the user (it shows records): mode 600" "[ \"\$(stat -c %a $W/run-a/report.html)\" = 600 ]"
check "no script, no outside resource (link, img, @import, url())" \
  "! grep -qiE '<(script|link|img|iframe|object)|@import|url\\(' $W/run-a/report.html"
check "only the SVG namespace is a URL" "[ \$(grep -oE 'https?://[^\"]+' $W/run-a/report.html | sort -u | tr -d '\n') = http://www.w3.org/2000/svg ]"
"$Q" cost --run "$W/run-a" --base-model meta.llama3-1-8b-instruct-v1:0 --gpu-hour-price 2.5 --json >"$W/cost.json" 2>/dev/null \
  || { echo "FAIL: quarry cost --json"; fail=1; }
cp "$W/run-a/report.html" "$W/first.html"

# The prompts are the run's validation records: with every one asked for, their records scored by
# `quarry eval` give the run's final validation loss exactly.
"$Q" report "$W/run-a" --device cpu --prompts 100 --max-new-tokens 1 --out "$W/all.html" >/dev/null 2>"$W/err" \
  || { cat "$W/err"; echo "FAIL: report --prompts 100"; fail=1; }
lines=$(grep -o '<tr><td>[0-9]*</td>' "$W/all.html" | grep -o '[0-9]*')
: >"$W/val.jsonl"; for l in $lines; do sed -n "${l}p" "$W/data.jsonl" >>"$W/val.jsonl"; done
"$Q" eval --model "$W/run-a" --data "$W/val.jsonl" --device cpu --json >"$W/eval.json" 2>/dev/null
check "the answered prompts are the validation split (4 records; eval loss = final validation loss)" "$PY - $W/eval.json $W/run-a/run.json <<'PYEOF'
import json, sys
e, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert e['records'] == r['validation_examples'] == 4, (e['records'], r['validation_examples'])
assert abs(e['loss'] - r['result']['final_validation_loss']) < 1e-6, (e['loss'], r['result']['final_validation_loss'])
PYEOF"

# Energy measured during training (result.energy_joules) is shown, and priced as quarry cost does.
cp -r "$W/run-a" "$W/run-e"
"$PY" -c "
import json, sys; p = sys.argv[1]; r = json.load(open(p)); r['result']['energy_joules'] = 7.2e6; json.dump(r, open(p, 'w'))" \
  "$W/run-e/run.json"
"$Q" report "$W/run-e" --no-generate --power-price 0.25 >/dev/null 2>"$W/err"; rc=$?
check "measured energy on the page: 2 kWh, in the result and the cost" \
  "[ $rc -eq 0 ] && grep -q 'GPU energy (measured)</th><td>2 kWh' $W/run-e/report.html && grep -q '2 kWh (measured)' $W/run-e/report.html"

# --out: a new file is written; an existing one is not replaced without --force; a directory never.
echo keep >"$W/mine.html"
"$Q" report "$W/run-a" --no-generate --out "$W/mine.html" >/dev/null 2>"$W/err"; rc=$?
check "--out FILE that exists is refused (exit 1), the file kept" \
  "[ $rc -eq 1 ] && grep -q 'mine.html exists; it is not replaced' $W/err && grep -q 'hint: .*--force' $W/err && [ \"\$(cat $W/mine.html)\" = keep ]"
"$Q" report "$W/run-a" --no-generate --out "$W/mine.html" --force >/dev/null 2>"$W/err"; rc=$?
check "--force replaces it" "[ $rc -eq 0 ] && grep -q 'No answers: written with --no-generate' $W/mine.html"
"$Q" report "$W/run-a" --no-generate --out "$W" >/dev/null 2>"$W/err"; rc=$?
check "--out DIR is refused" "[ $rc -eq 1 ] && grep -q 'is a directory' $W/err"
"$Q" report "$W/run-a" --no-generate --out "$W/run-a/final/report.html" >/dev/null 2>"$W/err"; rc=$?
check "--out inside the run's final/ is refused" "[ $rc -eq 1 ] && grep -q 'lies inside the run.s final/' $W/err && [ ! -e $W/run-a/final/report.html ]"
"$Q" report "$W/model" >/dev/null 2>"$W/err"; rc=$?
check "a directory without run.json is refused with the reason" "[ $rc -eq 1 ] && grep -q 'run.json' $W/err && [ ! -e $W/model/report.html ]"
"$Q" report "$W/run-a" --prompts -1 >/dev/null 2>"$W/err"; rc=$?
check "--prompts -1 is a usage error (exit 2)" "[ $rc -eq 2 ] && grep -q 'prompts must be' $W/err"

# The base is checked against run.json before anything is loaded, as generate does.
cp -r "$W/model" "$W/model-orig"
printf ' ' >>"$W/model/config.json"
"$Q" report "$W/run-a" --device cpu --prompts 1 >/dev/null 2>"$W/err"; rc=$?
check "a changed base is refused (exit 1) with the way out" \
  "[ $rc -eq 1 ] && grep -q 'config' $W/err && grep -q 'hint: --no-generate' $W/err"
"$Q" report "$W/run-a" --no-generate --out "$W/nogen.html" >/dev/null 2>"$W/err"; rc=$?
check "--no-generate writes the page without loading the base" "[ $rc -eq 0 ] && [ -s $W/nogen.html ]"
rm -rf "$W/model"; mv "$W/model-orig" "$W/model"

echo "report (2 prompts × 2 models, 4 tokens): $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s"
CH=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CH" ]; then echo "SKIP: chromium not installed (scripts/setup.sh installs it)"; [ $fail -eq 0 ] && exit 77; exit 1; fi
flags=(--headless --disable-gpu --no-first-run --no-default-browser-check --disable-extensions --hide-scrollbars
       --user-data-dir="$W/chrome" --no-sandbox)   # the sandbox needs a non-root user with user namespaces
t0=$(date +%s.%N)
# Bounded: a page that ran a script (alert()) would keep headless Chromium waiting forever.
timeout -k 5 30 "$CH" "${flags[@]}" --window-size=1200,2400 --screenshot="$W/report.png" "file://$W/first.html" \
  >/dev/null 2>"$W/chrome.err"
t1=$(date +%s.%N)
timeout -k 5 30 "$CH" "${flags[@]}" --dump-dom "file://$W/first.html" >"$W/dom.html" 2>>"$W/chrome.err"
t2=$(date +%s.%N)
echo "chromium: screenshot $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s, dump-dom $(awk "BEGIN{printf \"%.2f\", $t2 - $t1}") s"
if [ -s "$W/report.png" ] && [ -s "$W/dom.html" ]; then
  "$PY" "$SRC/tests/report/check_report.py" "$W/report.png" "$W/dom.html" "$W/run-a" "$W/cost.json" || fail=1
else
  echo "FAIL: chromium wrote no screenshot or no DOM within 30 s"; tail -5 "$W/chrome.err"; fail=1
fi
[ $fail -eq 0 ] && echo "PASS: quarry report"
exit $fail
