#!/usr/bin/env bash
# The prepared GPU check, for one call on a lent GPU machine (≤ 8 minutes), from the repo root:
#   card → test_ops_cuda (every CUDA op against the CPU backend) → ctest -L 'gpu|cuda' → bench_ops
#   → the attention, expert GEMM and NF4 kernel labs (dev/cuda) → the attention table (quarry v1/v3/v4, cuDNN,
#   torch sdpa: scripts/bench/attention_table.sh) → compute-sanitizer memcheck/racecheck on the op test (time permitting) → a short table.
# It uses a build carried from the development machine (build/, configured with -DQUARRY_CUDA=ON;
# same x86-64 and CUDA 13) and builds one there (build-gpu/) only when the carried binaries do
# not run.  Shared libraries the carried binaries cannot find are looked up in the usual CUDA
# and pip locations: those ldd lists, and cuBLAS/cuBLASLt/NCCL, which quarry opens with dlopen
# (kernels/cuda_libs.h) and `quarry info --json` reports.  Full logs go under $OUT when it is set.
# Usage: scripts/gpu_check.sh [build-dir]      Exit status: non-zero when a check failed.
#        scripts/gpu_check.sh --prepare [build-dir]   (on the development machine, before carrying
#        the build: copies the shared libraries its programs use that a bare GPU image may lack —
#        cJSON, Oniguruma, utf8proc, libcurl and their dependencies — into build-dir/gpu-libs;
#        the dlopen'ed CUDA libraries are found as quarry finds them and listed, copied only with
#        PREPARE_CUDA_LIBS=1: the GPU machine has its own, and they are ~800 MB)
# What to carry (64 MiB limit; CMakeFiles/ and libquarry.a are not needed): build/tests,
# build/dev, build/quarry, build/gpu-libs, build/CMakeCache.txt, build/CTestTestfile.cmake.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ "${1:-}" = --prepare ]; then
    b=${2:-build}
    mkdir -p "$b/gpu-libs"
    # Everything ldd resolves except the C runtime, the driver and the CUDA libraries (the GPU
    # machine has its own CUDA 13; cuBLAS and NCCL are hundreds of MB).
    skip='linux-vdso|ld-linux|/libc\.so|/libm\.so|libpthread|libdl\.so|librt\.so|libstdc\+\+|libgcc_s|libresolv|libcuda\.so|libcublas|libnccl|libcudart'
    find "$b" -type f -perm -u+x ! -name '*.so*' ! -path "*/CMakeFiles/*" | while read -r exe; do
        ldd "$exe" 2>/dev/null | awk '$3 ~ /^\// {print $3}'
    done | sort -u | grep -Ev "$skip" | while read -r lib; do
        cp -L "$lib" "$b/gpu-libs/"
    done
    # cuBLAS, cuBLASLt and NCCL are dlopen'ed, invisible to ldd: the binary says which files its
    # loader search finds (the same search the GPU run does).
    if [ -x "$b/quarry" ]; then
        "$b/quarry" info --json 2>/dev/null | grep -oE '"(cublas|cublaslt|nccl)_file":[[:space:]]*"/[^"]+"' |
            sed 's/.*"\(\/[^"]*\)"$/\1/' | while read -r lib; do
            if [ "${PREPARE_CUDA_LIBS:-0}" = 1 ] || ! grep -Eq "$skip" <<<"$lib"; then
                cp -L "$lib" "$b/gpu-libs/" && echo "   dlopen'ed: $lib copied"
            else
                echo "   dlopen'ed: $lib ($(du -sh "$(readlink -f "$lib")" | cut -f1); not copied: the GPU machine's own is used)"
            fi
        done
    fi
    echo "gpu_check --prepare: $(ls "$b/gpu-libs" | wc -l) libraries ($(du -sh "$b/gpu-libs" | cut -f1)) in $b/gpu-libs; $(du -sh "$b" | cut -f1) to carry"
    exit 0
fi
start=$(date +%s)
BUILD=${1:-build}
[ -d "$BUILD/gpu-libs" ] && export LD_LIBRARY_PATH="$root/$BUILD/gpu-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOGS=${OUT:-$root/build-gpu-logs}
mkdir -p "$LOGS"
summary=()
status=0
elapsed() { echo $(( $(date +%s) - start )); }
note() { summary+=("$1"); echo "== $1"; }

