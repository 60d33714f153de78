#!/usr/bin/env bash
# Issue 10's benchmarks 1 and 4 on a lent GPU, side by side in one run on the same card:
#   1. LoRA r=16 all-linear, Llama-3.1-8B shape (random weights from `quarry init`), seq 2048,
#      bf16: tokens/s and peak memory of quarry vs transformers+PEFT (sdpa, gradient
#      checkpointing on, the same micro-batch);
#   4. the longest sequence (2048 · 2^k) that trains one LoRA step at micro-batch 1: quarry with
#      --recompute full vs transformers+PEFT with gradient checkpointing.
# Prints a markdown summary last (also to $OUT/summary_8b.md). About 8 minutes on an H100 (the
# 16 GB of weights are written once and read by every run).
# Usage: [CONFIG=examples/configs/Llama-3.1-8B.json] [MB=1] [MAX_SEQ=65536] scripts/bench/gpu_8b_lora.sh BUILD_DIR
# On a machine without a GPU, DEVICE=cpu CONFIG=examples/tiny-model/config.json runs the quarry
# half on the CPU (a check of this script, not a benchmark; the transformers half needs CUDA).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
B=${1:?usage: scripts/bench/gpu_8b_lora.sh BUILD_DIR}
CONFIG=${CONFIG:-examples/configs/Llama-3.1-8B.json}
DEVICE=${DEVICE:-cuda}
MB=${MB:-1}
MAX_SEQ=${MAX_SEQ:-65536}
LOGS=${OUT:-$root/build-gpu-logs}
mkdir -p "$LOGS"
W=$(mktemp -d /tmp/quarry-8b.XXXXXX)
trap 'rm -rf "$W"' EXIT
. scripts/bench/gpu_common.sh
Q="$root/$B/quarry"
name=$(basename "$CONFIG" .json)
rows=()
row() { rows+=("$1"); echo "== $1"; }

$Q init --config "$CONFIG" --tokenizer examples/tiny-model --out "$W/model" --seed 1 --dtype bf16 >"$LOGS/init_8b.log" 2>&1 ||
    { tail -3 "$LOGS/init_8b.log"; exit 1; }
bench_data "$W/bench.jsonl" 256

# quarry_lora SEQ RECOMPUTE: one LoRA run; prints "tok_s mfu peak_gib" or nothing on failure.
quarry_lora() {
    local out=$W/q-$1-$2 mem tps
    mem=$(peak_mem timeout 300 $Q train --model "$W/model" --data "$W/bench.jsonl" --out "$out" --method lora --lora-r 16 \
          --max-seq-len "$1" --batch-size "$MB" --micro-batch "$MB" --recompute "$2" --max-steps 6 --lr 1e-5 \
          --device "$DEVICE" --quiet 2>"$LOGS/q8b_$1_$2.log")
    tps=$(median_metrics "$out/step_wise_training_metrics.csv") || return 1
    echo "$tps $mem"
}
torch_lora() {  # SEQ [STEPS WARMUP]: transformers+PEFT with gradient checkpointing; prints its RESULT line
    [ "$DEVICE" = cuda ] || return 1
    peak_mem timeout 300 python3 scripts/bench/gpu_train_torch.py "$W/model" lora --batch "$MB" --seq "$1" \
        --steps "${2:-4}" --warmup "${3:-2}" --grad-checkpoint 2>>"$LOGS/t8b_$1.log" | grep RESULT
}
quarry_fits() {  # SEQ: one LoRA step with full recomputation trains (exit 0)
    timeout 300 $Q train --model "$W/model" --data "$W/bench.jsonl" --out "$W/fit-$1" --method lora --lora-r 16 \
        --max-seq-len "$1" --batch-size "$MB" --micro-batch "$MB" --recompute full --max-steps 1 --lr 1e-5 \
        --device "$DEVICE" --quiet 2>"$LOGS/q8b_fit_$1.log"
}

# 1. seq 2048, the same micro-batch. 4. The longest sequence that trains, doubling from there.
longest_q="none (not even 2048)" longest_t="not run"
for rc in selective full; do
    if q=$(quarry_lora 2048 "$rc"); then
        row "$name LoRA r16 seq 2048 mb $MB, quarry --recompute $rc: tok/s MFU peak-GiB = $q"
        [ "$rc" = full ] && longest_q=2048
    else
        row "$name LoRA r16 seq 2048 mb $MB, quarry --recompute $rc: FAILED ($(tail -1 "$LOGS/q8b_2048_$rc.log"))"
    fi
done
if t=$(torch_lora 2048); then
    row "$name LoRA r16 seq 2048 mb $MB, transformers+PEFT (sdpa, checkpointing): ${t#RESULT }"
    longest_t=2048
else
    row "$name LoRA r16 seq 2048, transformers+PEFT: not run (no CUDA) or failed ($LOGS/t8b_2048.log)"
fi
for ((seq = 4096; seq <= MAX_SEQ; seq *= 2)); do
    [ "$longest_q" = $((seq / 2)) ] && quarry_fits "$seq" && longest_q=$seq
    [ "$longest_t" = $((seq / 2)) ] && torch_lora "$seq" 1 0 >/dev/null && longest_t=$seq
done
row "$name LoRA r16 longest sequence at mb $MB (2048·2^k up to $MAX_SEQ): quarry --recompute full $longest_q, transformers+PEFT with checkpointing $longest_t"

printf '\n## gpu_8b_lora — %s — %s\n' "$(gpu_name)" "$(date -u +%F)" | tee -a "$LOGS/summary_8b.md"
printf -- '- %s\n' "${rows[@]}" | tee -a "$LOGS/summary_8b.md"
