// kernels/cuda/rope.cu — rotary position embedding, HF rotate-half layout (pairs (i, i + hd/2)),
// in place on bf16 with fp32 angles and math.
#include "common.cuh"

// One thread per pair: x (N, H, hd); dir = +1 rotates by +θ (forward), −1 by −θ (backward,
// the transpose, which is what the gradient needs, attention_scaling included).
__global__ void rope_kernel(bf16 *x, const int32_t *pos, const float *inv_freq, int N, int H, int hd, float scaling,
                            float dir) {
    int half = hd / 2;
    size_t total = (size_t)N * H * half;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        size_t rh = idx / half;  // row * H + head
        size_t row = rh / H;
        float theta = (float)pos[row] * inv_freq[i];  // fp32 product, as HF computes freqs
        float sn, cs;
        sincosf(theta, &sn, &cs);
        cs *= scaling;
        sn *= scaling * dir;
        bf16 *p = x + rh * hd;
        float a = __bfloat162float(p[i]), b = __bfloat162float(p[i + half]);
        p[i] = __float2bfloat16_rn(a * cs - b * sn);
        p[i + half] = __float2bfloat16_rn(b * cs + a * sn);
    }
}

static void launch(backend *be, void *x, const int32_t *pos, const rope_table *rope, int N, int n_heads, float dir) {
    if (N <= 0 || n_heads <= 0 || rope->head_dim <= 1) return;
    size_t work = (size_t)N * n_heads * (rope->head_dim / 2);
    rope_kernel<<<grid_for(be, work, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)x, pos, rope->inv_freq, N, n_heads, rope->head_dim, rope->attention_scaling, dir);
    CUDA_CHECK_LAST();
}

static void cu_rope_forward(backend *be, void *x, const int32_t *pos, const rope_table *rope, int N, int n_heads) {
    launch(be, x, pos, rope, N, n_heads, 1.0f);
}

static void cu_rope_backward(backend *be, void *dx, const int32_t *pos, const rope_table *rope, int N, int n_heads) {
    launch(be, dx, pos, rope, N, n_heads, -1.0f);
}

void cuda_rope_install(backend *be) {
    be->rope_forward = cu_rope_forward;
    be->rope_backward = cu_rope_backward;
}