echo "== GPU check of quarry $(git rev-parse --short=12 HEAD 2>/dev/null || echo '?') at $(date -u +%FT%TZ)"
if ! nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | tee "$LOGS/card.txt"; then
    echo "gpu_check: nvidia-smi failed: no GPU here" >&2
    exit 1
fi
card=$(head -1 "$LOGS/card.txt")
cap=$(echo "$card" | awk -F', ' '{gsub(/\./, "", $4); print $4}')

# Directories that may hold libraries a carried binary misses.
lib_dirs() {
    ls -d /usr/local/cuda*/lib64 /usr/local/cuda*/lib /usr/local/cuda*/targets/x86_64-linux/lib \
          /usr/lib/x86_64-linux-gnu /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib \
          /usr/local/lib/python3*/dist-packages/nvidia/*/lib /usr/lib/python3/dist-packages/nvidia/*/lib 2>/dev/null
}
resolve_libs() {  # $1: a binary; extends LD_LIBRARY_PATH until ldd finds everything (or gives up)
    local missing lib d
    missing=$(ldd "$1" 2>/dev/null | awk '/not found/{print $1}')
    for lib in $missing; do
        local found=""
        for d in $(lib_dirs); do
            if [ -e "$d/$lib" ]; then found=$d/$lib; break; fi
        done
        # pip's CUDA 13 wheels changed their folder layout; search where Python packages live
        [ -z "$found" ] && found=$(find /opt /usr/local /usr/lib -name "$lib" 2>/dev/null | head -1)
        if [ -n "$found" ]; then
            export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            echo "   $lib from $(dirname "$found")"
        fi
    done
    ! ldd "$1" 2>/dev/null | grep -q "not found"
}
resolve_dlopened() {  # $1: a build dir; cuBLAS/cuBLASLt/NCCL are dlopen'ed (kernels/cuda_libs.h), so
    # ldd cannot see them: quarry's own message names the file it missed; extend LD_LIBRARY_PATH
    local q="$1/quarry" i lib d found
    [ -x "$q" ] || return 1
    for i in 1 2 3; do  # one library named per try (cuBLASLt, then cuBLAS, and NCCL)
        lib=$("$q" info --json 2>/dev/null | grep -oE '"(cublas|nccl)_error":[[:space:]]*"[^"]+' |
              grep -oE 'lib[A-Za-z]+\.so\.[0-9]+' | head -1)
        [ -z "$lib" ] && return 0
        found=""
        for d in $(lib_dirs); do
            if [ -e "$d/$lib" ]; then found=$d/$lib; break; fi
        done
        [ -z "$found" ] && found=$(find /opt /usr/local /usr/lib -name "$lib" 2>/dev/null | head -1)
        [ -z "$found" ] && { echo "   $lib: not found on this machine"; return 1; }
        export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "   $lib from $(dirname "$found") (dlopen'ed)"
    done
    ! "$q" info --json 2>/dev/null | grep -qE '"(cublas|nccl)":[[:space:]]*"none"'
}
usable() {  # the carried build runs: its op test starts and exits 0/1 (not a loader failure)
    local t="$1/tests/ops_cuda/test_ops_cuda"
    [ -x "$t" ] && [ -x "$1/dev/cuda/bench_ops" ] && resolve_libs "$t" && resolve_libs "$1/dev/cuda/bench_ops" &&
        resolve_dlopened "$1"
}

if usable "$BUILD"; then
    note "build: carried $BUILD"
else
    echo "== the carried build ($BUILD) is missing or cannot load its libraries; building build-gpu (sm_${cap:-90})"
    BUILD=build-gpu
    if cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DQUARRY_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${cap:-90}" \
            >"$LOGS/build.log" 2>&1 && cmake --build build-gpu -j16 >>"$LOGS/build.log" 2>&1 && usable build-gpu; then
        note "build: built build-gpu there in $(elapsed) s"
    else
        tail -30 "$LOGS/build.log"
        note "build: FAILED (see build.log)"
        printf '\n%s\n' "${summary[@]}"
        exit 1
    fi
fi

