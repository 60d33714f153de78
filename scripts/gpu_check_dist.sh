#!/usr/bin/env bash
# scripts/gpu_check_dist.sh — the data-parallel part of the GPU check (called by gpu_check.sh,
# ~1 minute): a short LoRA and a short full fine-tune of the tiny model through the NCCL path
# (`--gpus 1 --zero 1`: launcher, worker process, NCCL communicator at world size 1, ZeRO
# sharding code) must equal the plain run within 1e-6 relative (losses, grad norms, final
# weights), and the run must say it used NCCL.  On one lent GPU this is all NCCL can show.
# Usage: scripts/gpu_check_dist.sh [build-dir] [log-dir]     Exit status: non-zero on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
Q=${1:-build}/quarry
LOGS=${2:-${OUT:-build-gpu-logs}}
mkdir -p "$LOGS"
D=$(mktemp -d /tmp/quarry-gpu-dist.XXXXXX); trap 'rm -rf "$D"' EXIT
"$Q" init --config examples/tiny-model/config.json --tokenizer examples/tiny-model --out "$D/model" --seed 3 \
  >"$LOGS/dist-init.log" 2>&1 || { echo "gpu_check_dist: init failed (see $LOGS/dist-init.log)"; exit 1; }
status=0
for method in lora full; do
  args=(--model "$D/model" --data examples/data/company_qa_train.jsonl --method $method --epochs 1 --batch-size 4
        --micro-batch 2 --max-seq-len 96 --max-steps 6 --lr 1e-3 --lora-r 8 --validation-split 0.2 --eval-every 3
        --save-every 3 --device cuda --quiet)
  t0=$(date +%s.%N)
  "$Q" train "${args[@]}" --out "$D/plain-$method" >/dev/null 2>"$LOGS/dist-plain-$method.log" ||
    { echo "FAIL dist $method: plain run (see $LOGS/dist-plain-$method.log)"; status=1; continue; }
  t1=$(date +%s.%N)
  "$Q" train "${args[@]}" --out "$D/nccl-$method" --gpus 1 --zero 1 >/dev/null 2>"$LOGS/dist-nccl-$method.log" ||
    { echo "FAIL dist $method: --gpus 1 --zero 1 run (see $LOGS/dist-nccl-$method.log)"; tail -3 "$LOGS/dist-nccl-$method.log"; status=1; continue; }
  t2=$(date +%s.%N)
  grep -q '"communicator":[[:space:]]*"nccl"' "$D/nccl-$method/run.json" ||
    { echo "FAIL dist $method: run.json does not name the nccl communicator"; status=1; }
  if python3 tests/dist/compare.py "$D/nccl-$method" "$D/plain-$method" 1e-6 >"$LOGS/dist-$method.cmp" 2>&1; then
    same=$(cmp -s "$D/nccl-$method/final/"*.safetensors "$D/plain-$method/final/"*.safetensors && echo "bitwise equal" || echo "within 1e-6")
    printf 'ok   dist %-4s --gpus 1 --zero 1 = plain (%s); %.1f s vs %.1f s plain (tiny model, startup included)\n' \
      $method "$same" "$(echo "$t2 - $t1" | bc)" "$(echo "$t1 - $t0" | bc)"
  else
    echo "FAIL dist $method: --gpus 1 --zero 1 differs from the plain run:"; cat "$LOGS/dist-$method.cmp"; status=1
  fi
done
exit $status
