// kernels/cpu/nf4.c — QLoRA's frozen NF4 linear layers on the CPU: the weight is dequantised
// ROWS rows at a time into a scratch block, and each block goes through the f32 GEMM of linear.c.
//   forward  out[:, o0:o1]  = x · W[o0:o1]ᵀ        (a column slice of out per block)
//   backward dX            += dY[:, o0:o1] · W[o0:o1]   (the blocks in order: a fixed sum order)
// The scratch holds ROWS·IC floats instead of the whole f32 weight, which would be 8× the NF4
// bytes and defeat the format on the CPU.
#include "cpu_ops.h"
#include "../nf4_format.h"
#include <math.h>
#include <stdlib.h>

enum { ROWS = 256 };

// Rows [r0, r1) of the weight into dst (f32 (r1 − r0, IC)), OpenMP over 64-row slices.
static void dequant_rows(float *dst, const nf4_tensor *w, int r0, int r1, int IC) {
#pragma omp parallel for schedule(static) if ((long)(r1 - r0) * IC > 65536)
    for (int r = r0; r < r1; r += 64) {
        int re = r + 64 < r1 ? r + 64 : r1;
        nf4_decode_range(dst + (size_t)(r - r0) * IC, w, (size_t)r * IC, (size_t)re * IC);
    }
}

void cpu_nf4_dequantize(backend *be, void *out, const struct nf4_tensor *w, int OC, int IC) {
    (void)be;
    if (OC > 0 && IC > 0) dequant_rows(out, w, 0, OC, IC);
}

// A scratch block, or NULL after poisoning out (n floats) with NaN so the step is skipped.
static float *block_scratch(int IC, float *out, size_t n) {
    float *s = malloc((size_t)ROWS * IC * sizeof(float) + 1);
    if (!s)
        for (size_t i = 0; i < n; i++) out[i] = NAN;
    return s;
}

void cpu_nf4_linear_forward(backend *be, void *out_, const void *inp, const struct nf4_tensor *w,
                            const void *bias_, int N, int IC, int OC, float scale, int accumulate,
                            void *workspace) {
    (void)be, (void)workspace;
    float *out = out_;
    const float *bias = bias_;
    if (N <= 0 || OC <= 0) return;
    float *blk = block_scratch(IC, out, (size_t)N * OC);
    if (!blk) return;
    for (int o0 = 0; o0 < OC; o0 += ROWS) {
        int ob = OC - o0 < ROWS ? OC - o0 : ROWS;
        dequant_rows(blk, w, o0, o0 + ob, IC);
        cpu_gemm(N, ob, IC, scale, inp, IC, 1, blk, 1, IC, accumulate ? 1.0f : 0.0f, out + o0, OC);
    }
    free(blk);
    if (bias) {
#pragma omp parallel for schedule(static) if ((long)N * OC > 65536)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < OC; j++) out[(size_t)i * OC + j] += scale * bias[j];
    }
}

void cpu_nf4_linear_backward(backend *be, void *dinp_, const void *dout_,
                             const struct nf4_tensor *w, int N, int IC, int OC, float scale,
                             int accumulate, void *workspace) {
    (void)be, (void)workspace;
    float *dinp = dinp_;
    const float *dout = dout_;
    if (N <= 0 || IC <= 0) return;
    float *blk = block_scratch(IC, dinp, (size_t)N * IC);
    if (!blk) return;
    for (int o0 = 0; o0 < OC; o0 += ROWS) {
        int ob = OC - o0 < ROWS ? OC - o0 : ROWS;
        dequant_rows(blk, w, o0, o0 + ob, IC);
        float beta = o0 == 0 && !accumulate ? 0.0f : 1.0f;
        cpu_gemm(N, IC, ob, scale, dout + o0, OC, 1, blk, IC, 1, beta, dinp, IC);
    }
    free(blk);
}