# cuBLAS/cuBLASLt/NCCL as the binary found them (dlopen: kernels/cuda_libs.h), and what --version
# costs on a machine with a driver (docs/BENCHMARKS.md: 229 MB linked, 12.5 MB dlopen'ed, no driver).
echo "== CUDA libraries"
"$BUILD/quarry" info | grep -E '^(cuBLAS|NCCL|GPU)' | tee "$LOGS/cuda_libs.txt"
if grep -Eq '^(cuBLAS|NCCL): *not usable' "$LOGS/cuda_libs.txt"; then note "cuda libs: FAIL (quarry info)"; status=1
else note "cuda libs: $(grep -E '^(cuBLAS|NCCL)' "$LOGS/cuda_libs.txt" | awk '{print $1, $2}' | paste -sd' ')"; fi
[ -x /usr/bin/time ] && note "--version peak RSS: $(/usr/bin/time -f '%M' "$BUILD/quarry" --version 2>&1 >/dev/null | tail -1) KB (with the driver)"

test_env=(QUARRY_BIN="$root/$BUILD/quarry" QUARRY_TESTDATA="$root/../shared/testdata" QUARRY_PYTHON="$root/.venv/bin/python"
          QUARRY_SOURCE_DIR="$root" QUARRY_BUILD_DIR="$root/$BUILD" OMP_NUM_THREADS=8)

echo "== test_ops_cuda"
t0=$(date +%s)
env "${test_env[@]}" timeout 300 "$BUILD/tests/ops_cuda/test_ops_cuda" -v 2>&1 | tee "$LOGS/test_ops_cuda.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then note "test_ops_cuda: PASS ($(( $(date +%s) - t0 )) s)"
else note "test_ops_cuda: FAIL (exit $rc; $(grep -c '^FAIL' "$LOGS/test_ops_cuda.log") failed checks)"; status=1; fi

echo "== other GPU tests (ctest -L 'gpu|cuda')"
# A carried build's CTestTestfiles name the development machine's paths: point them here first.
old_src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
old_build=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
if [ -n "$old_src" ] && [ -n "$old_build" ] && [ "$old_build" != "$root/$BUILD" ]; then
    find "$BUILD" -name CTestTestfile.cmake -exec sed -i "s|$old_build|$root/$BUILD|g; s|$old_src|$root|g" {} +
fi
ctest --test-dir "$BUILD" -L 'gpu|cuda' -E '^test_ops_cuda$' --output-on-failure --timeout 300 >"$LOGS/ctest_gpu.log" 2>&1
rc=$?
grep -E "tests passed|Passed|Failed|Not Run|Skipped|\*\*\*" "$LOGS/ctest_gpu.log" | tail -15
skipped=$(grep -c '\*\*\*Skipped' "$LOGS/ctest_gpu.log")
# A label filter that matches nothing passes silently: that is not a pass.
grep -q "No tests were found" "$LOGS/ctest_gpu.log" && rc=1 && echo "ctest found no GPU tests in $BUILD"
if [ "$rc" -eq 0 ]; then note "ctest -L gpu|cuda (others): PASS ($skipped skipped)"; else note "ctest -L gpu|cuda (others): FAIL (ctest_gpu.log)"; status=1; fi

echo "== bench_ops"
timeout 240 "$BUILD/dev/cuda/bench_ops" 2>&1 | tee "$LOGS/bench_ops.log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then note "bench_ops: ran"; else note "bench_ops: FAILED (exit $rc)"; status=1; fi

# The attention kernel lab (dev/cuda/attention_{forward,backward}.cu): every version checked
# against the CPU reference, then timed at hd 128, T 2048, 32 heads, GQA 8 (~30 s; a failed check
# fails the run).
echo "== attention lab (dev/cuda/attention_forward, attention_backward)"
if [ -x "$BUILD/dev/cuda/attention_forward" ] && [ -x "$BUILD/dev/cuda/attention_backward" ]; then
    : >"$LOGS/attention_lab.log"
    lab_rc=0
    for lab in attention_forward attention_backward; do
        timeout 60 "$BUILD/dev/cuda/$lab" --T 2048 --hd 128 --heads 32 --kv-heads 8 --repeats 10 2>&1 |
            tee -a "$LOGS/attention_lab.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || lab_rc=1
    done
    fwd=$(sed -n '/^attention_forward:/,/^attention_backward:/p' "$LOGS/attention_lab.log" |
        awk -F'|' '/^\| [0-9]+ \|/ {gsub(/ /, "", $2); gsub(/ /, "", $4); printf "v%s %s ", $2, $4}')
    bwd=$(sed -n '/^attention_backward:/,$p' "$LOGS/attention_lab.log" |
        awk -F'|' '/^\| [0-9]+ \|/ {gsub(/ /, "", $2); gsub(/ /, "", $4); printf "v%s %s ", $2, $4}')
    if [ "$lab_rc" -eq 0 ]; then note "attention lab: checks pass; TFLOP/s fwd ${fwd:-none}| bwd ${bwd:-none}"
    else note "attention lab: FAIL (attention_lab.log); TFLOP/s fwd ${fwd:-none}| bwd ${bwd:-none}"; status=1; fi
