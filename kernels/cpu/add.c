// kernels/cpu/add.c — residual add: out = a + b (out may alias a or b); out += x on f32.
#include "cpu_ops.h"

void cpu_add(backend *be, void *out_, const void *a_, const void *b_, size_t n) {
    (void)be;
    float *out = out_;
    const float *a = a_, *b = b_;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void cpu_add_f32(backend *be, float *out, const float *x, size_t n) {
    (void)be;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) out[i] += x[i];
}
