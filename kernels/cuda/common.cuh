// kernels/cuda/common.cuh — device helpers shared by the op kernels: bf16 <-> f32 in registers,
// 16-byte vector loads of 8 bf16, deterministic warp/block reductions, launch sizes.
#pragma once
#include "cuda_ops.h"
#include <cuda_bf16.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef __nv_bfloat16 bf16;

// 8 bf16 travel as one 16-byte uint4.
__device__ __forceinline__ void bf16x8_to_f32(const uint4 &u, float f[8]) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 p = __bfloat1622float2(h[i]);
        f[2 * i] = p.x;
        f[2 * i + 1] = p.y;
    }
}

__device__ __forceinline__ uint4 f32_to_bf16x8(const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    return u;
}

// Sum over the 32 lanes; every lane gets the same bits (butterfly order is fixed).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (≤ 1024); every thread gets the result.
// shared: 32 floats. Deterministic: fixed tree.
__device__ __forceinline__ float block_sum(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // shared may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? shared[lane] : 0.0f;
    return warp_sum(r);
}
__device__ __forceinline__ float block_max(float v, float *shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float r = lane < nwarps ? shared[lane] : -INFINITY;
    return warp_max(r);
}

static inline int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// Blocks for a grid-stride loop over `work` items: enough to fill the GPU, never zero.
static inline unsigned grid_for(backend *be, size_t work, int threads) {
    size_t want = (work + threads - 1) / threads;
    size_t cap = (size_t)cuda_state_of(be)->props.multiProcessorCount * 32;
    if (want > cap) want = cap;
    return want ? (unsigned)want : 1u;
}
