#!/usr/bin/env bash
# The data path's memory does not grow with the corpus: training from the token cache maps the
# tokens (data/token_store.h) instead of loading them, so a run over an 8 MB continued-
# pre-training file (about 3 M tokens: 60 MB of examples and packed rows on the copying path)
# peaks within 1/20 of the file's size (+ a fixed 4 MB) of a run over its first 20 records.
# Peak RSS is the child's ru_maxrss (VmHWM). The tokenizing first run is measured and printed.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-datamem.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
"$PY" "$SRC/tests/train/gen_cpt_corpus.py" 8 1 "$W/big.jsonl" || { echo "FAIL: corpus"; exit 1; }
head -n 20 "$W/big.jsonl" > "$W/small.jsonl"
export QUARRY_CACHE_DIR=$W/cache
# Under AddressSanitizer freed blocks wait in a quarantine (256 MB by default) and count in the
# RSS: without it the sanitized build measures the program's own peak.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0"

# Peak RSS in KiB of one `quarry train --max-steps 1` over $1 (exit status must be 0).
peak() {
    rm -rf "$W/out"
    "$PY" - "$Q" train --model "$W/model" --data "$1" --device cpu --max-seq-len 256 --max-steps 1 --batch-size 1 \
        --quiet --out "$W/out" <<'PYEOF'
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stderr=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if rc == 0 else -1)
PYEOF
}
first_small=$(peak "$W/small.jsonl"); small=$(peak "$W/small.jsonl")
first_big=$(peak "$W/big.jsonl"); big=$(peak "$W/big.jsonl")
size_kb=$(( $(stat -c %s "$W/big.jsonl") / 1024 ))
limit=$(( size_kb / 20 + 4096 ))
echo "peak RSS (KiB): 20 records $small, the 8 MB file $big from the cache (first run: $first_small / $first_big)"
check "every run trained" "[ $first_small -gt 0 ] && [ $small -gt 0 ] && [ $first_big -gt 0 ] && [ $big -gt 0 ]"
check "the cached run's growth $(( big - small )) KiB is within 1/20 of the file + 4 MiB ($limit KiB)" \
      "[ $(( big - small )) -le $limit ]"
[ $fail -eq 0 ] && echo "PASS: the data path's peak memory does not grow with the corpus"
exit $fail
