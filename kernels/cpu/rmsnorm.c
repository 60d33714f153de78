// kernels/cpu/rmsnorm.c — RMSNorm: out = x · rstd · w with rstd = 1/sqrt(mean(x²) + eps).
#include "cpu_ops.h"
#include <math.h>

void cpu_rmsnorm_forward(backend *be, void *out_, float *rstd, const void *x_, const void *w_,
                         int N, int C, float eps) {
    (void)be;
    float *out = out_;
    const float *x = x_, *w = w_;
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
    for (int i = 0; i < N; i++) rstd[i] = cpu_rmsnorm_row(out + (size_t)i * C, x + (size_t)i * C, w, C, eps);
}

float cpu_rmsnorm_row(float *out, const float *x, const float *w, int C, float eps) {
    double ss = 0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    // As HF: variance in f32, then x * rsqrt(variance + eps), then weight * that.
    float var = (float)(ss / C);
    float r = 1.0f / sqrtf(var + eps);
    for (int c = 0; c < C; c++) out[c] = w[c] * (x[c] * r);
    return r;
}

// y_c = x_c r w_c with r = (Σx²/C + eps)^-½, so
//   dx_c = r w_c g_c − x_c r³/C · Σ_k g_k w_k x_k,   dw_c = Σ_rows g_c x_c r.
void cpu_rmsnorm_dx_row(float *dx, const float *g, const float *x, const float *w, float r, int C, int accumulate) {
    double dot = 0;
    for (int c = 0; c < C; c++) dot += (double)g[c] * w[c] * x[c];
    float k = (float)(dot * r * r * r / C);
    // dx may be g: each element is read before it is written.  0.0f + v, not v, when not
    // accumulating: the bits of += onto a zeroed buffer (−0 becomes +0).
    for (int c = 0; c < C; c++) dx[c] = (accumulate ? dx[c] : 0.0f) + (r * w[c] * g[c] - k * x[c]);
}

// dw summed by column blocks, rows in order, so it is deterministic.
void cpu_rmsnorm_dw(float *dw, const float *dout, const float *x, const float *rstd, int N, int C) {
    enum { CB = 64 };
    int nblocks = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
    for (int cb = 0; cb < nblocks; cb++) {
        int c0 = cb * CB, c1 = c0 + CB < C ? c0 + CB : C;
        float acc[CB] = {0};
        for (int i = 0; i < N; i++) {
            const float *xi = x + (size_t)i * C, *gi = dout + (size_t)i * C;
            float r = rstd[i];
            for (int c = c0; c < c1; c++) acc[c - c0] += gi[c] * xi[c] * r;
        }
        for (int c = c0; c < c1; c++) dw[c] += acc[c - c0];
    }
}

// dx rows are independent (parallel over rows).
void cpu_rmsnorm_backward(backend *be, void *dx_, float *dw, const void *dout_, const void *x_,
                          const void *w_, const float *rstd, int N, int C) {
    (void)be;
    float *dx = dx_;
    const float *dout = dout_, *x = x_, *w = w_;
    if (dx) {
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
        for (int i = 0; i < N; i++)
            cpu_rmsnorm_dx_row(dx + (size_t)i * C, dout + (size_t)i * C, x + (size_t)i * C, w, rstd[i], C, 1);
    }
    if (dw) cpu_rmsnorm_dw(dw, dout, x, rstd, N, C);
}
