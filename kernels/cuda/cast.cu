// kernels/cuda/cast.cu — f32 <-> bf16 casts (round to nearest even), 8 elements per thread.
#include "common.cuh"

// Groups of 8: a 16-byte bf16 word and two float4 when the pointers allow, scalars otherwise
// (the tail group, or buffers that start at an unaligned offset).
__global__ void cast_f32_to_bf16_kernel(bf16 *dst, const float *src, size_t n, int vec) {
    size_t groups = (n + 7) / 8;
    for (size_t g = blockIdx.x * (size_t)blockDim.x + threadIdx.x; g < groups; g += (size_t)gridDim.x * blockDim.x) {
        size_t i0 = g * 8;
        if (vec && i0 + 8 <= n) {
            float4 a = reinterpret_cast<const float4 *>(src + i0)[0];
            float4 b = reinterpret_cast<const float4 *>(src + i0)[1];
            float f[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            *reinterpret_cast<uint4 *>(dst + i0) = f32_to_bf16x8(f);
        } else {
            for (size_t i = i0; i < n && i < i0 + 8; i++) dst[i] = __float2bfloat16_rn(src[i]);
        }
    }
}

__global__ void cast_bf16_to_f32_kernel(float *dst, const bf16 *src, size_t n, int vec) {
    size_t groups = (n + 7) / 8;
    for (size_t g = blockIdx.x * (size_t)blockDim.x + threadIdx.x; g < groups; g += (size_t)gridDim.x * blockDim.x) {
        size_t i0 = g * 8;
        if (vec && i0 + 8 <= n) {
            float f[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(src + i0), f);
            reinterpret_cast<float4 *>(dst + i0)[0] = make_float4(f[0], f[1], f[2], f[3]);
            reinterpret_cast<float4 *>(dst + i0)[1] = make_float4(f[4], f[5], f[6], f[7]);
        } else {
            for (size_t i = i0; i < n && i < i0 + 8; i++) dst[i] = __bfloat162float(src[i]);
        }
    }
}

static void cu_cast_f32_to_act(backend *be, void *dst, const float *src, size_t n) {
    if (!n) return;
    int vec = aligned16(dst) && aligned16(src);
    cast_f32_to_bf16_kernel<<<grid_for(be, (n + 7) / 8, 256), 256, 0, cuda_state_of(be)->stream>>>((bf16 *)dst, src, n, vec);
    CUDA_CHECK_LAST();
}

static void cu_cast_act_to_f32(backend *be, float *dst, const void *src, size_t n) {
    if (!n) return;
    int vec = aligned16(dst) && aligned16(src);
    cast_bf16_to_f32_kernel<<<grid_for(be, (n + 7) / 8, 256), 256, 0, cuda_state_of(be)->stream>>>(dst, (const bf16 *)src, n, vec);
    CUDA_CHECK_LAST();
}

void cuda_cast_install(backend *be) {
    be->cast_f32_to_act = cu_cast_f32_to_act;
    be->cast_act_to_f32 = cu_cast_act_to_f32;
}
