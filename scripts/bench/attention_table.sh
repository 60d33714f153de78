#!/usr/bin/env bash
# The attention table of issue 21, for one call on a lent GPU (~3 minutes; scripts/gpu_check.sh
# runs it): fwd/bwd TFLOP/s at hd 64/128, T 2048/8192, causal, GQA 4 (32 heads, 8 KV heads, 16K
# tokens a call), side by side on this card:
#   quarry-vN  quarry's forward kernel N (QUARRY_ATTN_KERNEL=v1|v3|v4, kernels/cuda/attention_fa2.h;
#              the backward is v1 in every quarry row), each first checked against the CPU op
#              (dev/cuda/attention_cudnn_check), and test_ops_cuda's attention cases (documents,
#              GQA, KV caches, windows, sinks) run under v3 and v4;
#   cudnn      cuDNN's fused SDPA through quarry (--attention cudnn, kernels/cuda/attention_cudnn.cu),
#              found as quarry finds it (CUDNN_PATH, a Python env's nvidia/cudnn, the system), plus
#              python3's nvidia-cudnn here;
#   torch-*    torch.nn.functional.scaled_dot_product_attention with its flash and cuDNN backends
#              (scripts/bench/attention_torch.py) under this machine's python3; without torch or
#              CUDA there, a line says so and the quarry rows stand alone.
# The table goes to $LOGS/BENCHMARKS-attention.md and is appended to docs/BENCHMARKS.md (this
# checkout's copy: commit it from $OUT).  Exit status: non-zero when a check failed.
# Usage: scripts/bench/attention_table.sh BUILD_DIR     (a build configured with -DQUARRY_CUDA=ON)
#        scripts/bench/attention_table.sh --tiny        (no GPU: the torch script's CPU rehearsal and
#        the quarry side's checks on the CUDA emulator, dev/cuda/emu/run.sh; no timings, nothing
#        appended)
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
LOGS=${LOGS:-${OUT:-$root/build-gpu-logs}}
mkdir -p "$LOGS"
status=0
say() { echo "== $1"; }
if [ "${1:-}" = --tiny ]; then
    for kv in v3 v4; do
        if QUARRY_ATTN_KERNEL=$kv dev/cuda/emu/run.sh kernels/cpu attention >"$LOGS/emu_attention_$kv.log" 2>&1; then
            say "emulated test_ops_cuda attention, forward $kv: PASS ($(tail -1 "$LOGS/emu_attention_$kv.log"))"
        else say "emulated test_ops_cuda attention, forward $kv: FAIL ($LOGS/emu_attention_$kv.log)"; status=1; fi
    done
    python3 scripts/bench/attention_torch.py --tiny --repeats 3 2>&1 | tee "$LOGS/attention_torch.log"
    exit $status
fi
BUILD=${1:?usage: scripts/bench/attention_table.sh BUILD_DIR | --tiny}
if [ -z "${CUDNN_PATH:-}" ]; then
    d=$(python3 -c 'import os, nvidia.cudnn as c; print(os.path.dirname(c.__file__))' 2>/dev/null) &&
        [ -f "$d/lib/libcudnn.so.9" ] && export CUDNN_PATH="$d"
fi
if [ ! -x "$BUILD/dev/cuda/attention_cudnn_check" ] || [ ! -x "$BUILD/tests/ops_cuda/test_ops_cuda" ]; then
    echo "attention_table: $BUILD has no dev/cuda/attention_cudnn_check or tests/ops_cuda/test_ops_cuda (configure with -DQUARRY_CUDA=ON)" >&2
    exit 1
fi
rows=$LOGS/attention_rows.txt
: >"$rows"
for kv in v3 v4; do
    QUARRY_ATTN_KERNEL=$kv timeout 120 "$BUILD/tests/ops_cuda/test_ops_cuda" attention >"$LOGS/test_ops_cuda_attn_$kv.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then say "test_ops_cuda attention, forward $kv: PASS"
    else say "test_ops_cuda attention, forward $kv: FAIL (exit $rc, test_ops_cuda_attn_$kv.log)"; status=1; fi
done
for kv in v1 v3 v4; do
    QUARRY_ATTN_KERNEL=$kv timeout 150 "$BUILD/dev/cuda/attention_cudnn_check" >"$LOGS/attention_cudnn_$kv.log" 2>&1
    rc=$?
    impl=$(head -1 "$LOGS/attention_cudnn_$kv.log" | sed 's/^attention_cudnn_check: //')
    case $rc in
        0) say "attention check, forward $kv ($impl): pass";;
        *) say "attention check, forward $kv: FAIL (exit $rc, attention_cudnn_$kv.log)"; status=1;;
    esac
    # cuDNN's rows once (beside v1), quarry's for each version.
    if [ "$kv" = v1 ]; then grep -E '^\| (quarry|cudnn)' "$LOGS/attention_cudnn_$kv.log"
    else grep -E '^\| quarry' "$LOGS/attention_cudnn_$kv.log"; fi >>"$rows"
done
timeout 240 python3 scripts/bench/attention_torch.py >"$LOGS/attention_torch.log" 2>"$LOGS/attention_torch.err"
grep -E '^\|' "$LOGS/attention_torch.log" >>"$rows"
torch_line=$(grep -E '^SKIP|^attention_torch' "$LOGS/attention_torch.log" | head -1)
[ -n "$torch_line" ] || torch_line="torch sdpa: python3 failed ($(tail -1 "$LOGS/attention_torch.err"))"
say "$torch_line"
{
    echo
    echo "### Attention fwd/bwd TFLOP/s, causal, GQA 4 — $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) — $(date -u +%F)"
    echo
    echo "quarry-vN: quarry's forward kernel N (QUARRY_ATTN_KERNEL), backward v1; cudnn: cuDNN through quarry"
    echo "(--attention cudnn); torch-*: scaled_dot_product_attention's backends on the same card. $torch_line"
    echo
    echo "| impl | hd | T | B×H/KVH | fwd ms | fwd TFLOP/s | bwd ms | bwd TFLOP/s |"
    echo "|---|---|---|---|---|---|---|---|"
    sort -t'|' -k3,3n -k4,4n -s "$rows"
} | tee "$LOGS/BENCHMARKS-attention.md"
cat "$LOGS/BENCHMARKS-attention.md" >>docs/BENCHMARKS.md
echo "attention hd128 T2048 TFLOP/s fwd/bwd: $(awk -F'|' '$3+0 == 128 && $4+0 == 2048 {gsub(/ /, "", $2); gsub(/ /, "", $7); gsub(/ /, "", $9); printf "%s %s/%s ", $2, $7, $9}' "$rows")"
exit $status
