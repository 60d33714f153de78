// kernels/cpu/swiglu.c — SwiGLU: out = silu(gate) · up, silu(g) = g / (1 + e^−g).
#include "cpu_ops.h"
#include <math.h>

void cpu_swiglu_forward(backend *be, void *out_, const void *gate_, const void *up_, size_t n) {
    (void)be;
    float *out = out_;
    const float *gate = gate_, *up = up_;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// d silu(g)/dg = σ(g) (1 + g (1 − σ(g))).
void cpu_swiglu_backward(backend *be, void *dgate_, void *dup_, const void *dout_,
                         const void *gate_, const void *up_, size_t n) {
    (void)be;
    float *dgate = dgate_, *dup = dup_;
    const float *dout = dout_, *gate = gate_, *up = up_;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], u = up[i], d = dout[i];
        float s = 1.0f / (1.0f + expf(-g));
        float silu = g * s;
        // Read everything before writing: dgate or dup may alias dout.
        float dg = d * u * s * (1.0f + g * (1.0f - s));
        float du = d * silu;
        dgate[i] = dg;
        dup[i] = du;
    }
}
