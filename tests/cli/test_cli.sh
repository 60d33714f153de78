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
for c in info validate tokenize render init plan train eval generate export preflight upload import cost; do
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

for c in info validate tokenize render init plan train eval generate export preflight upload import cost; do
  "$Q" $c --help >/dev/null 2>&1; rc=$?
  check "$c --help exits 0" "[ $rc -eq 0 ]"
done
# `quarry help CMD` is `quarry CMD --help`; an unknown CMD is a usage error with the list.
out=$("$Q" help train 2>&1); rc=$?
check "help train exits 0" "[ $rc -eq 0 ]"
check "help train shows train's usage" "grep -q 'usage: quarry train' <<<\"\$out\" && grep -q -- '--max-steps' <<<\"\$out\""
out=$("$Q" help 2>&1); check "help alone lists the commands" "grep -q '^  train ' <<<\"\$out\""
err=$("$Q" help frobnicate 2>&1 >/dev/null); rc=$?
check "help of an unknown command exits 2" "[ $rc -eq 2 ]"
check "help of an unknown command lists the commands" "grep -q \"unknown command 'frobnicate'\" <<<\"\$err\" && grep -q '^  train ' <<<\"\$err\""

# Integers: too large is called too large; garbage and negatives keep their own messages.
err=$("$Q" train --epochs 99999999999 2>&1); rc=$?
check "--epochs 99999999999 exits 2" "[ $rc -eq 2 ]"
check "--epochs 99999999999 is called too large" "grep -q 'error: --epochs 99999999999 is too large (at most 2147483647)' <<<\"\$err\""
err=$("$Q" train --epochs 2147483648 2>&1)
check "--epochs 2147483648 is called too large" "grep -q 'is too large' <<<\"\$err\""
err=$("$Q" train --epochs -99999999999999999999999 2>&1)
check "a huge negative is called too small" "grep -q 'is too small' <<<\"\$err\""
err=$("$Q" train --epochs 3x 2>&1); rc=$?
check "--epochs 3x still needs an integer" "[ $rc -eq 2 ] && grep -q \"needs an integer, got '3x'\" <<<\"\$err\""

