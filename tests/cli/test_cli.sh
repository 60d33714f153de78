#!/usr/bin/env bash
# The command surface: help, version, info (text and JSON), exit codes for misuse.
set -u
Q=${QUARRY_BIN:?}
PY=${QUARRY_PYTHON:-python3}
[ -x "$PY" ] || PY=python3
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }

out=$("$Q" --help); rc=$?
check "--help exits 0" "[ $rc -eq 0 ]"
for c in info validate tokenize render init train eval generate export preflight upload import cost; do
  check "--help lists $c" "grep -q '^  $c ' <<<\"\$out\""
done
"$Q" >/dev/null 2>&1; check "no command exits 2" "[ $? -eq 2 ]"
err=$("$Q" frobnicate 2>&1 >/dev/null); rc=$?
check "unknown command exits 2" "[ $rc -eq 2 ]"
check "unknown command says so" "grep -q \"quarry: error: unknown command 'frobnicate'\" <<<\"\$err\""

v=$("$Q" --version); check "--version exits 0" "[ $? -eq 0 ]"
check "--version names commit and CUDA" "grep -Eq '^quarry [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-f]+|unknown' <<<\"\$v\" && grep -q 'CUDA' <<<\"\$v\""

"$Q" info >/dev/null; check "info exits 0 without a GPU" "[ $? -eq 0 ]"
err=$("$Q" info --bogus 2>&1 >/dev/null); rc=$?
check "info --bogus exits 2" "[ $rc -eq 2 ]"
check "info --bogus prints usage" "grep -q 'usage: quarry info' <<<\"\$err\""
json=$("$Q" info --json)
check "info --json parses with the fields" "$PY -c 'import json,sys; d=json.loads(sys.argv[1]); assert {\"version\",\"commit\",\"backends\",\"cuda_compiled\",\"nccl_compiled\",\"cuda_runtime\",\"cuda_driver\",\"nccl\",\"gpus\",\"message\"} <= set(d); assert \"cpu\" in d[\"backends\"]; assert d[\"gpus\"] or d[\"message\"]' \"\$json\""

for c in info validate tokenize render init train eval generate export preflight upload import cost; do
  "$Q" $c --help >/dev/null 2>&1; rc=$?
  check "$c --help exits 0" "[ $rc -eq 0 ]"
done
[ $fail -eq 0 ] && echo "test_cli: all checks passed"
exit $fail
