#!/usr/bin/env bash
# A run killed with SIGKILL at any point and resumed ends with weights and losses bitwise equal
# to the uninterrupted run (CPU backend): after a step before its checkpoint, in the middle of
# writing a checkpoint, and at a random moment; LoRA and full fine-tuning. The resume is
# `--resume RUN` alone: every setting comes from run.json. Also `kill -9` from outside, with the
# training data in the token store the killed run wrote into the cache: the resume maps that file
# (or, with the cache off, tokenizes into a private one) and still ends bitwise equal.
set -u
Q=${QUARRY_BIN:?}; SRC=${QUARRY_SOURCE_DIR:?}
W=$(mktemp -d /tmp/quarry-resume.XXXXXX); trap 'rm -rf "$W"' EXIT
fail=0
"$Q" init --config "$SRC/examples/tiny-model/config.json" --tokenizer "$SRC/examples/tiny-model" --out "$W/model" --seed 3 --dtype fp32 >/dev/null 2>&1 || { echo "FAIL: init"; exit 1; }
DATA="$SRC/examples/data/company_qa_train.jsonl"

flags() {  # flags METHOD: the run's flags into F
  F=(--model "$W/model" --data "$DATA" --method "$1" --epochs 2 --batch-size 4 --micro-batch 2 --max-seq-len 96 --lr 2e-3)
  [ "$1" = lora ] && F+=(--lora-r 4 --lora-dropout 0.1)
  F+=(--validation-split 0.2 --save-every 1 --keep-checkpoints 3 --eval-every 3 --device cpu --quiet)
}
train() {  # train OUT METHOD [extra...]
  local out=$1; flags "$2"; shift 2
  "$Q" train "${F[@]}" --out "$out" "$@" >/dev/null 2>"$out.log"
}

# The metrics that must be equal: step, epoch, loss, perplexity, lr, grad norm (not the speed).
metrics() { cut -d, -f1-6 "$1/step_wise_training_metrics.csv"; cat "$1/validation_metrics.csv"; }

same() {  # same NAME REF RUN
  local final=model.safetensors; [ -f "$2/final/adapter_model.safetensors" ] && final=adapter_model.safetensors
  if ! cmp -s "$2/final/$final" "$3/final/$final"; then echo "FAIL $1: final weights differ"; fail=1; fi
  if ! diff <(metrics "$2") <(metrics "$3") >/dev/null; then
    echo "FAIL $1: metrics differ"; diff <(metrics "$2") <(metrics "$3") | head -5; fail=1
  fi
}

for method in lora full; do
  train "$W/ref-$method" $method || { echo "FAIL: reference $method run"; cat "$W/ref-$method.log"; exit 1; }
  steps=$(($(wc -l < "$W/ref-$method/step_wise_training_metrics.csv") - 1))
  [ "$steps" -ge 6 ] || { echo "FAIL: only $steps steps"; exit 1; }

  for fault in kill-after-step:2 kill-in-checkpoint:3 kill-after-step:$((steps - 1)); do
    out="$W/$method-${fault//:/-}"
    QUARRY_TEST_FAULT=$fault train "$out" $method; rc=$?
    [ $rc -eq 137 ] || { echo "FAIL $method $fault: exit $rc, want 137 (SIGKILL)"; fail=1; continue; }
    [ -d "$out/final" ] && { echo "FAIL $method $fault: a killed run must not have final/"; fail=1; }
    if [ "${fault%%:*}" = kill-in-checkpoint ]; then
      n=${fault#*:}  # killed mid-write: the half-written checkpoint is left as a temp dir, never as step-N
      [ -d "$out/checkpoints/.step-$n.tmp" ] && [ ! -d "$out/checkpoints/step-$n" ] ||
        { echo "FAIL $method $fault: want checkpoints/.step-$n.tmp and no step-$n"; ls -a "$out/checkpoints"; fail=1; }
    fi
    # The run alone says what to train: no flag but --resume.
    "$Q" train --resume "$out" >/dev/null 2>"$out.resume.log" || { echo "FAIL $method $fault: resume failed"; cat "$out.resume.log"; fail=1; continue; }
    same "$method $fault" "$W/ref-$method" "$out"
  done
done

# kill -9 from outside, at a moment the run does not choose (once its step-2 checkpoint is there),
# on a run that tokenized its data into a fresh token cache; resumed from that cache, and with
# the cache off (the store tokenized again, privately).
train "$W/k9-ref" lora --epochs 20 || { echo "FAIL: reference k9 run"; cat "$W/k9-ref.log"; exit 1; }
flags lora
for cache in on off; do
  out="$W/k9-$cache"
  QUARRY_CACHE_DIR="$W/k9cache-$cache" "$Q" train "${F[@]}" --epochs 20 --out "$out" >/dev/null 2>"$out.log" & pid=$!
  for _ in $(seq 1 400); do [ -d "$out/checkpoints/step-2" ] && break; sleep 0.02; done
  kill -9 $pid; wait $pid; rc=$?
  [ $rc -eq 137 ] && [ ! -d "$out/final" ] || { echo "FAIL kill -9 ($cache): exit $rc, want 137 and no final/"; fail=1; continue; }
  ls "$W/k9cache-$cache"/*.bin >/dev/null 2>&1 || { echo "FAIL kill -9 ($cache): the killed run wrote no token store"; fail=1; }
  if [ $cache = on ]; then QUARRY_CACHE_DIR="$W/k9cache-$cache" "$Q" train --resume "$out" >/dev/null 2>"$out.resume.log"
  else QUARRY_TOKEN_CACHE=off "$Q" train --resume "$out" >/dev/null 2>"$out.resume.log"; fi ||
    { echo "FAIL kill -9 ($cache): resume failed"; cat "$out.resume.log"; fail=1; continue; }
  same "kill -9 (cache $cache)" "$W/k9-ref" "$out"
done

# SIGTERM and SIGINT: a checkpoint, exit 130, and the command the message gives (`--resume RUN`
# alone) continues the run.
for sig in TERM INT; do
  out="$W/sig$sig"
  "$Q" train --model "$W/model" --data "$DATA" --out "$out" --method full --epochs 40 --batch-size 4 --max-seq-len 96 \
    --save-every 1 --device cpu --quiet >/dev/null 2>"$out.log" & pid=$!
  for _ in $(seq 1 100); do [ -d "$out/checkpoints/step-2" ] && break; sleep 0.1; done
  kill -$sig $pid; wait $pid; rc=$?
  [ $rc -eq 130 ] || { echo "FAIL sig$sig: exit $rc, want 130"; fail=1; }
  grep -q "Continue with --resume $out" "$out.log" || { echo "FAIL sig$sig: no hint to resume"; fail=1; }
  at=$(ls "$out/checkpoints" | sed -n 's/^step-//p' | sort -n | tail -1)
  "$Q" train --resume "$out" --max-steps $((at + 2)) >/dev/null 2>"$out.resume.log" ||
    { echo "FAIL sig$sig: the suggested --resume failed"; cat "$out.resume.log"; fail=1; }
  grep -q "resuming from .*step-$at (step $at of $((at + 2)))" "$out.resume.log" ||
    { echo "FAIL sig$sig: resume did not continue the run"; cat "$out.resume.log"; fail=1; }
  [ -d "$out/final" ] || { echo "FAIL sig$sig: no final/ after the resume"; fail=1; }
done

[ $fail -eq 0 ] && echo "test_train_resume: all checks passed"
exit $fail
