// kernels/cpu/reduce.c — reductions over f32 buffers: sum of squares (for the gradient norm),
// in-place scale (clipping) and the non-finite check (skipped steps).
#include "cpu_ops.h"
#include <math.h>
#include <stdlib.h>

// Fixed chunks summed in double, then the chunk sums in order: the same bits for any thread
// count.
void cpu_sum_squares(backend *be, float *out, const float *x, size_t n) {
    (void)be;
    enum { CHUNK = 8192 };
    size_t nchunks = (n + CHUNK - 1) / CHUNK;
    double small[64];
    double *part = nchunks <= 64 ? small : malloc(nchunks * sizeof(double));
    double total = 0;
    if (!part) {  // no memory for the partial sums: one thread, same order of chunks
        for (size_t c = 0; c < nchunks; c++) {
            size_t i0 = c * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
            double s = 0;
            for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
            total += s;
        }
        *out += (float)total;
        return;
    }
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (size_t c = 0; c < nchunks; c++) {
        size_t i0 = c * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        double s = 0;
        for (size_t i = i0; i < i1; i++) s += (double)x[i] * x[i];
        part[c] = s;
    }
    for (size_t c = 0; c < nchunks; c++) total += part[c];
    if (part != small) free(part);
    *out += (float)total;
}

void cpu_scale_f32(backend *be, float *x, float s, size_t n) {
    (void)be;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

int cpu_has_nonfinite(backend *be, const float *x, size_t n) {
    (void)be;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n > 65536)
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return bad;
}
