#!/usr/bin/env bash
# Issue 10's benchmarks 1 and 4 and issue 21's one call, on a lent GPU, side by side in one run on
# the same card:
#   1. LoRA r=16 all-linear, Llama-3.1-8B shape, seq 2048, bf16: tokens/s and peak memory of
#      quarry vs transformers+PEFT (sdpa, gradient checkpointing on, the same micro-batch);
#   4. the longest sequence (2048 · 2^k) that trains one LoRA step at micro-batch 1: quarry with
#      --recompute full vs transformers+PEFT with gradient checkpointing;
#   5. Llama-3.2-1B full fine-tuning, seq 2048: quarry's MFU and tokens/s, and the ratio of its
#      tokens/s to transformers' (the same model and FLOPs per token, so also the MFU ratio);
#   6. QLoRA (issue 19): quarry --quantize nf4 (double-quantised NF4 base, bf16 compute) at the same
#      seq and micro-batch as 1, tok/s and peak memory beside quarry's bf16 LoRA and
#      transformers+PEFT (bf16) of 1, and transformers+PEFT+bitsandbytes QLoRA (nf4, double
#      quant, bf16 compute) where this python3 has bitsandbytes.
# The weights are random (`quarry init --seed 1` from examples/configs): the GPU machine reaches
# no network, so no checkpoint can be downloaded there; speed and memory do not depend on the
# values.  quarry runs with --attention auto (cuDNN when found: CUDNN_PATH, else python3's
# nvidia/cudnn) and its default forward kernel unless QUARRY_ATTN_KERNEL is set.  The
# transformers side runs under this machine's python3; where it has no torch, transformers or
# peft, or no CUDA, those rows say "not run" and quarry's rows are still measured.
# Prints a markdown summary last, also to $OUT/summary_8b.md, and appends it to docs/BENCHMARKS.md
# (this checkout's copy: commit it from $OUT).  About 9 minutes on an H100 (the 16 GB of 8B
# weights are written once and read by every run), and ~3 more for 6 (each quarry QLoRA run
# quantises the 7e9 decoder weights on the host at load): SKIP_1B=1 or SKIP_QLORA=1 for one
# 10-minute call.
# Usage: [CONFIG=examples/configs/Llama-3.1-8B.json] [CONFIG_1B=examples/configs/Llama-3.2-1B.json]
#        [MB=1] [MAX_SEQ=65536] [SKIP_1B=1] [SKIP_QLORA=1] scripts/bench/gpu_8b_lora.sh BUILD_DIR
#        scripts/bench/gpu_8b_lora.sh --tiny BUILD_DIR   (no GPU needed: the tiny model on the CPU,
#        seq 64, longest-sequence search to 256; a rehearsal of this script, not a benchmark;
#        nothing is appended to docs/BENCHMARKS.md)
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
TINY=0
if [ "${1:-}" = --tiny ]; then
    TINY=1
    shift
    CONFIG=${CONFIG:-examples/tiny-model/config.json} CONFIG_1B=${CONFIG_1B:-examples/tiny-model/config.json}
    DEVICE=${DEVICE:-cpu} SEQ=${SEQ:-64} MAX_SEQ=${MAX_SEQ:-256}
fi
B=${1:?usage: scripts/bench/gpu_8b_lora.sh [--tiny] BUILD_DIR}
CONFIG=${CONFIG:-examples/configs/Llama-3.1-8B.json}
CONFIG_1B=${CONFIG_1B:-examples/configs/Llama-3.2-1B.json}
DEVICE=${DEVICE:-cuda}
MB=${MB:-1}
SEQ=${SEQ:-2048}
MAX_SEQ=${MAX_SEQ:-65536}
if [ -z "${CUDNN_PATH:-}" ]; then
    d=$(python3 -c 'import os, nvidia.cudnn as c; print(os.path.dirname(c.__file__))' 2>/dev/null) &&
        [ -f "$d/lib/libcudnn.so.9" ] && export CUDNN_PATH="$d"
