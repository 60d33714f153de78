// kernels/cuda/nf4.cu — QLoRA's frozen NF4 weights on the GPU: a dequantise kernel (one thread
// per packed byte, the block scale decoded in place, double quantisation included) into a bf16
// workspace the caller owns, then the cuBLASLt linear of linear.cu over it.  A fused
// dequantise-GEMM is a later lab (dev/cuda/); this version is the reference it must beat.
#include "common.cuh"
#include "../nf4_format.h"

// The two code maps travel as a kernel parameter (1088 bytes, in the constant bank).
struct nf4_maps {
    float nf4[16];
    float dyn[256];
};

static nf4_maps nf4_maps_make() {
    nf4_maps m;
    for (int i = 0; i < 16; i++) m.nf4[i] = nf4_code(i);
    for (int i = 0; i < 256; i++) m.dyn[i] = nf4_dynamic_code(i);
    return m;
}

// out: bf16 (n).  The scale is dyn·nested + offset with each step rounded (no FMA), and each
// weight the f32 product code·scale rounded once to bf16: bitsandbytes' bits.
__global__ void nf4_dequantize_kernel(bf16 *out, const uint8_t *packed, const float *absmax,
                                      const uint8_t *qabsmax, const float *nested, float offset,
                                      size_t n, nf4_maps maps) {
    size_t bytes = (n + 1) / 2;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < bytes; j += (size_t)gridDim.x * blockDim.x) {
        size_t i = 2 * j, b = i / NF4_BLOCK;
        float s = qabsmax ? __fadd_rn(__fmul_rn(maps.dyn[qabsmax[b]], nested[b / NF4_NESTED_BLOCK]), offset) : absmax[b];
        uint8_t byte = packed[j];
        out[i] = __float2bfloat16_rn(__fmul_rn(maps.nf4[byte >> 4], s));
        if (i + 1 < n) out[i + 1] = __float2bfloat16_rn(__fmul_rn(maps.nf4[byte & 15], s));
    }
}

static void cu_nf4_dequantize(backend *be, void *out, const nf4_tensor *w, int OC, int IC) {
    size_t n = (size_t)OC * IC;
    if (OC <= 0 || IC <= 0) return;
    nf4_dequantize_kernel<<<grid_for(be, (n + 1) / 2, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, w->packed, w->absmax, w->qabsmax, w->nested_absmax, w->offset, n, nf4_maps_make());
    CUDA_CHECK_LAST();
}

static void need_workspace(const char *op, const void *workspace) {
    if (workspace) return;
    fprintf(stderr, "quarry: %s: the CUDA backend needs a bf16 (OC, IC) workspace to dequantise into\n", op);
    exit(1);
}

static void cu_nf4_linear_forward(backend *be, void *out, const void *inp, const nf4_tensor *w, const void *bias,
                                  int N, int IC, int OC, float scale, int accumulate, void *workspace) {
    if (N <= 0 || OC <= 0) return;
    need_workspace("nf4_linear_forward", workspace);
    cu_nf4_dequantize(be, workspace, w, OC, IC);
    be->linear_forward(be, out, inp, workspace, bias, N, IC, OC, scale, accumulate);
}

static void cu_nf4_linear_backward(backend *be, void *dinp, const void *dout, const nf4_tensor *w, int N, int IC,
                                   int OC, float scale, int accumulate, void *workspace) {
    if (N <= 0) return;
    need_workspace("nf4_linear_backward", workspace);
    cu_nf4_dequantize(be, workspace, w, OC, IC);
    be->linear_backward(be, dinp, NULL, NULL, dout, NULL, workspace, N, IC, OC, scale, accumulate);
}

void cuda_nf4_install(backend *be) {
    be->nf4_dequantize = cu_nf4_dequantize;
    be->nf4_linear_forward = cu_nf4_linear_forward;
    be->nf4_linear_backward = cu_nf4_linear_backward;
}
