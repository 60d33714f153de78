// kernels/cuda/mxfp4.cu — gpt-oss's frozen MXFP4 experts on the GPU: a dequantise kernel (one
// thread per packed byte: two FP4 codes, the block's E8M0 scale read once per byte) into a bf16
// (OC, IC) workspace the caller owns; the model then runs the cuBLASLt linear of linear.cu over
// it (model/moe/experts.c).  A fused dequantise-GEMM is a later lab, as for NF4.
#include "common.cuh"
#include "../mxfp4_format.h"

// code · 2^ex exactly, as the host's ldexpf (kernels/mxfp4_format.c) gives it for every E8M0
// scale (ex = scale − 127 in [−127, 128]): two products by normal powers of two, 2^h and
// 2^(ex − h) with h = ex/2 rounded down.  The first is exact (|code · 2^h| stays normal); the
// second rounds the exact result once, which for a code of two significant bits is the result
// itself when representable (down to f32's subnormals: the smallest is 0.5 · 2^−127), and ±inf
// past FLT_MAX — ldexpf's answers, without relying on the device library's ldexpf.
__device__ __forceinline__ float mxfp4_scaled(float code, int ex) {
    int h = ex >> 1;   // floor(ex / 2): h, ex − h in [−64, 64]
    float p = __int_as_float((h + 127) << 23), q = __int_as_float((ex - h + 127) << 23);
    return __fmul_rn(__fmul_rn(code, p), q);
}

// FP4 E2M1's 16 values travel as a kernel parameter (64 bytes, in the constant bank).
struct fp4_map {
    float v[16];
};

static fp4_map fp4_map_make() {
    fp4_map m;
    for (int i = 0; i < 16; i++) m.v[i] = mxfp4_code(i);
    return m;
}

// out: bf16 (OC·IC) row-major; bytes = OC·IC/2, byte j holds elements 2j (low nibble), 2j + 1.
// A block is 16 bytes, so byte j's scale is scales[j / 16] (rows are whole blocks).
__global__ void mxfp4_dequantize_kernel(bf16 *out, const uint8_t *blocks, const uint8_t *scales, size_t bytes,
                                        fp4_map map) {
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < bytes; j += (size_t)gridDim.x * blockDim.x) {
        int ex = (int)scales[j / (MXFP4_BLOCK / 2)] - 127;
        uint8_t b = blocks[j];
        __nv_bfloat162 two;
        two.x = __float2bfloat16_rn(mxfp4_scaled(map.v[b & 15], ex));
        two.y = __float2bfloat16_rn(mxfp4_scaled(map.v[b >> 4], ex));
        reinterpret_cast<__nv_bfloat162 *>(out)[j] = two;
    }
}

static void cu_mxfp4_dequantize(backend *be, void *out, const mxfp4_tensor *w, int OC, int IC) {
    if (OC <= 0 || IC <= 0) return;
    if (IC % MXFP4_BLOCK) {
        fprintf(stderr, "quarry: mxfp4_dequantize: IC %d is not a multiple of the %d-value block\n", IC, MXFP4_BLOCK);
        exit(1);
    }
    size_t bytes = (size_t)OC * IC / 2;
    mxfp4_dequantize_kernel<<<grid_for(be, bytes, 256), 256, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, w->blocks, w->scales, bytes, fp4_map_make());
    CUDA_CHECK_LAST();
}

void cuda_mxfp4_install(backend *be) { be->mxfp4_dequantize = cu_mxfp4_dequantize; }
