#!/usr/bin/env bash
# One tokenization per machine: a process that finds the cache file's lock held (another rank
# tokenizing) waits, then maps the file the holder wrote instead of tokenizing again; two worker
# processes (--gpus 2 on the CPU) over a fresh cache train and leave one cache file and no lock.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
PY=${QUARRY_PYTHON:-python3}; [ -x "$PY" ] || PY=python3
W=$(mktemp -d /tmp/quarry-tcranks.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
DATA="$SRC/examples/data/company_qa_train.jsonl"
args=(--model "$W/model" --data "$DATA" --device cpu --max-seq-len 64 --batch-size 4 --max-steps 1)

# The cache file this data makes, written once in A.
QUARRY_CACHE_DIR=$W/A "$Q" train "${args[@]}" --out "$W/a" 2>"$W/a.log" || { echo "FAIL: first run"; cat "$W/a.log"; exit 1; }
f=$(cd "$W/A" && ls *.bin)
check "one cache file" "[ \$(echo $f | wc -w) -eq 1 ]"

# B: the lock is held by "another rank"; the run waits, the holder puts the file in place and
# lets go; the run maps it.
mkdir -m 700 "$W/B"
"$PY" - "$W/B/$f.lock" "$W/A/$f" "$W/B/$f" "$W/b/run.json" <<'PYEOF' &
import fcntl, os, shutil, sys, time
lock, src, dst, run_json = sys.argv[1:]
fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
open(lock + ".held", "w").close()
time.sleep(2)
waited = not os.path.exists(run_json)   # the run has not started training
open(lock + (".waited" if waited else ".ran"), "w").close()
shutil.copyfile(src, dst + ".tmp"); os.chmod(dst + ".tmp", 0o600); os.rename(dst + ".tmp", dst)
os.unlink(lock)
fcntl.flock(fd, fcntl.LOCK_UN)
PYEOF
holder=$!
for _ in $(seq 1 50); do [ -e "$W/B/$f.lock.held" ] && break; sleep 0.1; done
QUARRY_CACHE_DIR=$W/B "$Q" train "${args[@]}" --out "$W/b" 2>"$W/b.log"; rc=$?
wait $holder
check "the run waited on the held lock" "[ -e $W/B/$f.lock.waited ]"
check "then trained from the file the holder wrote" "[ $rc -eq 0 ] && grep -q 'from the token cache' $W/b.log"
check "the same losses as tokenizing itself" "diff <(cut -d, -f1-6 $W/a/step_wise_training_metrics.csv) <(cut -d, -f1-6 $W/b/step_wise_training_metrics.csv) >/dev/null"

# Two worker processes over a fresh cache.
QUARRY_CACHE_DIR=$W/C "$Q" train "${args[@]}" --gpus 2 --quiet --out "$W/c" 2>"$W/c.log"; rc=$?
check "two processes train over a fresh cache" "[ $rc -eq 0 ]"
check "one cache file, the same as one process writes, no lock or temporary left" \
      "[ \"\$(ls $W/C)\" = $f ] && cmp -s $W/A/$f $W/C/$f"
[ $fail -eq 0 ] && echo "PASS: one tokenization per machine"
exit $fail
