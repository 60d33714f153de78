#!/usr/bin/env bash
# The model-level half of the GPU check (scripts/gpu_check.sh runs the op level first): the model
# fidelity test on CUDA, a tiny run through train/eval/generate on CUDA beside the CPU backend,
# stories260K greedy text on CUDA vs CPU, the export round trip through transformers/PEFT, and the
# first timings: LoRA and full fine-tuning of Llama-3.2-1B-shaped random weights at seq 2048,
# quarry beside transformers(+PEFT) on the same card. Prints a table last; logs under $OUT.
# Usage: [MBS="1 4"] [SKIP_FIDELITY=1] scripts/gpu_train_check.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
B=${1:-build}
LOGS=${OUT:-$root/build-gpu-logs}
mkdir -p "$LOGS"
W=$(mktemp -d /tmp/quarry-gpu.XXXXXX)
. scripts/bench/gpu_common.sh
for d in lib gpu-libs; do [ -d "$B/$d" ] && export LD_LIBRARY_PATH="$root/$B/$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
nccl=$(find / -name 'libnccl.so.2' -not -path '*/proc/*' 2>/dev/null | head -1)
[ -n "$nccl" ] && export LD_LIBRARY_PATH="$(dirname "$nccl"):$LD_LIBRARY_PATH"
Q="$root/$B/quarry"
PY=python3
rows=()
status=0
row() { rows+=("$1"); echo "== $1"; }
export QUARRY_SOURCE_DIR=$root QUARRY_BIN=$Q OMP_NUM_THREADS=8

if [ -z "${SKIP_FIDELITY:-}" ]; then  # gpu_check.sh runs it through ctest already
  echo "== model fidelity on CUDA (tiny transformers fixtures: loss, gradients, 10 LoRA/full steps)"
  timeout 300 "$B/tests/model/test_model_fidelity" cuda >"$LOGS/fidelity_cuda.log" 2>&1; rc=$?
  tail -15 "$LOGS/fidelity_cuda.log"
  [ $rc -eq 0 ] && row "model fidelity (CUDA vs transformers fixtures): PASS" || { row "model fidelity (CUDA): FAIL (exit $rc)"; status=1; }
fi

echo "== tiny run on CUDA and CPU"
$Q init --config examples/tiny-model/config.json --tokenizer examples/tiny-model --out "$W/tiny" --seed 7 --dtype fp32 >/dev/null 2>&1
for dev in cuda cpu; do
  timeout 120 $Q train --model "$W/tiny" --data examples/data/company_qa_train.jsonl --validation examples/data/company_qa_validation.jsonl \
    --out "$W/run-$dev" --device $dev --epochs 3 --batch-size 4 --max-seq-len 128 --lr 3e-3 --seed 1 --quiet >"$LOGS/tiny_$dev.log" 2>&1
  echo "$dev rc=$?"; tail -2 "$LOGS/tiny_$dev.log"
done
vc=$(tail -1 "$W/run-cuda/validation_metrics.csv" | cut -d, -f3); vp=$(tail -1 "$W/run-cpu/validation_metrics.csv" | cut -d, -f3)
ec=$($Q eval --model "$W/run-cuda" --data examples/data/company_qa_validation.jsonl --device cuda 2>/dev/null | grep -oE 'loss +[0-9.]+' | head -1)
if $PY -c "import sys; a,b=float('$vc'),float('$vp'); sys.exit(0 if abs(a-b)/b < 2e-2 else 1)" 2>/dev/null; then
  row "tiny LoRA run: validation loss CUDA $vc vs CPU $vp (within 2e-2): PASS; eval on CUDA: $ec"
else row "tiny LoRA run: validation loss CUDA '$vc' vs CPU '$vp': FAIL"; status=1; fi
gc=$(timeout 60 $Q generate --model "$W/run-cuda" --prompt "What is Heron?" --temperature 0 --max-new-tokens 16 --device cuda 2>"$LOGS/gen.log")
echo "generate on CUDA: $gc"

if [ -d "$B/stories260K-hf" ]; then
  sc=$(timeout 60 $Q generate --model "$B/stories260K-hf" --raw --prompt "" --temperature 0 --max-new-tokens 200 --device cuda 2>>"$LOGS/gen.log")
  sp=$(timeout 60 $Q generate --model "$B/stories260K-hf" --raw --prompt "" --temperature 0 --max-new-tokens 200 --device cpu 2>>"$LOGS/gen.log")
  [ -n "$sc" ] && [ "$sc" = "$sp" ] && row "stories260K greedy on CUDA equals CPU (${#sc} chars): PASS" || { row "stories260K greedy CUDA vs CPU: FAIL"; echo "cuda: $sc"; echo "cpu: $sp"; status=1; }
fi

echo "== export round trip through transformers and PEFT"
timeout 200 $PY scripts/check_export_transformers.py "$W/run-cpu" --quarry "$Q" --logits-tool "$root/$B/tests/export/export_logits" >"$LOGS/export_tf.log" 2>&1
rc=$?; tail -6 "$LOGS/export_tf.log"
[ $rc -eq 0 ] && row "export → transformers/PEFT logits: PASS" || { row "export → transformers/PEFT: FAIL (exit $rc)"; status=1; }

echo "== timings: Llama-3.2-1B shape, seq 2048, bf16, random weights"
$Q init --config examples/configs/Llama-3.2-1B.json --tokenizer examples/tiny-model --out "$W/l1b" --seed 1 --dtype bf16 >"$LOGS/init_1b.log" 2>&1 || tail -3 "$LOGS/init_1b.log"
bench_data "$W/bench.jsonl" 96
for method in lora full; do
  for mb in ${MBS:-1 4}; do
    out="$W/q-$method-$mb"
    mem=$(peak_mem timeout 240 $Q train --model "$W/l1b" --data "$W/bench.jsonl" --out "$out" --method $method --lora-r 16 \
          --max-seq-len 2048 --batch-size $mb --micro-batch $mb --max-steps 8 --lr 1e-5 --device cuda --quiet 2>"$LOGS/q_${method}_$mb.log")
    tps=$(median_metrics "$out/step_wise_training_metrics.csv")
    t=$(peak_mem timeout 240 $PY scripts/bench/gpu_train_torch.py "$W/l1b" $method --batch $mb --seq 2048 --steps 6 2>"$LOGS/t_${method}_$mb.log" | tee -a "$LOGS/torch.log" | grep RESULT)
    tg=$(peak_mem timeout 240 $PY scripts/bench/gpu_train_torch.py "$W/l1b" $method --batch $mb --seq 2048 --steps 6 --grad-checkpoint 2>>"$LOGS/t_${method}_$mb.log" | grep RESULT)
    row "1B $method mb=$mb: quarry tok/s,MFU = ${tps:-FAILED} peak ${mem} GiB | torch: ${t#RESULT } | torch+ckpt: ${tg#RESULT }"
    [ -z "$tps" ] && { tail -5 "$LOGS/q_${method}_$mb.log"; status=1; }
  done
done
printf '\n## gpu_train_check — %s — %s\n' "$(gpu_name)" "$(date -u +%F)" | tee -a "$LOGS/summary_train.md"
printf -- '- %s\n' "${rows[@]}" | tee -a "$LOGS/summary_train.md"
rm -rf "$W"
exit $status
