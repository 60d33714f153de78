// kernels/cuda/lora.cu — LoRA of G projections over one shared input (q, k, v; gate, up) through
// cuBLASLt: the stacked A (G·r, IC) as one GEMM forward (x read once instead of G times, one
// launch instead of G), one GEMM for dA and one for dx backward; each projection's B as its own
// GEMM on a column block of h (leading dimension G·r).  bf16 in and out, fp32 compute, f32
// gradients accumulated in place, as linear.cu.
#include "common.cuh"

// Row-major (N, M) = (N, K)·(M, K)ᵀ is, column-major, (M × N) = W(K × M)ᵀ · x(K × N): as linear.cu.
static void cu_lora_group_forward(backend *be, void *const *y, void *h, const void *x, const void *a,
                                  const void *const *b, const int *out, int G, int N, int IC, int r,
                                  float scale) {
    if (N <= 0 || G <= 0 || r <= 0) return;
    int ld = G * r;
    // h (N, G·r) = x·aᵀ
    cuda_matmul(be, ld, N, IC, a, IC, 1, x, IC, 0, h, ld, CUDA_R_16BF, 1.0f, 0.0f, NULL);
    // y[g] (N, out[g]) += scale · h_g·b[g]ᵀ, h_g the column block g of h
    for (int g = 0; g < G; g++)
        cuda_matmul(be, out[g], N, r, b[g], r, 1, (const bf16 *)h + (size_t)g * r, ld, 0, y[g], out[g], CUDA_R_16BF,
                    scale, 1.0f, NULL);
}

static void cu_lora_group_backward(backend *be, void *dx, float *da, float *const *db, void *dh,
                                   const void *const *dy, const void *x, const void *h, const void *a,
                                   const void *const *b, const int *out, int G, int N, int IC, int r,
                                   float scale) {
    if (N <= 0 || G <= 0 || r <= 0) return;
    int ld = G * r;
    for (int g = 0; g < G; g++) {
        bf16 *dhg = (bf16 *)dh + (size_t)g * r;
        const bf16 *hg = (const bf16 *)h + (size_t)g * r;
        // dh_g (r × N col-major) = b_g-view(r × out) · dy_g(out × N)
        cuda_matmul(be, r, N, out[g], b[g], r, 0, dy[g], out[g], 0, dhg, ld, CUDA_R_16BF, scale, 0.0f, NULL);
        // db_g (r × out col-major) += h_g(r × N) · dy_g(out × N)ᵀ, f32
        if (db && db[g]) cuda_matmul(be, r, out[g], N, hg, ld, 0, dy[g], out[g], 1, db[g], r, CUDA_R_32F, scale, 1.0f, NULL);
    }
    // da (IC × G·r col-major) += x(IC × N) · dh(G·r × N)ᵀ: one GEMM for the G stacked A's
    if (da) cuda_matmul(be, IC, ld, N, x, IC, 0, dh, ld, 1, da, IC, CUDA_R_32F, 1.0f, 1.0f, NULL);
    // dx (IC × N col-major) += a-view(IC × G·r) · dh(G·r × N): one GEMM over G·r
    if (dx) cuda_matmul(be, IC, N, ld, a, IC, 0, dh, ld, 0, dx, IC, CUDA_R_16BF, 1.0f, 1.0f, NULL);
}

void cuda_lora_install(backend *be) {
    be->lora_group_forward = cu_lora_group_forward;
    be->lora_group_backward = cu_lora_group_backward;
}