else
    note "attention lab: not built in $BUILD (skipped)"
fi

# The attention table (issue 21; scripts/bench/attention_table.sh, ~3 minutes): quarry's forward
# kernel versions checked and timed, cuDNN through quarry, torch's sdpa (flash, cuDNN) on this card;
# appended to docs/BENCHMARKS.md.
echo "== attention table (scripts/bench/attention_table.sh)"
LOGS=$LOGS scripts/bench/attention_table.sh "$BUILD" | tee "$LOGS/attention_table.txt"
if [ "${PIPESTATUS[0]}" -eq 0 ]; then note "attention table: checks pass; $(grep '^attention hd128' "$LOGS/attention_table.txt")"
else note "attention table: FAIL (attention_table.txt)"; status=1; fi

# The grouped expert GEMM lab (dev/cuda/expert_gemm.cu): the production grouped_linear op (v1),
# cublasGemmGroupedBatchedEx in 2 calls (v2) and the former per-expert loop (v3), checked, then timed at Qwen3-30B-A3B shapes (2048 and
# 8192 tokens) and Mixtral-8x7B's (2048 tokens) (~60 s, most of it the CPU reference; a failed
# check fails the run).  The predictions to set these against: dev/cuda/README.md ("Grouped
# expert GEMM").
echo "== expert GEMM lab (dev/cuda/expert_gemm)"
if [ -x "$BUILD/dev/cuda/expert_gemm" ]; then
    : >"$LOGS/expert_gemm.log"
    eg_rc=0
    eg=""
    for shape in "qwen3-30b-a3b 2048:--tokens 2048" "qwen3-30b-a3b 8192:--tokens 8192" \
                 "mixtral-8x7b 2048:--tokens 2048 --experts 8 --topk 2 --C 4096 --I 14336"; do
        # shellcheck disable=SC2086
        timeout 90 "$BUILD/dev/cuda/expert_gemm" ${shape#*:} --repeats 10 2>&1 | tee -a "$LOGS/expert_gemm.log" |
            tee "$LOGS/expert_gemm_one.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || eg_rc=1
        eg+="${shape%%:*}: $(awk -F'|' '/^\| [0-9]+ \|/ {gsub(/ /, "", $2); gsub(/ /, "", $3); printf "v%s %s ms ", $2, $3}' \
            "$LOGS/expert_gemm_one.log")| "
    done
    rm -f "$LOGS/expert_gemm_one.log"
    if [ "$eg_rc" -eq 0 ]; then note "expert GEMM lab: checks pass; $eg"
    else note "expert GEMM lab: FAIL (expert_gemm.log); $eg"; status=1; fi
else
    note "expert GEMM lab: not built in $BUILD (skipped)"
fi

# The NF4 (QLoRA) linear lab (dev/cuda/nf4_gemm.cu): production (dequantise into the bf16
# workspace + cuBLASLt, v1), the fused dequantise-GEMM on mma.sync (v2) and v2 with split-K (v3),
# forward and dX, checked against the CPU op, then timed at Llama-3.1-8B's frozen linears and
# N = 16..4096 tokens: TFLOP/s and GB/s against the card's ceilings (~60 s, most of it quantising
# on the host; a failed check fails the run).  The prediction to set these against:
# docs/BENCHMARKS.md, "the NF4 workspace path against a fused dequantise-GEMM".  Summary: v2's and
# v3's speed-up over v1 per product.
echo "== NF4 linear lab (dev/cuda/nf4_gemm)"
if [ -x "$BUILD/dev/cuda/nf4_gemm" ]; then
    : >"$LOGS/nf4_gemm.log"
    ng_rc=0
    for shape in "4096 4096" "4096 1024" "4096 14336" "14336 4096"; do
        read -r ic oc <<<"$shape"
        timeout 150 "$BUILD/dev/cuda/nf4_gemm" --N 16,256,2048,4096 --IC "$ic" --OC "$oc" --repeats 10 2>&1 |
            tee -a "$LOGS/nf4_gemm.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || ng_rc=1
    done
    # "fwd N=16 4096x4096 v2 0.61x; ..." from the table rows of versions 2 and 3 (column 9: vs v1)
    ng=$(awk -F'|' '/^\| (fwd|dX) N=/ {
            v = $3; gsub(/ /, "", v); p = $2; gsub(/^ | $/, "", p); x = $9; gsub(/ /, "", x)
            if (v >= 2) printf "%s v%s %s; ", p, v, x }' "$LOGS/nf4_gemm.log")
    if [ "$ng_rc" -eq 0 ]; then note "NF4 lab: checks pass; against v1: ${ng:-none}"
    else note "NF4 lab: FAIL (nf4_gemm.log); against v1: ${ng:-none}"; status=1; fi
else
    note "NF4 lab: not built in $BUILD (skipped)"
fi

# Sanitizers only while the 8-minute budget allows (each bounded).
san=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
: >"$LOGS/sanitizer.log"
if [ -n "$san" ] && [ "$(elapsed)" -lt 300 ]; then
    echo "== compute-sanitizer racecheck (attention, shared-memory hazards)"
    timeout 90 "$san" --tool racecheck --error-exitcode 99 "$BUILD/tests/ops_cuda/test_ops_cuda" attention \
        >>"$LOGS/sanitizer.log" 2>&1
    rc=$?
    tail -3 "$LOGS/sanitizer.log"
    case $rc in 0) note "racecheck (attention): clean";; 124) note "racecheck (attention): timed out (not run to the end)";;
                *) note "racecheck (attention): FAIL (exit $rc, sanitizer.log)"; status=1;; esac
