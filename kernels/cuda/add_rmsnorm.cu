// kernels/cuda/add_rmsnorm.cu — residual add + RMSNorm in one pass (one warp per row, 16-byte
// loads): sum = a + b rounded to bf16 and stored, then out = sum · rstd · w.  The lanes own the
// same columns and sum the squares in the same order as rmsnorm.cu's forward, so out and rstd
// are the bits rmsnorm_forward gives on the stored sum (what selective recomputation recomputes).
#include "common.cuh"

#define ADD_RMS_THREADS 256

// Each lane reads its columns of a and b before it writes them (out or sum may alias a or b).
__global__ void add_rmsnorm_forward_kernel(bf16 *sum, bf16 *out, float *rstd, const bf16 *a, const bf16 *b,
                                           const bf16 *w, int N, int C, float eps, int vec) {
    int row = blockIdx.x * (ADD_RMS_THREADS / 32) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    size_t o = (size_t)row * C;
    float ss = 0.0f;
    if (vec) {
        for (int c = lane * 8; c < C; c += 256) {
            float fa[8], fb[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(a + o + c), fa);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(b + o + c), fb);
#pragma unroll
            for (int j = 0; j < 8; j++) fa[j] += fb[j];
            uint4 s = f32_to_bf16x8(fa);
            *reinterpret_cast<uint4 *>(sum + o + c) = s;
            bf16x8_to_f32(s, fa);   // the stored (rounded) sum is what is normed
#pragma unroll
            for (int j = 0; j < 8; j++) ss += fa[j] * fa[j];
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            bf16 s = __float2bfloat16_rn(__bfloat162float(a[o + c]) + __bfloat162float(b[o + c]));
            sum[o + c] = s;
            float f = __bfloat162float(s);
            ss += f * f;
        }
    }
    ss = warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (vec) {
        for (int c = lane * 8; c < C; c += 256) {
            float f[8], g[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(sum + o + c), f);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(w + c), g);
#pragma unroll
            for (int j = 0; j < 8; j++) f[j] = f[j] * r * g[j];
            *reinterpret_cast<uint4 *>(out + o + c) = f32_to_bf16x8(f);
        }
    } else {
        for (int c = lane; c < C; c += 32)
            out[o + c] = __float2bfloat16_rn(__bfloat162float(sum[o + c]) * r * __bfloat162float(w[c]));
    }
    if (lane == 0) rstd[row] = r;
}

static void cu_add_rmsnorm_forward(backend *be, void *sum, void *out, float *rstd, const void *a, const void *b,
                                   const void *w, int N, int C, float eps) {
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && aligned16(sum) && aligned16(out) && aligned16(a) && aligned16(b) && aligned16(w);
    unsigned blocks = (unsigned)((N + ADD_RMS_THREADS / 32 - 1) / (ADD_RMS_THREADS / 32));
    add_rmsnorm_forward_kernel<<<blocks, ADD_RMS_THREADS, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)sum, (bf16 *)out, rstd, (const bf16 *)a, (const bf16 *)b, (const bf16 *)w, N, C, eps, vec);
    CUDA_CHECK_LAST();
}

void cuda_add_rmsnorm_install(backend *be) { be->add_rmsnorm_forward = cu_add_rmsnorm_forward; }
