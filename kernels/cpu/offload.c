// kernels/cpu/offload.c — activation offload's memory on the CPU backend: "device" and "host" are
// the same memory, so pinned host memory is plain memory and a side copy is a memcpy done at
// once (nothing runs beside it, nothing to wait for). The model's offload path (model/llama.c)
// runs the same copies in the same order on every backend: on the CPU its results are those of
// the path without offload, bit for bit.
#include "cpu_ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *cpu_host_alloc(backend *be, size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        snprintf(be->error, sizeof be->error, "out of host memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

void cpu_host_free(backend *be, void *p) {
    (void)be;
    free(p);
}

void cpu_side_copy(backend *be, void *dst, const void *src, size_t bytes, int to_host, int tag) {
    (void)be, (void)to_host, (void)tag;
    memcpy(dst, src, bytes);
}

void cpu_side_wait(backend *be, int tag) { (void)be, (void)tag; }
