#!/usr/bin/env bash
# dev/cuda/run_attention_lab.sh [build-dir] — the attention lab on a lent GPU, one call (~2-4 min):
# builds the two lab programs when the build dir lacks them, then checks and times every version
# (forward hd 128 and hd 64 at T 2048, hd 128 at T 8192 and with documents; backward hd 128), and
# runs compute-sanitizer racecheck/memcheck on the forward kernels at a small shape.  Logs under
# $OUT when set.  Exit status non-zero when a check failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
LOGS=${OUT:-build-gpu-logs}
mkdir -p "$LOGS"
if [ ! -x "$B/dev/cuda/attention_forward" ] || [ ! -x "$B/dev/cuda/attention_backward" ]; then
    B=build-lab
    cmake -S . -B "$B" -DQUARRY_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CUDA_FLAGS=-Xptxas=-v >"$LOGS/lab_build.log" 2>&1 &&
        cmake --build "$B" -j16 --target attention_forward attention_backward >>"$LOGS/lab_build.log" 2>&1 ||
        { tail -30 "$LOGS/lab_build.log"; exit 1; }
    grep -E "Compiling entry|spill|Used" "$LOGS/lab_build.log" | grep -A2 attention_forward_v | head -24
fi
# Libraries a carried build may miss (as scripts/gpu_check.sh): its gpu-libs, then the CUDA and
# pip locations of cuBLAS / NCCL.
[ -d "$B/gpu-libs" ] && export LD_LIBRARY_PATH="$PWD/$B/gpu-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for lib in $(ldd "$B/dev/cuda/attention_forward" 2>/dev/null | awk '/not found/{print $1}'); do
    found=$(find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu /opt /usr/local/lib /usr/lib/python3 -name "$lib" 2>/dev/null |
        head -1)
    [ -n "$found" ] && export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
status=0
run() {
    echo "== $*"
    timeout 120 "$@" 2>&1 | tee -a "$LOGS/attention_lab.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
F=$B/dev/cuda/attention_forward
run "$F" --T 2048 --hd 128 --heads 32 --kv-heads 8
run "$F" --T 2048 --hd 128 --heads 32 --kv-heads 8       # the same again: the spread between runs
run "$F" --T 2048 --hd 64 --heads 32 --kv-heads 8
run "$F" --T 8192 --hd 128 --heads 32 --kv-heads 8 --repeats 10
run "$F" --T 2048 --hd 128 --heads 32 --kv-heads 8 --batch 4 --docs 5 --repeats 10
run "$B/dev/cuda/attention_backward" --T 2048 --hd 128 --heads 32 --kv-heads 8
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -n "$san" ]; then
    for tool in racecheck memcheck; do
        run "$san" --tool "$tool" --error-exitcode 99 "$F" 0 --T 200 --Tk 260 --hd 128 --heads 8 --kv-heads 2 \
            --docs 3 --no-bench
    done
fi
echo "attention lab: $([ $status -eq 0 ] && echo 'all checks pass' || echo FAILED)"
exit $status
