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
. dev/cuda/emu/emu_build.sh
EMU_CPU_DIR=$cpu_dir emu_build_ops "$out"
gcc -std=c11 -O1 -g "${san[@]}" -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root" -I"$root/tests" \
    -c tests/ops_cuda/test_ops_cuda.c -o "$out/test_ops_cuda.o"
g++ "${san[@]}" -o "$out/test_ops_cuda_emu" "$out/test_ops_cuda.o" "${EMU_OBJS[@]}" -fopenmp -pthread -lm
"$out/test_ops_cuda_emu" "$@"
