#!/usr/bin/env bash
# Training data stays private on this machine: `train --scan` warns about (or refuses) secrets in
# the data before anything is written, and the token cache (the data as token ids) is owner-only
# (0700/0600, an existing open one is closed) and can be listed and purged with `quarry cache`.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
W=$(mktemp -d /tmp/quarry-privacy.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
umask 022   # what most users have: without care, files come out 0644 and directories 0755
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
export QUARRY_CACHE_DIR="$W/cache/tokens"
base=(--model "$W/model" --max-seq-len 128 --device cpu --quiet --max-steps 1)
cp "$SRC/examples/data/company_qa_train.jsonl" "$W/clean.jsonl"
# A fake key and an address in line 3, as a support transcript might carry them.
sed '3s/Strandkaien 14/AKIAIOSFODNN7EXAMPLE, write to ingrid@larkspur.example/' "$W/clean.jsonl" > "$W/secret.jsonl"

# --scan error refuses, naming the line and kinds, with the fix; nothing is written.
"$Q" train "${base[@]}" --data "$W/secret.jsonl" --out "$W/r1" --scan error 2>"$W/err"; rc=$?
check "--scan error refuses data with a key (exit 1)" "[ $rc -eq 1 ] && grep -q 'error:.*aws-access-key-id 1, e-mail 1' $W/err"
check "the refusal names FILE:LINE and masks the value" "grep -q 'secret.jsonl:3: aws-access-key-id' $W/err && ! grep -q AKIAIOSFODNN7EXAMPLE $W/err"
check "the refusal gives the fix" "grep -q 'hint:.*quarry validate .*--redact' $W/err"
check "nothing written on refusal" "[ ! -e $W/r1 ]"
# A validation file is scanned too.
"$Q" train "${base[@]}" --data "$W/clean.jsonl" --validation "$W/secret.jsonl" --out "$W/r1v" --scan error 2>"$W/err"; rc=$?
check "--scan error scans --validation" "[ $rc -eq 1 ] && grep -q 'secret.jsonl:3' $W/err"
"$Q" train "${base[@]}" --data "$W/clean.jsonl" --out "$W/rb" --scan sometimes 2>"$W/err"; rc=$?
check "a bad --scan is a usage error" "[ $rc -eq 2 ] && grep -q -- '--scan takes off, warn or error' $W/err"

# warn (the default) trains, after counts and masked places.
"$Q" train "${base[@]}" --data "$W/secret.jsonl" --out "$W/r2" 2>"$W/err"; rc=$?
check "warn (default) trains" "[ $rc -eq 0 ] && [ -d $W/r2/final ]"
check "warn prints counts per kind and the place" "grep -q 'warning:.*2 possible secrets.*aws-access-key-id 1, e-mail 1' $W/err && grep -q 'secret.jsonl:3: e-mail' $W/err"
check "no value printed" "! grep -q -e AKIAIOSFODNN7EXAMPLE -e ingrid@larkspur $W/err"
"$Q" train "${base[@]}" --data "$W/secret.jsonl" --out "$W/r3" --scan off 2>"$W/err"; rc=$?
check "--scan off is silent" "[ $rc -eq 0 ] && ! grep -q 'possible secret' $W/err"
"$Q" train "${base[@]}" --data "$W/clean.jsonl" --out "$W/r4" --scan error 2>"$W/err"; rc=$?
check "clean data passes --scan error" "[ $rc -eq 0 ]"

# The token cache: owner-only.
mode() { stat -c %a "$1"; }
check "cache dir is 0700" "[ \"\$(mode $QUARRY_CACHE_DIR)\" = 700 ]"
n=$(ls "$QUARRY_CACHE_DIR"/*.bin 2>/dev/null | wc -l)
check "the runs left cache entries" "[ $n -ge 2 ]"
for f in "$QUARRY_CACHE_DIR"/*.bin; do
    check "cache file $(basename "$f") is 0600" "[ \"\$(mode $f)\" = 600 ]"
done
# An existing cache left open (an older quarry, a loose umask) is closed by the next run.
chmod 755 "$QUARRY_CACHE_DIR"; chmod 644 "$QUARRY_CACHE_DIR"/*.bin
echo keep > "$QUARRY_CACHE_DIR/notes.txt"
"$Q" train "${base[@]}" --data "$W/clean.jsonl" --out "$W/r5" 2>"$W/err"; rc=$?
check "an open cache dir is made 0700, with a note" "[ $rc -eq 0 ] && [ \"\$(mode $QUARRY_CACHE_DIR)\" = 700 ] && grep -q 'made it 0700' $W/err"
check "its entries are made 0600" "[ \"\$(stat -c %a $QUARRY_CACHE_DIR/*.bin | sort -u)\" = 600 ]"

# quarry cache info / clear.
"$Q" cache info >"$W/out" 2>&1; rc=$?
check "cache info names the location and the entries" "[ $rc -eq 0 ] && grep -q \"location: $QUARRY_CACHE_DIR\" $W/out && grep -q \"entries:  $n\" $W/out"
"$Q" cache clear >"$W/out" 2>&1; rc=$?
check "cache clear removes the entries" "[ $rc -eq 0 ] && grep -q \"removed $n entries\" $W/out && [ -z \"\$(ls $QUARRY_CACHE_DIR/*.bin 2>/dev/null)\" ]"
check "cache clear leaves other files alone" "[ -f $QUARRY_CACHE_DIR/notes.txt ]"
"$Q" cache info >"$W/out" 2>&1
check "cache info after clear: 0 entries" "grep -q 'entries:  0' $W/out"
"$Q" cache wipe >/dev/null 2>"$W/err"; rc=$?
check "an unknown cache action is a usage error" "[ $rc -eq 2 ] && grep -q 'use info or clear' $W/err"
[ $fail -eq 0 ] && echo "PASS: train --scan, token cache modes, quarry cache"
exit $fail
