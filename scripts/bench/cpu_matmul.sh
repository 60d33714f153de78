#!/usr/bin/env bash
# GFLOP/s of the CPU backend's matrix products (kernels/cpu/linear.c) on this machine.
# Usage: scripts/bench/cpu_matmul.sh [threads]   (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${QUARRY_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target bench_cpu_matmul >/dev/null
grep -m1 "model name" /proc/cpuinfo || true
echo "threads: ${1:-$(nproc)}"
"$build/tests/ops/bench_cpu_matmul" "${1:-0}"
