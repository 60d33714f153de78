// tests/fuzz_safetensors/fuzz_quantized.c — libFuzzer over the readers of quantised checkpoint
// tensors, past the header parser: bitsandbytes' 4-bit layout (model/bnb4.h: the codes, absmax,
// quant maps and the quant-state JSON of "w.weight") and gpt-oss's MXFP4 pairs
// (model/mxfp4_load.h: "e_blocks"/"e_scales" dequantised as "e"). Input: byte 0 = out, byte 1 =
// in (the config's shape of w, 1..256), byte 2 bit 0 = double quantisation, then a whole
// .safetensors file. Whatever the bytes: 0 with the tensors' lengths consistent with the shape,
// or -1 with a message; never a crash, leak or overflow. Seeds: make_quantized_corpus.py (real
// bitsandbytes output).
#define _GNU_SOURCE
#include "kernels/nf4_format.h"
#include "model/bnb4.h"
#include "model/mxfp4_load.h"
#include "model/safetensors.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int file_fd = -1;

// The input's file part in one memory file, rewritten per input (st_open takes a path).
static int write_file(const uint8_t *data, size_t size, char *path, size_t pathlen) {
    if (file_fd < 0) file_fd = memfd_create("fuzz_quantized", 0);
    if (file_fd < 0 || ftruncate(file_fd, 0) != 0) return -1;
    for (size_t off = 0; off < size;) {
        ssize_t n = pwrite(file_fd, data + off, size - off, (off_t)off);
        if (n <= 0) return -1;
        off += (size_t)n;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", file_fd);
    return 0;
}

// f32 values in the mapping need not be 4-byte aligned (bnb4.h): read them with memcpy.
static unsigned touch_f32(const float *v, size_t n) {
    unsigned nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, (const char *)v + i * sizeof f, sizeof f);
        nonzero += f != 0;
    }
    return nonzero;
}

static void check_bnb4(const st_set *s, int64_t out, int64_t in, int double_quant) {
    nf4_tensor t;
    char err[1024];
    err[0] = 0;
    int rc = bnb4_tensor(s, "fuzz", "w.weight", out, in, double_quant, &t, err, sizeof err);
    if (rc != 0) {
        if (rc != -1 || !err[0]) __builtin_trap();   // every refusal says why
        return;
    }
    size_t n = (size_t)(out * in);
    if (t.packed_bytes != nf4_packed_bytes(n)) __builtin_trap();
    // Touch what was accepted: every byte the format says is there must be readable.
    volatile unsigned sum = 0;
    for (size_t i = 0; i < t.packed_bytes; i++) sum += t.packed[i];
    if (double_quant) {
        for (size_t i = 0; i < t.n_qabsmax; i++) sum += t.qabsmax[i];
        sum += touch_f32(t.nested_absmax, t.n_nested);
    } else {
        sum += touch_f32(t.absmax, t.n_absmax);
    }
    (void)sum;
}

static void check_mxfp4(const st_set *s) {
    mxfp4_pair p;
    char err[1024];
    err[0] = 0;
    int rc = mxfp4_pair_find(s, "e", &p, "fuzz", err, sizeof err);
    if (rc == -1 && !err[0]) __builtin_trap();
    if (rc != 1) return;
    size_t n = mxfp4_numel(&p.shape);
    if ((size_t)(p.dq_shape[0] * p.dq_shape[1] * p.dq_shape[2]) != n) __builtin_trap();
    if (n > ((size_t)1 << 22)) return;   // the pair is consistent; not worth 16 MB a run
    float *dst = malloc(n * sizeof *dst + 1);
    if (!dst) return;
    err[0] = 0;
    if (mxfp4_read_tensor_f32(s, "e", 1, dst, n, "fuzz", err, sizeof err) != 0 && !err[0]) __builtin_trap();
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 + 8) return 0;
    int64_t out = (int64_t)data[0] + 1, in = (int64_t)data[1] + 1;
    int double_quant = data[2] & 1;
    char path[64], err[1024];
    if (write_file(data + 3, size - 3, path, sizeof path) != 0) return 0;
    err[0] = 0;
    st_set *s = st_open(path, err, sizeof err);
    if (!s) {
        if (!err[0]) __builtin_trap();
        return 0;
    }
    check_bnb4(s, out, in, double_quant);
    check_mxfp4(s);
    st_close(s);
    return 0;
}
