// kernels/cpu/dropout.c — inverted dropout; the mask is rng_keep(seed, index), the same on every
// backend, so the backward recomputes it instead of storing it.
#include "cpu_ops.h"
#include "../rng.h"
#include <string.h>

void cpu_dropout_forward(backend *be, void *out_, const void *inp_, size_t n, float p,
                         uint64_t seed) {
    (void)be;
    float *out = out_;
    const float *inp = inp_;
    if (p <= 0.0f) {
        if (out != inp) memmove(out, inp, n * sizeof(float));
        return;
    }
    float s = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) out[i] = rng_keep(seed, i, p) ? inp[i] * s : 0.0f;
}

void cpu_dropout_backward(backend *be, void *dinp_, const void *dout_, size_t n, float p,
                          uint64_t seed) {
    (void)be;
    float *dinp = dinp_;
    const float *dout = dout_;
    if (p <= 0.0f) {
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    float s = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++)
        if (rng_keep(seed, i, p)) dinp[i] += dout[i] * s;
}
