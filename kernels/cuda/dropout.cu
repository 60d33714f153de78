// kernels/cuda/dropout.cu — inverted dropout with the counter-based hash of kernels/rng.h, so the
// CPU and CUDA backends drop the same elements for the same (seed, index).
#include "common.cuh"
#include "../rng.h"

// p ≥ 1 drops everything (no 0/0).
__device__ __forceinline__ float dropout_factor(uint64_t seed, size_t i, float p, float inv_keep) {
    return rng_keep(seed, (uint64_t)i, p) ? inv_keep : 0.0f;
}

// out = inp · keep / (1 − p)  (accumulate = 0), or out += ... (accumulate = 1, the backward).
__global__ void dropout_kernel(bf16 *out, const bf16 *inp, size_t n, float p, float inv_keep, uint64_t seed,
                               int accumulate, int vec) {
    size_t groups = (n + 7) / 8;
    for (size_t g = blockIdx.x * (size_t)blockDim.x + threadIdx.x; g < groups; g += (size_t)gridDim.x * blockDim.x) {
        size_t i0 = g * 8;
        if (vec && i0 + 8 <= n) {
            float x[8], o[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(inp + i0), x);
            if (accumulate) bf16x8_to_f32(*reinterpret_cast<const uint4 *>(out + i0), o);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float y = x[j] * dropout_factor(seed, i0 + j, p, inv_keep);
                o[j] = accumulate ? o[j] + y : y;
            }
            *reinterpret_cast<uint4 *>(out + i0) = f32_to_bf16x8(o);
        } else {
            for (size_t i = i0; i < n && i < i0 + 8; i++) {
                float y = __bfloat162float(inp[i]) * dropout_factor(seed, i, p, inv_keep);
                out[i] = __float2bfloat16_rn(accumulate ? __bfloat162float(out[i]) + y : y);
            }
        }
    }
}

static void launch(backend *be, void *out, const void *inp, size_t n, float p, uint64_t seed, int accumulate) {
    if (!n) return;
    float inv_keep = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    int vec = aligned16(out) && aligned16(inp);
    dropout_kernel<<<grid_for(be, (n + 7) / 8, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, (const bf16 *)inp, n, p, inv_keep, seed, accumulate, vec);
    CUDA_CHECK_LAST();
}

static void cu_dropout_forward(backend *be, void *out, const void *inp, size_t n, float p, uint64_t seed) {
    launch(be, out, inp, n, p, seed, 0);
}

static void cu_dropout_backward(backend *be, void *dinp, const void *dout, size_t n, float p, uint64_t seed) {
    launch(be, dinp, dout, n, p, seed, 1);
}

void cuda_dropout_install(backend *be) {
    be->dropout_forward = cu_dropout_forward;
    be->dropout_backward = cu_dropout_backward;
}
