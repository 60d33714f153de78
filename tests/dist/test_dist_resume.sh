#!/usr/bin/env bash
# Checkpoints are unsharded: a run saved at 2 ranks (ZeRO-2; killed in step 4, saved at 3) resumes at 1
# rank and at 4 ranks (ZeRO-1) and ends within 1e-6 of the uninterrupted single-rank run; resumed
# at 2 ranks it ends bitwise equal to the uninterrupted 2-rank run (LoRA and full).
set -u
. "$(dirname "$0")/common.sh"
for method in lora full; do
  train "$W/ref-$method" $method --save-every 1 || { echo "FAIL: reference $method run"; cat "$W/ref-$method.log"; exit 1; }
  train "$W/ref2-$method" $method --save-every 1 --ranks 2 --zero 2 || { echo "FAIL: 2-rank $method run"; exit 1; }
  QUARRY_TEST_FAULT=kill-after-step:4 train "$W/saved-$method" $method --save-every 1 --ranks 2 --zero 2; rc=$?
  [ $rc -eq 137 ] || { echo "FAIL $method: the killed 2-rank run exited $rc, want 137"; fail=1; continue; }
  [ -d "$W/saved-$method/checkpoints/step-3" ] || { echo "FAIL $method: no checkpoint of step 3"; fail=1; continue; }
  for to in "1" "4 --zero 1" "2 --zero 2"; do
    set -- $to
    out="$W/resumed-$method-$1"
    cp -r "$W/saved-$method" "$out"
    # Every setting from run.json; the world size (and ZeRO stage) may change.
    "$Q" train --resume "$out" --quiet --ranks "$@" >/dev/null 2>"$out.log" || { echo "FAIL $method resume at $1 ranks"; tail -3 "$out.log"; fail=1; continue; }
    grep -q "^4," "$out/step_wise_training_metrics.csv" || { echo "FAIL $method resume at $1: step 4 missing"; fail=1; }
    close "$method saved at 2 ranks, resumed at $1" "$out" "$W/ref-$method"
    if [ $1 = 2 ]; then
      cmp -s "$out/final/"*.safetensors "$W/ref2-$method/final/"*.safetensors ||
        { echo "FAIL $method: resumed at 2 ranks is not bitwise equal to the uninterrupted 2-rank run"; fail=1; }
      diff <(cut -d, -f1-6 "$out/step_wise_training_metrics.csv") <(cut -d, -f1-6 "$W/ref2-$method/step_wise_training_metrics.csv") >/dev/null ||
        { echo "FAIL $method: resumed 2-rank metrics differ"; fail=1; }
    fi
  done
done
[ $fail -eq 0 ] && echo "test_dist_resume: all checks passed"
exit $fail
