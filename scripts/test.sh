#!/usr/bin/env bash
# The test command (README, .ci/run): setup, a Release build (CUDA compiled when nvcc exists)
# with ctest, then an AddressSanitizer+UBSan build (clang, CPU backend, fuzz harnesses) with
# ctest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
jobs=$(nproc)

echo "== Release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQUARRY_CUDA=AUTO >/dev/null
cmake --build build -j"$jobs"
build/quarry --version
echo "== ctest (Release)"
ctest --test-dir build --output-on-failure -j"$jobs" --timeout 900

echo "== ASan+UBSan build (clang, CPU backend, fuzzers)"
CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Asan -DQUARRY_CUDA=OFF -DQUARRY_FUZZ=ON \
  -DQUARRY_TOKENIZER_CACHE="$PWD/build/tokenizer-cache" >/dev/null
cmake --build build-asan -j"$jobs"
echo "== ctest (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:intercept_tls_get_addr=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" --timeout 900
echo "test.sh: all passed in $(( $(date +%s) - start )) s"
