#!/usr/bin/env bash
# dev/cuda/emu/run_lab.sh LAB [lab args...] — builds the kernel lab program dev/cuda/LAB.cu on the
# CPU emulation (emu.h; QUARRY_EMU defined: checks only, no timing) with the emulated CUDA op files
# (version 1 is the production kernel through backend_cuda) and the CPU backend (the reference),
# then runs its check.  With no lab args it runs the lab's standard small cases (below); with args,
# one run with those.  Slow (every CUDA thread is an OS thread).  Output in build-emu-lab/ (build-emu-lab-asan/ with EMU_ASAN=1).
# EMU_ASAN=1 adds AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$PWD
lab=${1:?usage: dev/cuda/emu/run_lab.sh LAB [lab args...], e.g. attention_forward}
shift
[ -f "dev/cuda/$lab.cu" ] || { echo "run_lab.sh: no dev/cuda/$lab.cu" >&2; exit 2; }
out=$root/build-emu-lab
[ "${EMU_ASAN:-0}" = 1 ] && out=$root/build-emu-lab-asan  # objects differ: keep them apart
mkdir -p "$out"
. dev/cuda/emu/emu_build.sh
emu_build_ops "$out" "dev/cuda/$lab.cu" "$out/lab_$lab.o"
g++ "${san[@]}" -o "$out/$lab" "$out/lab_$lab.o" "${EMU_OBJS[@]}" -fopenmp -pthread -lm
if [ $# -gt 0 ]; then
    exec "$out/$lab" "$@"
fi
# The standard small cases of each lab: T ≤ 256, a few heads, GQA ratio 4, documents, both hd.
case $lab in
attention_forward)
    cases=("--T 256 --hd 64 --heads 8 --kv-heads 2 --docs 2"
           "--T 192 --hd 128 --heads 8 --kv-heads 2 --docs 2"
           "--T 77 --Tk 140 --hd 128 --heads 4 --kv-heads 1 --docs 3"
           "--T 100 --hd 64 --heads 3 --kv-heads 1 --docs 1 --batch 2") ;;
attention_backward)
    cases=("--T 256 --hd 64 --heads 8 --kv-heads 2 --docs 2"
           "--T 130 --hd 128 --heads 8 --kv-heads 2 --docs 2"
           "--T 77 --Tk 140 --hd 64 --heads 4 --kv-heads 1 --docs 3"
           "--T 100 --hd 128 --heads 3 --kv-heads 1 --docs 2 --batch 2"
           "--T 40 --Tk 200 --hd 64 --heads 4 --kv-heads 2 --docs 3") ;;
expert_gemm)
    cases=("--tokens 40 --experts 8 --topk 2 --C 64 --I 48"
           "--tokens 33 --experts 5 --topk 3 --C 40 --I 24") ;;
nf4_gemm)  # both tile configs (N ≤ 64, N > 64), edge tiles, > 256 absmax blocks, both absmax kinds, the scalar path,
           # the row slices (N > 256), v3 with forced splits (uneven: the last split shorter)
    cases=("--N 40 --IC 128 --OC 192 --plain"
           "--N 130 --IC 192 --OC 320"
           "--N 33 --IC 100 --OC 70"
           "--N 77 --IC 129 --OC 67 --plain"
           "--N 16,300 --IC 64 --OC 128"
           "--N 16 --IC 512 --OC 128 --splits 4"
           "--N 9 --IC 300 --OC 100 --splits 3 --plain"
           "--N 70 --IC 1024 --OC 128 --splits 3") ;;
*) cases=("") ;;
esac
# Each case twice: cp.async copies landing as late as allowed (at the wait), then as early
# (EMU_CP_EAGER=1, at issue): a missing wait fails the first, a missing barrier before a buffer
# is refilled the second.
rc=0
for c in "${cases[@]}"; do
    for eager in 0 1; do
        echo "== $lab $c$([ $eager = 1 ] && echo '   (EMU_CP_EAGER=1)')"
        # shellcheck disable=SC2086
        EMU_CP_EAGER=$eager "$out/$lab" 0 $c || rc=1
    done
done
echo "run_lab.sh $lab: $([ $rc = 0 ] && echo 'every case passes' || echo FAILED)"
exit $rc
