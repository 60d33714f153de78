// kernels/cuda/swiglu.cu — out = silu(gate) · up and its backward, fp32 math on bf16 storage.
#include "common.cuh"

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float swiglu_f(float g, float u) { return g * sigmoidf_(g) * u; }

// d/dg silu(g)·u = u · σ(g) · (1 + g (1 − σ(g))),  d/du = silu(g).
__device__ __forceinline__ void swiglu_b(float d, float g, float u, float *dg, float *du) {
    float s = sigmoidf_(g);
    *dg = d * u * s * (1.0f + g * (1.0f - s));
    *du = d * g * s;
}

__global__ void swiglu_forward_kernel(bf16 *out, const bf16 *gate, const bf16 *up, size_t n, int vec) {
    size_t groups = (n + 7) / 8;
    for (size_t gi = blockIdx.x * (size_t)blockDim.x + threadIdx.x; gi < groups; gi += (size_t)gridDim.x * blockDim.x) {
        size_t i0 = gi * 8;
        if (vec && i0 + 8 <= n) {
            float g[8], u[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(gate + i0), g);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(up + i0), u);
#pragma unroll
            for (int j = 0; j < 8; j++) g[j] = swiglu_f(g[j], u[j]);
            *reinterpret_cast<uint4 *>(out + i0) = f32_to_bf16x8(g);
        } else {
            for (size_t i = i0; i < n && i < i0 + 8; i++)
                out[i] = __float2bfloat16_rn(swiglu_f(__bfloat162float(gate[i]), __bfloat162float(up[i])));
        }
    }
}

__global__ void swiglu_backward_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up,
                                       size_t n, int vec) {
    size_t groups = (n + 7) / 8;
    for (size_t gi = blockIdx.x * (size_t)blockDim.x + threadIdx.x; gi < groups; gi += (size_t)gridDim.x * blockDim.x) {
        size_t i0 = gi * 8;
        if (vec && i0 + 8 <= n) {
            float d[8], g[8], u[8], dg[8], du[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(dout + i0), d);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(gate + i0), g);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(up + i0), u);
#pragma unroll
            for (int j = 0; j < 8; j++) swiglu_b(d[j], g[j], u[j], &dg[j], &du[j]);
            *reinterpret_cast<uint4 *>(dgate + i0) = f32_to_bf16x8(dg);
            *reinterpret_cast<uint4 *>(dup + i0) = f32_to_bf16x8(du);
        } else {
            for (size_t i = i0; i < n && i < i0 + 8; i++) {
                float dg, du;
                swiglu_b(__bfloat162float(dout[i]), __bfloat162float(gate[i]), __bfloat162float(up[i]), &dg, &du);
                dgate[i] = __float2bfloat16_rn(dg);
                dup[i] = __float2bfloat16_rn(du);
            }
        }
    }
}

static void cu_swiglu_forward(backend *be, void *out, const void *gate, const void *up, size_t n) {
    if (!n) return;
    int vec = aligned16(out) && aligned16(gate) && aligned16(up);
    swiglu_forward_kernel<<<grid_for(be, (n + 7) / 8, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, (const bf16 *)gate, (const bf16 *)up, n, vec);
    CUDA_CHECK_LAST();
}

static void cu_swiglu_backward(backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                               const void *up, size_t n) {
    if (!n) return;
    int vec = aligned16(dgate) && aligned16(dup) && aligned16(dout) && aligned16(gate) && aligned16(up);
    swiglu_backward_kernel<<<grid_for(be, (n + 7) / 8, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)dgate, (bf16 *)dup, (const bf16 *)dout, (const bf16 *)gate, (const bf16 *)up, n, vec);
    CUDA_CHECK_LAST();
}

void cuda_swiglu_install(backend *be) {
    be->swiglu_forward = cu_swiglu_forward;
    be->swiglu_backward = cu_swiglu_backward;
}