fi
# The transformers side: python3 with torch (CUDA), transformers and peft, or a reason it is absent.
torch_why=$(python3 -c 'import torch, transformers, peft
assert torch.cuda.is_available(), "torch %s sees no CUDA device" % torch.__version__
print("")' 2>&1 | tail -1)
[ "$DEVICE" = cuda ] || torch_why="--tiny/DEVICE=$DEVICE (the transformers side needs CUDA)"
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

# quarry_lora SEQ RECOMPUTE [MODEL METHOD QUANT]: one run (LoRA by default; QUANT nf4: QLoRA); prints
# "tok_s mfu peak_gib" or nothing on failure.  Log: q8b_SEQ_RECOMPUTE_METHOD[_QUANT].log.
quarry_lora() {
    local out=$W/q-$1-$2-${4:-lora}${5:+-$5} mem tps lora=() quant=()
    [ "${4:-lora}" = lora ] && lora=(--lora-r 16)
    [ -n "${5:-}" ] && quant=(--quantize "$5")
    mem=$(peak_mem timeout 300 $Q train --model "${3:-$W/model}" --data "$W/bench.jsonl" --out "$out" \
          --method "${4:-lora}" "${lora[@]}" "${quant[@]}" --max-seq-len "$1" --batch-size "$MB" --micro-batch "$MB" \
          --recompute "$2" --max-steps 6 --lr 1e-5 --device "$DEVICE" --quiet 2>"$LOGS/q8b_$1_$2_${4:-lora}${5:+_$5}.log")
    tps=$(median_metrics "$out/step_wise_training_metrics.csv") || return 1
    echo "$tps $mem"
}
torch_lora() {  # SEQ [STEPS WARMUP QUANT]: transformers+PEFT with gradient checkpointing; prints its RESULT line
    [ -z "$torch_why" ] || return 1
    local quant=()
    [ -n "${4:-}" ] && quant=(--quantize "$4")
    peak_mem timeout 300 python3 scripts/bench/gpu_train_torch.py "$W/model" lora --batch "$MB" --seq "$1" \
        --steps "${2:-4}" --warmup "${3:-2}" --grad-checkpoint "${quant[@]}" 2>>"$LOGS/t8b_$1${4:+_$4}.log" | grep RESULT
}
quarry_fits() {  # SEQ: one LoRA step with full recomputation trains (exit 0)
    timeout 300 $Q train --model "$W/model" --data "$W/bench.jsonl" --out "$W/fit-$1" --method lora --lora-r 16 \
        --max-seq-len "$1" --batch-size "$MB" --micro-batch "$MB" --recompute full --max-steps 1 --lr 1e-5 \
        --device "$DEVICE" --quiet 2>"$LOGS/q8b_fit_$1.log"
}

# 1. seq 2048, the same micro-batch. 4. The longest sequence that trains, doubling from there.
longest_q="none (not even $SEQ)" longest_t="not run"
q_tps=""
for rc in selective full; do
    if q=$(quarry_lora "$SEQ" "$rc"); then
        row "$name LoRA r16 seq $SEQ mb $MB, quarry --recompute $rc: tok/s MFU peak-GiB = $q"
        [ "$rc" = full ] && longest_q=$SEQ
        [ -z "$q_tps" ] && q_tps=${q%% *}
    else
        row "$name LoRA r16 seq $SEQ mb $MB, quarry --recompute $rc: FAILED ($(tail -1 "$LOGS/q8b_${SEQ}_${rc}_lora.log"))"
    fi
done
if t=$(torch_lora "$SEQ"); then
    t_tps=$(echo "$t" | sed -n 's/.*tok_s=\([0-9.]*\).*/\1/p')
    ratio=$(awk -v a="${q_tps:-0}" -v b="${t_tps:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }')
    row "$name LoRA r16 seq $SEQ mb $MB, transformers+PEFT (sdpa, checkpointing): ${t#RESULT }; quarry (selective) / transformers tok/s = $ratio"
    longest_t=$SEQ
else
    row "$name LoRA r16 seq $SEQ, transformers+PEFT: not run (${torch_why:-failed: $LOGS/t8b_$SEQ.log})"
fi

# 6. QLoRA at the seq and micro-batch of 1: quarry --quantize nf4 (both recomputation modes), set
# against quarry's bf16 LoRA (selective) and transformers+PEFT bf16 above; then transformers+PEFT on a
# bitsandbytes NF4 base where bitsandbytes is installed.  Before 4's search, which may run long.
if [ "${SKIP_QLORA:-0}" != 1 ]; then
    for rc in selective full; do
        if q=$(quarry_lora "$SEQ" "$rc" "$W/model" lora nf4); then
            ratio=$(awk -v a="${q%% *}" -v b="${q_tps:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }')
            row "$name QLoRA (--quantize nf4) r16 seq $SEQ mb $MB, quarry --recompute $rc: tok/s MFU peak-GiB = $q; tok/s against quarry's bf16 LoRA (selective) = $ratio"
        else
            row "$name QLoRA (--quantize nf4) r16 seq $SEQ mb $MB, quarry --recompute $rc: FAILED ($(tail -1 "$LOGS/q8b_${SEQ}_${rc}_lora_nf4.log"))"
        fi
    done
    bnb_why=$torch_why
    [ -z "$bnb_why" ] && ! python3 -c 'import bitsandbytes' 2>/dev/null && bnb_why="no bitsandbytes in this python3"
    if [ -z "$bnb_why" ] && t=$(torch_lora "$SEQ" 4 2 nf4); then
        row "$name QLoRA r16 seq $SEQ mb $MB, transformers+PEFT+bitsandbytes (nf4, double quant, bf16 compute, checkpointing): ${t#RESULT }"
    else
        row "$name QLoRA r16 seq $SEQ, transformers+PEFT+bitsandbytes: not run (${bnb_why:-failed: $LOGS/t8b_${SEQ}_nf4.log})"
    fi
fi

for ((seq = SEQ * 2; seq <= MAX_SEQ; seq *= 2)); do
    [ "$longest_q" = $((seq / 2)) ] && quarry_fits "$seq" && longest_q=$seq
    [ "$longest_t" = $((seq / 2)) ] && torch_lora "$seq" 1 0 >/dev/null && longest_t=$seq
done
row "$name LoRA r16 longest sequence at mb $MB ($SEQ·2^k up to $MAX_SEQ): quarry --recompute full $longest_q, transformers+PEFT with checkpointing $longest_t"

# 5. Llama-3.2-1B full fine-tuning at seq 2048: MFU, and tokens/s against transformers' (fp32
# masters + autocast bf16, fused AdamW, no checkpointing: gpu_train_torch.py full).
if [ "${SKIP_1B:-0}" != 1 ]; then
    name1=$(basename "$CONFIG_1B" .json)
    rm -rf "$W/model"   # the 8B weights: disk for the 1B ones
    if $Q init --config "$CONFIG_1B" --tokenizer examples/tiny-model --out "$W/m1b" --seed 1 --dtype bf16 \
            >"$LOGS/init_1b.log" 2>&1; then
        if q=$(quarry_lora "$SEQ" selective "$W/m1b" full); then
            qt=${q%% *} mfu=$(echo "$q" | awk '{print $2}')
            row "$name1 full fine-tune seq $SEQ mb $MB, quarry: tok/s MFU peak-GiB = $q"
        else
            qt="" mfu=""
            row "$name1 full fine-tune seq $SEQ mb $MB, quarry: FAILED ($(tail -1 "$LOGS/q8b_${SEQ}_selective_full.log"))"
        fi
        if [ -z "$torch_why" ] && t=$(timeout 300 python3 scripts/bench/gpu_train_torch.py "$W/m1b" full --batch "$MB" \
                --seq "$SEQ" --steps 6 --warmup 2 2>"$LOGS/t1b_full.log" | grep RESULT); then
            t_tps=$(echo "$t" | sed -n 's/.*tok_s=\([0-9.]*\).*/\1/p')
            ratio=$(awk -v a="${qt:-0}" -v b="${t_tps:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }')
            tmfu=$(awk -v m="${mfu:-0}" -v r="$ratio" 'BEGIN { if (r + 0 > 0) printf "%.3f", m / r; else print "-" }')
            row "$name1 full fine-tune seq $SEQ mb $MB, transformers: ${t#RESULT }; MFU ≈ $tmfu (quarry's MFU × its tok/s ratio); quarry / transformers = $ratio"
        else
            row "$name1 full fine-tune seq $SEQ, transformers: not run (${torch_why:-failed: $LOGS/t1b_full.log})"
        fi
    else
        row "$name1 full fine-tune: quarry init failed ($(tail -1 "$LOGS/init_1b.log"))"
    fi
fi

# What quarry's attention was (run.json of the first run: cuDNN or quarry's kernel, and which).
attn=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["attention"])' \
       "$W/q-$SEQ-selective-lora/run.json" 2>/dev/null || echo "?")
{
    printf '\n## gpu_8b_lora — %s — %s — %s\n\n' "$(gpu_name)" "$(date -u +%F)" \
        "$([ $TINY = 1 ] && echo "--tiny rehearsal on $DEVICE, not a benchmark" || echo "random weights (quarry init --seed 1)"); quarry attention: $attn"
    printf -- '- %s\n' "${rows[@]}"
} | tee "$LOGS/summary_8b.md"
[ $TINY = 1 ] || cat "$LOGS/summary_8b.md" >>docs/BENCHMARKS.md
