#!/usr/bin/env bash
# `quarry train --resume` follows the run, not the command line: flags that would change the
# trajectory are refused (each named), safe ones are recorded as a resume event; other data or
# another base is refused; nothing in the run is written before the checks; a damaged newest
# checkpoint falls back to an older one; a checkpoint directory is a target; a finished run is
# left alone; one process per run (a lock that kill -9 does not leave stale); contradictory
# flags, an unknown LoRA target, a bad device and a --max-seq-len past the model's context are
# refused before the data is tokenized; a full disk while saving suggests --keep-checkpoints.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
W=$(mktemp -d /tmp/quarry-resume-rules.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
cp "$SRC/examples/data/company_qa_train.jsonl" "$W/data.jsonl"
DATA="$W/data.jsonl"
PY=${QUARRY_PYTHON:-python3}

train() {  # train OUT [extra...]: 12 LoRA steps with dropout, a checkpoint every step
  local out=$1; shift
  "$Q" train --model "$W/model" --data "$DATA" --out "$out" --epochs 2 --batch-size 4 --micro-batch 2 --max-seq-len 96 \
    --lr 2e-3 --lora-r 4 --lora-dropout 0.1 --save-every 1 --keep-checkpoints 3 --device cpu --quiet "$@" >/dev/null 2>"$out.log"
}
# Every file and its content, but the lock's (it holds the PID of whoever took it last).
sums() { (cd "$1" && find . -type f ! -name .lock | LC_ALL=C sort | xargs sha256sum; find . | LC_ALL=C sort); }
same_final() {  # same_final NAME RUN: final weights and losses bitwise those of the reference
  cmp -s "$W/ref/final/adapter_model.safetensors" "$2/final/adapter_model.safetensors" || { echo "FAIL $1: final weights differ from the reference"; fail=1; }
  diff <(cut -d, -f1-4 "$W/ref/step_wise_training_metrics.csv") <(cut -d, -f1-4 "$2/step_wise_training_metrics.csv") >/dev/null ||
    { echo "FAIL $1: losses differ from the reference"; fail=1; }
}
json() { "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@" 2>/dev/null; }

train "$W/ref" || { echo "FAIL: reference run"; cat "$W/ref.log"; exit 1; }
QUARRY_TEST_FAULT=kill-after-step:5 train "$W/k"; rc=$?
[ $rc -eq 137 ] || { echo "FAIL: the killed run exited $rc"; exit 1; }
[ -d "$W/k/checkpoints/step-4" ] || { echo "FAIL: no checkpoint of step 4"; exit 1; }

# 1. Flags that change the trajectory: refused, each difference named, nothing written.
before=$(sums "$W/k")
"$Q" train --resume "$W/k" --seed 7 --lora-r 8 --lr 1e-3 --batch-size 8 --micro-batch 1 >/dev/null 2>"$W/refused.log"; rc=$?
[ $rc -eq 2 ] || { echo "FAIL changed flags: exit $rc, want 2"; cat "$W/refused.log"; fail=1; }
for want in "--seed: the run has 42, given 7" "--lora-r: the run has 4, given 8" "--lr: the run has 0.002" \
            "--batch-size: the run has 4, given 8" "--micro-batch: the run has 2, given 1"; do
  grep -qF -- "$want" "$W/refused.log" || { echo "FAIL changed flags: message lacks '$want'"; cat "$W/refused.log"; fail=1; }
done
[ "$(sums "$W/k")" = "$before" ] || { echo "FAIL changed flags: the run directory was written"; fail=1; }
# The same value as recorded is no change; --eval-every is safe.
"$Q" train --resume "$W/k" --seed 42 --lora-r 4 --eval-every 5 --max-steps 3 >/dev/null 2>"$W/same.log"; rc=$?
grep -q "already at step 4" "$W/same.log" || { echo "FAIL: --max-steps below the checkpoint's step (exit $rc)"; cat "$W/same.log"; fail=1; }
[ "$(sums "$W/k")" = "$before" ] || { echo "FAIL --max-steps 3: the run directory was written"; fail=1; }

# 2. Other data, or a modified base, is refused before anything is written.
cp -r "$W/k" "$W/k-data"; cp "$DATA" "$W/data.orig"
echo '{"prompt": "What changed?", "completion": "The data."}' >> "$DATA"
before=$(sums "$W/k-data")
"$Q" train --resume "$W/k-data" >/dev/null 2>"$W/data.log"; rc=$?
[ $rc -eq 1 ] && grep -q "not the training data this run was made from" "$W/data.log" ||
  { echo "FAIL changed data: exit $rc"; cat "$W/data.log"; fail=1; }
[ "$(sums "$W/k-data")" = "$before" ] || { echo "FAIL changed data: the run directory was written"; fail=1; }
cp "$W/data.orig" "$DATA"
"$Q" train --resume "$W/k-data" --data "$SRC/examples/data/company_qa_train.jsonl" >/dev/null 2>"$W/data2.log"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--data: the run has" "$W/data2.log" || { echo "FAIL another --data: exit $rc"; cat "$W/data2.log"; fail=1; }
cp -r "$W/model" "$W/model.orig"
printf '\x01' | dd of="$W/model/model.safetensors" bs=1 seek=5000 conv=notrunc 2>/dev/null
"$Q" train --resume "$W/k-data" >/dev/null 2>"$W/base.log"; rc=$?
[ $rc -eq 1 ] && grep -q "not the base weight file" "$W/base.log" || { echo "FAIL modified base: exit $rc"; cat "$W/base.log"; fail=1; }
[ "$(sums "$W/k-data")" = "$before" ] || { echo "FAIL modified base: the run directory was written"; fail=1; }
rm -rf "$W/model"; mv "$W/model.orig" "$W/model"

# 3. A damaged newest checkpoint: fall back (saying so) and still end bitwise as the reference.
cp -r "$W/k" "$W/dmg"
truncate -s 100 "$W/dmg/checkpoints/step-4/adam_v.safetensors"
echo '{"step": ' > "$W/dmg/checkpoints/step-3/trainer_state.json"
"$Q" train --resume "$W/dmg" >/dev/null 2>"$W/dmg.log" || { echo "FAIL damaged: resume failed"; cat "$W/dmg.log"; fail=1; }
grep -q "step-4 is damaged" "$W/dmg.log" && grep -q "step-3 is damaged" "$W/dmg.log" && grep -q "resuming from .*step-2" "$W/dmg.log" ||
  { echo "FAIL damaged: no fallback to step-2 said"; cat "$W/dmg.log"; fail=1; }
same_final "damaged newest checkpoint" "$W/dmg"

# 4. A checkpoint directory as the target: exactly that one; --max-steps extends, recorded.
cp -r "$W/k" "$W/ck"
"$Q" train --resume "$W/ck/checkpoints/step-3/" --max-steps 20 >/dev/null 2>"$W/ck.log" || { echo "FAIL checkpoint target: failed"; cat "$W/ck.log"; fail=1; }
grep -q "resuming from .*step-3 (step 3 of" "$W/ck.log" || { echo "FAIL checkpoint target: not from step-3"; cat "$W/ck.log"; fail=1; }
[ "$(json "$W/ck/run.json" "d['resumes'][0]['at_step'], d['resumes'][0]['changed']['max_steps']['to'], d['settings']['max_steps'], d['settings']['seed']")" = "(3, 20, 20, 42)" ] ||
  { echo "FAIL --max-steps: not recorded as a resume event"; json "$W/ck/run.json" "d.get('resumes'), d['settings']"; fail=1; }
same_final "checkpoint directory target" "$W/ck"

# 5. A finished run: says so, exit 0, touches nothing; asking for more steps is refused.
before=$(sums "$W/ref")
"$Q" train --resume "$W/ref" >/dev/null 2>"$W/fin.log"; rc=$?
[ $rc -eq 0 ] && grep -q "is finished" "$W/fin.log" || { echo "FAIL finished: exit $rc"; cat "$W/fin.log"; fail=1; }
"$Q" train --resume "$W/ref" --max-steps 50 >/dev/null 2>"$W/fin2.log"; rc=$?
[ $rc -eq 1 ] && grep -q "hint:" "$W/fin2.log" || { echo "FAIL finished --max-steps 50: exit $rc"; cat "$W/fin2.log"; fail=1; }
[ "$(sums "$W/ref")" = "$before" ] || { echo "FAIL finished: the run directory was written"; fail=1; }

# 6. One process per run: a second train is refused naming the holder; kill -9 leaves no stale lock.
# The held runs are far longer than the test (20000 epochs: minutes even on a fast machine; 200 finished
# before the second train looked, on an idle CI machine); they are killed once checked.
"$Q" train --model "$W/model" --data "$DATA" --out "$W/busy" --method full --epochs 20000 --batch-size 4 --max-seq-len 96 \
  --save-every 1 --device cpu --quiet >/dev/null 2>"$W/busy.log" & pid=$!
for _ in $(seq 1 150); do [ -d "$W/busy/checkpoints/step-1" ] && break; sleep 0.1; done
"$Q" train --resume "$W/busy" >/dev/null 2>"$W/second.log"; rc=$?
[ $rc -eq 1 ] && grep -q "in use by another .*process $pid" "$W/second.log" || { echo "FAIL lock: second resume exit $rc"; cat "$W/second.log"; fail=1; }
"$Q" train --model "$W/model" --data "$DATA" --out "$W/busy" --device cpu >/dev/null 2>"$W/second2.log"; rc=$?
[ $rc -eq 1 ] && grep -q "process $pid" "$W/second2.log" || { echo "FAIL lock: second new run exit $rc"; cat "$W/second2.log"; fail=1; }
kill -9 $pid; wait $pid 2>/dev/null
n=$(ls "$W/busy/checkpoints" | sed -n 's/^step-//p' | sort -n | tail -1)
"$Q" train --resume "$W/busy" --max-steps $((n + 1)) >/dev/null 2>"$W/after.log" || { echo "FAIL lock: resume after kill -9"; cat "$W/after.log"; fail=1; }

# --gpus N: the launcher holds the lock for its worker processes (which must not wait on it).
"$Q" train --model "$W/model" --data "$DATA" --out "$W/busy2" --epochs 20000 --batch-size 4 --max-seq-len 64 --save-every 1 \
  --device cpu --gpus 2 --quiet >/dev/null 2>"$W/busy2.log" & pid=$!
for _ in $(seq 1 300); do [ -d "$W/busy2/checkpoints/step-1" ] && break; sleep 0.1; done
"$Q" train --resume "$W/busy2" >/dev/null 2>"$W/second3.log"; rc=$?
[ $rc -eq 1 ] && grep -q "process $pid" "$W/second3.log" || { echo "FAIL lock --gpus 2: second resume exit $rc"; cat "$W/second3.log"; fail=1; }
kill -TERM $pid; wait $pid; rc=$?
[ $rc -eq 130 ] || { echo "FAIL lock --gpus 2: SIGTERM gave exit $rc, want 130"; tail -3 "$W/busy2.log"; fail=1; }
n=$(ls "$W/busy2/checkpoints" | sed -n 's/^step-//p' | sort -n | tail -1)
timeout 120 "$Q" train --resume "$W/busy2" --gpus 2 --max-steps $((n + 1)) >/dev/null 2>"$W/after2.log" ||
  { echo "FAIL lock --gpus 2: resume with worker processes"; tail -5 "$W/after2.log"; fail=1; }

# 7. Contradictions and cheap checks, before the data is tokenized.
bad() {  # bad NAME WANT_RC PATTERN flags...
  local name=$1 want=$2 pat=$3; shift 3
  rm -rf "$W/bad"
  "$Q" train --model "$W/model" --data "$DATA" --out "$W/bad" --device cpu "$@" >/dev/null 2>"$W/bad.log"; local rc=$?
  [ $rc -eq $want ] && grep -q -- "$pat" "$W/bad.log" || { echo "FAIL $name: exit $rc, want $want and '$pat'"; cat "$W/bad.log"; fail=1; }
  grep -q "training examples" "$W/bad.log" && { echo "FAIL $name: the data was tokenized first"; fail=1; }
}
bad "--method lora --full" 2 "contradict" --method lora --full
bad "--method full --lora-r" 2 "drop --lora-r" --method full --lora-r 8
bad "--full --rslora" 2 "drop --rslora" --full --rslora
bad "--micro-batch vs --grad-accum" 2 "contradict" --batch-size 8 --micro-batch 2 --grad-accum 2
bad "unknown --lora-targets" 1 "LoRA target" --lora-targets q,bogus
bad "bad --device" 1 "bad device" --device tpu:3
bad "--max-seq-len past the context" 1 "max_position_embeddings 512" --max-seq-len 100000
# The default sequence length is min(2048, the model's context).
"$Q" train --model "$W/model" --data "$DATA" --out "$W/dflt" --max-steps 1 --device cpu --quiet >/dev/null 2>"$W/dflt.log" ||
  { echo "FAIL default max-seq-len run"; cat "$W/dflt.log"; fail=1; }
[ "$(json "$W/dflt/run.json" "d['settings']['max_seq_len']")" = 512 ] || { echo "FAIL: default max_seq_len is not the context 512"; fail=1; }

# 8. A full disk while saving: what is intact, and --keep-checkpoints (needs a user namespace for a small tmpfs).
mkdir -p "$W/small"
if unshare -rm true 2>/dev/null; then
  unshare -rm bash -c "mount -t tmpfs -o size=25m tmpfs '$W/small' && '$Q' train --model '$W/model' --data '$DATA' --out '$W/small/run' \
    --method full --epochs 2 --batch-size 4 --max-seq-len 96 --save-every 1 --keep-checkpoints 3 --device cpu --quiet" >/dev/null 2>"$W/full.log"; rc=$?
  [ $rc -eq 1 ] && grep -q "disk is full.*step-2 is intact.*--keep-checkpoints" "$W/full.log" ||
    { echo "FAIL disk full: exit $rc"; cat "$W/full.log"; fail=1; }
else
  echo "SKIP disk full: no user namespace for a small tmpfs"
fi

[ $fail -eq 0 ] && echo "test_train_resume_rules: all checks passed"
exit $fail