# upload: a malformed --endpoint-url is a usage error (2), found before credentials or files.
err=$(AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1 \
      "$Q" upload /nonexistent s3://my-bucket/p/ --endpoint-url ftp://x --quiet 2>&1); rc=$?
check "upload --endpoint-url ftp://x exits 2 (was $rc)" "[ $rc -eq 2 ] && grep -q 'usage: quarry upload' <<<\"\$err\""
err=$("$Q" upload /nonexistent s3://my-bucket/p/ --jobs 0 2>&1); rc=$?
check "upload --jobs 0 exits 2" "[ $rc -eq 2 ]"

# init --out a/b/c creates the missing parents, as train --out does.
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
SRC=${QUARRY_SOURCE_DIR:?}
err=$("$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" \
      --out "$T/a/b/c" --seed 3 --dtype fp32 2>&1); rc=$?
check "init --out a/b/c with no a/b exits 0: $err" "[ $rc -eq 0 ] && [ -f '$T/a/b/c/config.json' ]"
: >"$T/file"
err=$("$Q" init --config "$SRC/examples/tiny-model/config.json" --out "$T/file/sub" 2>&1); rc=$?
check "init --out FILE/sub exits 1 naming the path" "[ $rc -eq 1 ] && grep -q '$T/file' <<<\"\$err\""

# generate names what ended the answer: --max-new-tokens or the context length.
M="$T/m"
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$M" --seed 3 \
    --dtype fp32 2>/dev/null || { echo "FAIL: init $M"; fail=1; }
err=$("$Q" generate --model "$M" --raw --prompt "hello there" --max-new-tokens 3 --device cpu 2>&1 >/dev/null)
check "generate says it stopped at --max-new-tokens: $err" "grep -q 'stopped at --max-new-tokens 3' <<<\"\$err\""
err=$("$Q" generate --model "$M" --raw --prompt "hello there" --max-new-tokens 100 --context 8 --device cpu 2>&1 >/dev/null)
check "generate says it stopped at the context length: $err" "grep -q 'stopped at the context length (8 positions' <<<\"\$err\""

# train names a UTF-16 data file as such (validate's cases are in tests/data/test_validate.sh).
printf '{"prompt":"a","completion":"b"}\n' | "$PY" -c 'import sys; sys.stdout.buffer.write(sys.stdin.read().encode("utf-16"))' >"$T/w.jsonl"
err=$("$Q" train --model "$M" --data "$T/w.jsonl" --out "$T/run-w" --max-steps 1 --device cpu 2>&1); rc=$?
check "train of a UTF-16 file exits 1 naming it: $err" "[ $rc -eq 1 ] && grep -q 'w.jsonl: the file looks like UTF-16 (LE); save it as UTF-8' <<<\"\$err\""

# One `error:` per message: a located diagnostic from below (config.json, a data line) is not
# wrapped in a second "quarry CMD: error:".
mkdir -p "$T/badcfg" && cp "$M"/* "$T/badcfg/" &&
  sed -i 's/"hidden_size": *[0-9]*/"hidden_size": "64"/' "$T/badcfg/config.json"
D=$SRC/examples/data/company_qa_train.jsonl
"$PY" -c 'import json; print(json.dumps({"prompt": "x " * 600, "completion": "y"}))' >"$T/long.jsonl"
for cmd in "train --model $T/badcfg --data $D --out $T/run-bad --max-steps 1 --device cpu" \
           "generate --model $T/badcfg --prompt hi --device cpu" \
           "eval --model $T/badcfg --data $D --device cpu" \
           "train --model $M --data $T/long.jsonl --out $T/run-long --max-seq-len 64 --on-long error --max-steps 1 --device cpu"; do
  err=$("$Q" $cmd 2>&1 >/dev/null); rc=$?
  check "quarry ${cmd%% *} fails (exit $rc)" "[ $rc -ne 0 ] && grep -q 'error:' <<<\"\$err\""
  check "one error: per line: quarry $cmd: $err" "! grep -q 'error:.*error:' <<<\"\$err\""
done
err=$("$Q" train --model "$T/badcfg" --data "$D" --out "$T/run-bad" --max-steps 1 --device cpu 2>&1 >/dev/null)
check "a config error is in FILE: error: form: $err" "grep -q '^$T/badcfg/config.json: error: \"hidden_size\" must be an integer' <<<\"\$err\""

# quarry plan: the memory of a fine-tune from a published config alone. The parameter counts are
# the published models' (Llama-3.1-8B: 8,030,261,248; Qwen3-8B: 8,190,735,360 from its config).
for cp in Llama-3.1-8B:8030261248 Qwen3-8B:8190735360; do
  c=${cp%%:*}; n=${cp#*:}
  j=$("$Q" plan "$SRC/examples/configs/$c.json" --json 2>&1); rc=$?
  check "plan $c exits 0" "[ $rc -eq 0 ]"
  check "plan $c counts the published parameters and fits an H100 80GB and an H200" "$PY -c '
import json, sys; d = json.loads(sys.argv[1]); p = d[\"plan\"]
assert p[\"params_total\"] == $n, p
assert p[\"total\"] == p[\"weights\"] + p[\"masters\"] + p[\"grads\"] + p[\"optimizer\"] + p[\"activations\"], p
f = d[\"fits\"]; assert len(f) == 2 and 1 <= f[0][\"largest_micro_batch\"] < f[1][\"largest_micro_batch\"], f
' \"\$j\""
done
out=$("$Q" plan "$SRC/examples/configs/Llama-3.1-8B.json" --method full --recompute full --gpu-memory 24GiB 2>&1); rc=$?
check "plan: a card too small says so and what would change: $out" "[ $rc -eq 0 ] && grep -q '24.00 GiB: does not fit' <<<\"\$out\""
err=$("$Q" plan "$SRC/examples/configs/Llama-3.1-8B.json" --max-seq-len 1000000 2>&1 >/dev/null); rc=$?
check "plan: a sequence beyond the context is refused" "[ $rc -eq 1 ] && grep -q 'context' <<<\"\$err\""

[ $fail -eq 0 ] && echo "test_cli: all checks passed"
exit $fail