fi
if [ -n "$san" ] && [ "$(elapsed)" -lt 390 ]; then
    echo "== compute-sanitizer memcheck (all ops)"
    timeout 90 "$san" --tool memcheck --error-exitcode 99 "$BUILD/tests/ops_cuda/test_ops_cuda" '!large' \
        >>"$LOGS/sanitizer.log" 2>&1
    rc=$?
    tail -3 "$LOGS/sanitizer.log"
    case $rc in 0) note "memcheck (all ops, small shapes): clean";; 124) note "memcheck (all ops): timed out (not run to the end)";;
                *) note "memcheck (all ops): FAIL (exit $rc, sanitizer.log)"; status=1;; esac
elif [ -z "$san" ]; then
    note "compute-sanitizer: not found, skipped"
fi

# Data parallel through NCCL (world size 1 on one lent GPU): --gpus 1 --zero 1 = the plain run.
echo "== dist: --gpus 1 --zero 1 through NCCL"
if timeout 150 scripts/gpu_check_dist.sh "$BUILD" "$LOGS" | tee "$LOGS/dist.txt"; then note "dist: --gpus 1 --zero 1 = plain run (LoRA, full)"
else note "dist: FAILED (see dist.txt)"; status=1; fi

# The model level: CUDA vs CPU runs, stories260K, export through transformers, training timings.
echo "== model level (scripts/gpu_train_check.sh)"
SKIP_FIDELITY=1 timeout 330 scripts/gpu_train_check.sh "$BUILD" >"$LOGS/train_check.txt" 2>&1
rc=$?
sed -n '/^## gpu_train_check/,$p' "$LOGS/train_check.txt"
[ "$rc" -eq 0 ] && note "model level: PASS (train_check.txt)" || { note "model level: FAIL (exit $rc, train_check.txt)"; status=1; }

{
    echo
    echo "## quarry gpu_check — $card — $(date -u +%F) — $(elapsed) s"
    printf -- '- %s\n' "${summary[@]}"
    echo
    sed -n '/^| op |/,$p' "$LOGS/bench_ops.log"
} | tee "$LOGS/summary.md"
exit $status
