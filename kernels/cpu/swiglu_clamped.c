// kernels/cpu/swiglu_clamped.c — gpt-oss's clamped SwiGLU (GptOssExperts._apply_gate):
//   g = min(gate, limit), u = clamp(up, −limit, limit), out = (u + 1) · g · σ(alpha · g).
#include "cpu_ops.h"
#include <math.h>

void cpu_swiglu_clamped_forward(backend *be, void *out_, const void *gate_, const void *up_, size_t n,
                                float alpha, float limit) {
    (void)be;
    float *out = out_;
    const float *gate = gate_, *up = up_;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) {
        float g = fminf(gate[i], limit), u = fminf(fmaxf(up[i], -limit), limit);
        float glu = g * (1.0f / (1.0f + expf(-(g * alpha))));
        out[i] = (u + 1.0f) * glu;
    }
}

// The clamps pass the gradient where the input lies inside them (torch's clamp backward: bounds
// included); d(g σ(αg))/dg = σ + αg σ (1 − σ).
void cpu_swiglu_clamped_backward(backend *be, void *dgate_, void *dup_, const void *dout_, const void *gate_,
                                 const void *up_, size_t n, float alpha, float limit) {
    (void)be;
    float *dgate = dgate_, *dup = dup_;
    const float *dout = dout_, *gate = gate_, *up = up_;
#pragma omp parallel for schedule(static) if (n > 32768)
    for (size_t i = 0; i < n; i++) {
        float g0 = gate[i], u0 = up[i], d = dout[i];
        float g = fminf(g0, limit), u = fminf(fmaxf(u0, -limit), limit);
        float s = 1.0f / (1.0f + expf(-(g * alpha)));
        float glu = g * s;
        // Read everything before writing: dgate or dup may alias dout.
        float dg = g0 <= limit ? d * (u + 1.0f) * (s + alpha * g * s * (1.0f - s)) : 0.0f;
        float du = u0 >= -limit && u0 <= limit ? d * glu : 0.0f;
        dgate[i] = dg;
        dup[i] = du;
    }
}
