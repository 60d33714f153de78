// kernels/cuda/swiglu_clamped.cu — gpt-oss's clamped SwiGLU and its backward (kernels/cpu/
// swiglu_clamped.c is the reference), fp32 math on bf16 storage.
#include "common.cuh"

__device__ __forceinline__ float clamped_f(float g0, float u0, float alpha, float limit) {
    float g = fminf(g0, limit), u = fminf(fmaxf(u0, -limit), limit);
    return (u + 1.0f) * (g / (1.0f + expf(-(g * alpha))));
}

__global__ void swiglu_clamped_forward_kernel(bf16 *out, const bf16 *gate, const bf16 *up, size_t n, float alpha,
                                              float limit) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = __float2bfloat16_rn(clamped_f(__bfloat162float(gate[i]), __bfloat162float(up[i]), alpha, limit));
}

__global__ void swiglu_clamped_backward_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate,
                                               const bf16 *up, size_t n, float alpha, float limit) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g0 = __bfloat162float(gate[i]), u0 = __bfloat162float(up[i]), d = __bfloat162float(dout[i]);
        float g = fminf(g0, limit), u = fminf(fmaxf(u0, -limit), limit);
        float s = 1.0f / (1.0f + expf(-(g * alpha)));
        float dg = g0 <= limit ? d * (u + 1.0f) * (s + alpha * g * s * (1.0f - s)) : 0.0f;
        float du = u0 >= -limit && u0 <= limit ? d * g * s : 0.0f;
        dgate[i] = __float2bfloat16_rn(dg);
        dup[i] = __float2bfloat16_rn(du);
    }
}

static void cu_swiglu_clamped_forward(backend *be, void *out, const void *gate, const void *up, size_t n, float alpha,
                                      float limit) {
    if (n == 0) return;
    swiglu_clamped_forward_kernel<<<grid_for(be, n, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, (const bf16 *)gate, (const bf16 *)up, n, alpha, limit);
    CUDA_CHECK_LAST();
}

static void cu_swiglu_clamped_backward(backend *be, void *dgate, void *dup, const void *dout, const void *gate,
                                       const void *up, size_t n, float alpha, float limit) {
    if (n == 0) return;
    swiglu_clamped_backward_kernel<<<grid_for(be, n, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)dgate, (bf16 *)dup, (const bf16 *)dout, (const bf16 *)gate, (const bf16 *)up, n, alpha, limit);
    CUDA_CHECK_LAST();
}

void cuda_swiglu_clamped_install(backend *be) {
    be->swiglu_clamped_forward = cu_swiglu_clamped_forward;
    be->swiglu_clamped_backward = cu_swiglu_clamped_backward;
}
