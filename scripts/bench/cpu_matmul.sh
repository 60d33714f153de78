#!/usr/bin/env bash
# GFLOP/s of the CPU backend's matrix products (kernels/cpu/linear.c) on this machine.
# Usage: scripts/bench/cpu_matmul.sh [threads]   (default: all cores)
# On a shared machine, QUARRY_BENCH_CPU_TIME=1 with 1 thread measures process CPU time instead
# of wall time: a per-core figure that other load does not distort.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${QUARRY_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_cpu_matmul >/dev/null
grep -m1 "model name" /proc/cpuinfo || true
echo "threads: ${1:-$(nproc)}"
"$build/tests/ops/bench_cpu_matmul" "${1:-0}"
