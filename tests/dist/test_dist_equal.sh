#!/usr/bin/env bash
# Data parallel gives the single-rank result: 1, 2 and 4 ranks (threads) × ZeRO 0/1/2 × LoRA and
# full fine-tuning, and 2 processes over TCP through the --gpus launcher, all equal the plain run
# within 1e-6 relative (losses, grad norms, validation losses, final weights); one rank through
# the communicator is bitwise equal.
set -u
. "$(dirname "$0")/common.sh"
for method in lora full; do
  train "$W/ref-$method" $method || { echo "FAIL: reference $method run"; cat "$W/ref-$method.log"; exit 1; }
  for ranks in 1 2 4; do
    for zero in 0 1 2; do
      out="$W/$method-r$ranks-z$zero"
      train "$out" $method --ranks $ranks --zero $zero || { echo "FAIL $method ranks $ranks zero $zero: exit $?"; tail -3 "$out.log"; fail=1; continue; }
      close "$method ranks $ranks zero $zero" "$out" "$W/ref-$method"
      if [ $ranks = 1 ] && ! cmp -s "$out/final/"*.safetensors "$W/ref-$method/final/"*.safetensors; then
        echo "FAIL $method ranks 1 zero $zero: not bitwise equal to the plain run"; fail=1
      fi
      [ $ranks -gt 1 ] && [ -n "$(ls "$out/checkpoints" 2>/dev/null)" ] || [ $ranks = 1 ] || { echo "FAIL $method ranks $ranks: no checkpoints"; fail=1; }
    done
  done
  grep -q '"world_size":[[:space:]]*4' "$W/$method-r4-z2/run.json" || { echo "FAIL: run.json lacks the world size"; fail=1; }
  # The plan is each rank's: ZeRO-1 holds a quarter of the AdamW state, ZeRO-2 also less gradient.
  "$PY" - "$W/$method-r4-z0/run.json" "$W/$method-r4-z1/run.json" "$W/$method-r4-z2/run.json" <<'PY' || fail=1
import json, sys
z0, z1, z2 = (json.load(open(p)) for p in sys.argv[1:])
whole, p1, p2 = z0["memory_plan_bytes"], z1["memory_plan_bytes"], z2["memory_plan_bytes"]
ok = (z1["data_parallel"]["unsharded_bytes"]["optimizer"] == whole["optimizer"]
      and abs(p1["optimizer"] * 4 - whole["optimizer"]) <= 4 * 64 * 8
      and p1["grads"] == whole["grads"] and p2["grads"] < whole["grads"] and p2["total"] < p1["total"] < whole["total"])
if not ok:
    print("FAIL: per-rank memory plans do not shrink with ZeRO:", whole, p1, p2)
sys.exit(0 if ok else 1)
PY
  # Uneven shares: 3 rows over 2 ranks (ZeRO-2: one rank has a micro-batch fewer) and over 4
  # (one rank has none): every rank must still take part in every reduction.
  train "$W/ref3-$method" $method --batch-size 3 || { echo "FAIL: reference $method batch 3"; fail=1; }
  for cfg in "2 2" "4 1" "4 2"; do
    set -- $cfg
    out="$W/$method-b3-r$1-z$2"
    train "$out" $method --batch-size 3 --ranks $1 --zero $2 || { echo "FAIL $method batch 3 ranks $1 zero $2: exit $?"; tail -3 "$out.log"; fail=1; continue; }
    close "$method batch 3 ranks $1 zero $2" "$out" "$W/ref3-$method"
  done
  # Worker processes over TCP (the launcher path GPUs use, with CPU workers).
  out="$W/$method-procs2"
  train "$out" $method --gpus 2 --zero 2 || { echo "FAIL $method --gpus 2 (cpu workers): exit $?"; tail -5 "$out.log"; fail=1; continue; }
  close "$method 2 processes zero 2" "$out" "$W/ref-$method"
done
[ $fail -eq 0 ] && echo "test_dist_equal: all checks passed"
exit $fail
