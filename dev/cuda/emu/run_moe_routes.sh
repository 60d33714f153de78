#!/usr/bin/env bash
# dev/cuda/emu/run_moe_routes.sh BUILD FIXTURE [--inject] — dev/cuda/emu/moe_routes.c on the
# emulated CUDA backend: batch 0 of tests/fixtures/FIXTURE through the fp32 CPU backend and the
# emulated bf16 CUDA path, each sparse layer's top-k compared row by row with its fp32 margin, the
# gradients against transformers'; --inject reruns the bf16 path with the fp32 top-k forced.
# BUILD: a CPU build (its libquarry.a).  ~1–3 minutes a fixture on 2 cores.  Output in build-emu-model/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
build=${1:?usage: dev/cuda/emu/run_moe_routes.sh BUILD FIXTURE [--inject]}
fixture=${2:?usage: dev/cuda/emu/run_moe_routes.sh BUILD FIXTURE [--inject]}
shift 2
out=$PWD/build-emu-model
. dev/cuda/emu/emu_build.sh
emu_build_ops "$out"
nice gcc -std=c11 -O1 -g "${san[@]}" -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root" -I"$root/tests" \
    -c dev/cuda/emu/moe_routes.c -o "$out/moe_routes.o"
emu_compile_fixture "$out"
# shellcheck disable=SC2046
g++ "${san[@]}" -o "$out/moe_routes_emu" "$out/moe_routes.o" "$out/fixture.o" "${EMU_OBJS[@]}" "$build/libquarry.a" \
    -fopenmp -pthread -lm $(pkg-config --libs libcjson oniguruma libcurl libcrypto) -lutf8proc
exec nice "$out/moe_routes_emu" "tests/fixtures/$fixture" "$@"
