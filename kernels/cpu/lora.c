// kernels/cpu/lora.c — LoRA of G projections over one shared input (q, k, v; gate, up): the A
// matrices stacked (G·r, IC), h = x·Aᵀ as one GEMM, then each projection's B.  Every GEMM here
// sums each output element in the order linear_forward/linear_backward would (cpu_gemm's sum of
// an element does not depend on the other rows or columns of its call), so the grouped op gives
// the bits of G separate LoRA linears.
#include "cpu_ops.h"

void cpu_lora_group_forward(backend *be, void *const *y, void *h_, const void *x_, const void *a_,
                            const void *const *b, const int *out, int G, int N, int IC, int r, float scale) {
    (void)be;
    float *h = h_;
    const float *x = x_, *a = a_;
    long ld = (long)G * r;   // h: (N, G·r)
    // h = x·aᵀ: (N, G·r), one GEMM over the shared x.
    cpu_gemm(N, G * r, IC, 1.0f, x, IC, 1, a, 1, IC, 0.0f, h, ld);
    // y[g] += scale · h[:, g·r..]·b[g]ᵀ
    for (int g = 0; g < G; g++)
        cpu_gemm(N, out[g], r, scale, h + (long)g * r, ld, 1, b[g], 1, r, 1.0f, y[g], out[g]);
}

void cpu_lora_group_backward(backend *be, void *dx_, float *da, float *const *db, void *dh_,
                             const void *const *dy, const void *x_, const void *h_, const void *a_,
                             const void *const *b, const int *out, int G, int N, int IC, int r, float scale) {
    (void)be;
    float *dx = dx_, *dh = dh_;
    const float *x = x_, *h = h_, *a = a_;
    long ld = (long)G * r;
    for (int g = 0; g < G; g++) {
        const float *dyg = dy[g], *bg = b[g];
        // dh_g = scale · dy_g·b_g: (N, r) into columns g·r.. of dh.
        cpu_gemm(N, r, out[g], scale, dyg, out[g], 1, bg, r, 1, 0.0f, dh + (long)g * r, ld);
        // db_g += scale · dy_gᵀ·h_g: (out_g, r).
        if (db && db[g]) cpu_gemm(out[g], r, N, scale, dyg, 1, out[g], h + (long)g * r, ld, 1, 1.0f, db[g], r);
    }
    // da += dhᵀ·x: (G·r, IC), one GEMM.
    if (da) cpu_gemm(G * r, IC, N, 1.0f, dh, 1, ld, x, IC, 1, 1.0f, da, IC);
    // dx += dh_g·a_g, g in order (the unfused order of sums; CUDA: one GEMM over G·r).
    if (dx)
        for (int g = 0; g < G; g++)
            cpu_gemm(N, IC, r, 1.0f, dh + (long)g * r, ld, 1, a + (long)g * r * IC, IC, 1, 1.0f, dx, IC);
}
