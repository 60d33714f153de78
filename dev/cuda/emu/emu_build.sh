# dev/cuda/emu/emu_build.sh — sourced by run.sh, run_lab.sh and run_model.sh (from the repo
# root): emu_build_ops OUT [SRC.cu OBJ] rewrites every kernels/cuda op file (and SRC.cu, when
# given) for the CPU emulation (emu.h) and compiles it into OUT, with emu_runtime (backend_cuda
# on the host) and the CPU backend's ops (from EMU_CPU_DIR, default kernels/cpu); EMU_OBJS lists
# the objects to link. Objects whose rewrite is unchanged and newer than emu.h are kept.
# emu_compile_fixture OUT compiles tests/model/fixture.c (the model tests' fixture reader).
# EMU_ASAN=1: AddressSanitizer + UBSan (san).
root=$PWD
san=()
[ "${EMU_ASAN:-0}" = 1 ] && san=(-fsanitize=address,undefined -fno-omit-frame-pointer)
inc=(-I/usr/local/cuda/include -I"$root" -I"$root/kernels/cuda" -I"$root/dev/cuda" -I"$root/dev/cuda/emu")

# emu_compile SRC.cu OBJ [headers...]
emu_compile() {
    local src=$1 obj=$2 cpp=${2%.o}.cpp
    shift 2
    python3 dev/cuda/emu/make_emu.py "$src" "$cpp.new"
    local fresh=1
    [ -f "$obj" ] && cmp -s "$cpp.new" "$cpp" || fresh=0
    # kernels/backend.h and cuda_ops.h too: a new op moves the table's offsets for every object.
    for h in dev/cuda/emu/emu.h kernels/backend.h kernels/cuda/cuda_ops.h "$@"; do [ "$fresh" = 1 ] && [ "$obj" -nt "$h" ] || fresh=0; done
    if [ "$fresh" = 1 ]; then rm "$cpp.new"; return 0; fi
    mv "$cpp.new" "$cpp"
    rm -f "$obj"
    nice g++ -std=c++20 -O1 -g -w -DQUARRY_EMU "${san[@]}" "${inc[@]}" -c "$cpp" -o "$obj"
}

# emu_compile_fixture OUT — the model tests' shared fixture reader (tests/model/fixture.c) into
# OUT/fixture.o, for run_model.sh and run_moe_routes.sh.
emu_compile_fixture() {
    nice gcc -std=c11 -O1 -g "${san[@]}" -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root" -I"$root/tests" \
        -c tests/model/fixture.c -o "$1/fixture.o"
}

emu_build_ops() {
    local out=$1 extra_src=${2:-} extra_obj=${3:-} pids=() f n p
    mkdir -p "$out"
    EMU_OBJS=()
    for f in kernels/cuda/*.cu; do
        n=$(basename "$f" .cu)
        [ "$n" = backend_cuda ] && continue
        emu_compile "$f" "$out/$n.o" kernels/cuda/common.cuh &
        pids+=($!)
        EMU_OBJS+=("$out/$n.o")
        [ "$(jobs -r | wc -l)" -ge 2 ] && wait -n
    done
    if [ -n "$extra_src" ]; then
        emu_compile "$extra_src" "$extra_obj" dev/cuda/*.cuh kernels/cuda/common.cuh &
        pids+=($!)
    fi
    for p in "${pids[@]}"; do wait "$p" || { echo "emu_build.sh: an emulator build failed" >&2; return 1; }; done
    nice g++ -std=c++20 -O1 -g -w "${san[@]}" "${inc[@]}" -c dev/cuda/emu/emu_runtime.cpp -o "$out/emu_runtime.o"
    EMU_OBJS+=("$out/emu_runtime.o")
    local cpu_dir=${EMU_CPU_DIR:-$root/kernels/cpu}
    for f in "$cpu_dir"/*.c kernels/backend.c kernels/cudnn_load.c kernels/cuda_libs.c kernels/nf4_format.c; do
        n=cpu_$(basename "$f" .c)
        nice gcc -std=c11 -O2 -fopenmp -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root" -I"$(dirname "$cpu_dir")/.." \
            -c "$f" -o "$out/$n.o"
        EMU_OBJS+=("$out/$n.o")
    done
}
