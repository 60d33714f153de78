#!/usr/bin/env bash
# dev/cuda/emu/run.sh [CPU_OPS_DIR] [test args...] — builds tests/ops_cuda/test_ops_cuda.c against
# the CUDA op files run on the CPU emulation (emu.h) and the CPU backend's ops, and runs it.
# CPU_OPS_DIR: the kernels/cpu folder to take the reference ops from (default: this checkout's).
# Slow (every CUDA thread is an OS thread): minutes.  Output in build-emu/.  EMU_ASAN=1 adds
# AddressSanitizer + UBSan: out-of-bounds global-memory accesses and misaligned vector loads.
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$PWD
cpu_dir=${1:-$root/kernels/cpu}
shift || true
out=$root/build-emu
mkdir -p "$out"
san=()
[ "${EMU_ASAN:-0}" = 1 ] && san=(-fsanitize=address,undefined -fno-omit-frame-pointer)
inc=(-I/usr/local/cuda/include -I"$root" -I"$root/kernels/cuda" -I"$root/dev/cuda/emu")
objs=()
for f in kernels/cuda/*.cu; do
    n=$(basename "$f" .cu)
    [ "$n" = backend_cuda ] && continue
    python3 dev/cuda/emu/make_emu.py "$f" "$out/$n.cpp"
    g++ -std=c++20 -O1 -g -w "${san[@]}" "${inc[@]}" -c "$out/$n.cpp" -o "$out/$n.o" &
    objs+=("$out/$n.o")
    [ "$(jobs -r | wc -l)" -ge 2 ] && wait -n
done
g++ -std=c++20 -O1 -g -w "${san[@]}" "${inc[@]}" -c dev/cuda/emu/emu_runtime.cpp -o "$out/emu_runtime.o"
wait
for f in "$cpu_dir"/*.c kernels/backend.c; do
    n=cpu_$(basename "$f" .c)
    gcc -std=c11 -O2 -fopenmp -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root" -I"$(dirname "$cpu_dir")/.." \
        -c "$f" -o "$out/$n.o"
    objs+=("$out/$n.o")
done
gcc -std=c11 -O1 -g "${san[@]}" -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root" -I"$root/tests" \
    -c tests/ops_cuda/test_ops_cuda.c -o "$out/test_ops_cuda.o"
g++ "${san[@]}" -o "$out/test_ops_cuda_emu" "$out/test_ops_cuda.o" "$out/emu_runtime.o" "${objs[@]}" -fopenmp -pthread -lm
"$out/test_ops_cuda_emu" "$@"
