// kernels/cuda/add.cu — out = a + b on bf16 (fp32 add, one rounding), 8 elements per thread;
// out += x on f32.
#include "common.cuh"

// out may alias a or b: each element is read before it is written, by the same thread.
__global__ void add_kernel(bf16 *out, const bf16 *a, const bf16 *b, size_t n, int vec) {
    size_t groups = (n + 7) / 8;
    for (size_t g = blockIdx.x * (size_t)blockDim.x + threadIdx.x; g < groups; g += (size_t)gridDim.x * blockDim.x) {
        size_t i0 = g * 8;
        if (vec && i0 + 8 <= n) {
            float fa[8], fb[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(a + i0), fa);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(b + i0), fb);
#pragma unroll
            for (int j = 0; j < 8; j++) fa[j] += fb[j];
            *reinterpret_cast<uint4 *>(out + i0) = f32_to_bf16x8(fa);
        } else {
            for (size_t i = i0; i < n && i < i0 + 8; i++)
                out[i] = __float2bfloat16_rn(__bfloat162float(a[i]) + __bfloat162float(b[i]));
        }
    }
}

static void cu_add(backend *be, void *out, const void *a, const void *b, size_t n) {
    if (!n) return;
    int vec = aligned16(out) && aligned16(a) && aligned16(b);
    add_kernel<<<grid_for(be, (n + 7) / 8, 256), 256, 0, cuda_state_of(be)->stream>>>((bf16 *)out, (const bf16 *)a, (const bf16 *)b, n, vec);
    CUDA_CHECK_LAST();
}

__global__ void add_f32_kernel(float *out, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) out[i] += x[i];
}

static void cu_add_f32(backend *be, float *out, const float *x, size_t n) {
    if (!n) return;
    add_f32_kernel<<<grid_for(be, n, 256), 256, 0, cuda_state_of(be)->stream>>>(out, x, n);
    CUDA_CHECK_LAST();
}

void cuda_add_install(backend *be) {
    be->add = cu_add;
    be->add_f32 = cu_add_f32;
}
