#!/usr/bin/env bash
# dev/cuda/emu/run_model.sh BUILD [FIXTURE] — the model fidelity test (tests/model/
# test_model_fidelity.c) on the emulated CUDA backend: bf16 activations and weights, f32 masters
# apart from them, every CUDA op file emulated on the CPU — the layout and the op sequence that
# otherwise only a GPU runs, against the transformers fixtures under the CUDA bounds. BUILD is a
# CPU build of quarry (its libquarry.a supplies model/, data/, trainer/). FIXTURE: one of
# llama3_gqa, llama32_tied, mistral, qwen2, qwen3 (default llama3_gqa; each takes ~10 minutes on 2 cores),
# qwen3_moe, mixtral, gpt_oss (~40 minutes each);
# or qlora: tests/model/test_qlora.c (QLoRA over the NF4 ops against transformers + PEFT + bitsandbytes;
# qlora-moe: its NF4 experts fixture alone); or mxfp4: tests/model/test_mxfp4_experts.c (gpt-oss's
# experts kept in MXFP4 against the dequantised-at-load run, a few minutes).
# Output in build-emu-model/.
set -euo pipefail
cd "$(dirname "$0")/../../.."
build=${1:?usage: dev/cuda/emu/run_model.sh BUILD [FIXTURE]}
fixture=${2:-llama3_gqa}
out=$PWD/build-emu-model
. dev/cuda/emu/emu_build.sh
test=test_model_fidelity
args=(cuda "$fixture")
[ "$fixture" = qlora ] && test=test_qlora args=(cuda)
[ "$fixture" = qlora-moe ] && test=test_qlora args=(cuda moe)
[ "$fixture" = mxfp4 ] && test=test_mxfp4_experts args=(cuda)
emu_build_ops "$out"
nice gcc -std=c11 -O1 -g "${san[@]}" -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root" -I"$root/tests" \
    -c "tests/model/$test.c" -o "$out/$test.o"
emu_compile_fixture "$out"
# shellcheck disable=SC2046
g++ "${san[@]}" -o "$out/${test}_emu" "$out/$test.o" "$out/fixture.o" "${EMU_OBJS[@]}" "$build/libquarry.a" \
    -fopenmp -pthread -lm $(pkg-config --libs libcjson oniguruma libcurl libcrypto) -lutf8proc
QUARRY_SOURCE_DIR=$PWD exec "$out/${test}_emu" "${args[@]}"
