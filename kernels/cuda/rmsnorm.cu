// kernels/cuda/rmsnorm.cu — RMSNorm forward (one warp per row, 16-byte loads) and backward (dx per
// row; dw as per-block partial sums reduced in a fixed order, so it is deterministic).
#include "common.cuh"

#define RMS_FWD_THREADS 256
#define RMS_BWD_THREADS 256

// out = x · rstd · w,  rstd = 1/sqrt(mean(x²) + eps).  x, out: (N, C); w: (C); rstd: (N).
__global__ void rmsnorm_forward_kernel(bf16 *out, float *rstd, const bf16 *x, const bf16 *w, int N, int C,
                                       float eps, int vec) {
    int row = blockIdx.x * (RMS_FWD_THREADS / 32) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const bf16 *xr = x + (size_t)row * C;
    bf16 *outr = out + (size_t)row * C;
    float ss = 0.0f;
    if (vec) {
        for (int c = lane * 8; c < C; c += 256) {
            float f[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(xr + c), f);
#pragma unroll
            for (int j = 0; j < 8; j++) ss += f[j] * f[j];
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float f = __bfloat162float(xr[c]);
            ss += f * f;
        }
    }
    ss = warp_sum(ss);
    float r = 1.0f / sqrtf(ss / (float)C + eps);
    if (vec) {
        for (int c = lane * 8; c < C; c += 256) {
            float f[8], g[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(xr + c), f);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(w + c), g);
#pragma unroll
            for (int j = 0; j < 8; j++) f[j] = f[j] * r * g[j];
            *reinterpret_cast<uint4 *>(outr + c) = f32_to_bf16x8(f);
        }
    } else {
        for (int c = lane; c < C; c += 32)
            outr[c] = __float2bfloat16_rn(__bfloat162float(xr[c]) * r * __bfloat162float(w[c]));
    }
    if (lane == 0) rstd[row] = r;
}

// Block b takes rows [b·rows_per_block, ...).  For each row (dx may be NULL: dw only):
//   dx += r·w·g − x · r³ · (Σ_c g·w·x) / C
// and, when partial != NULL, sdw[c] += g·x·r for the columns this thread owns (a fixed set, so
// no two threads touch one sdw entry); the block's sdw goes to partial[b, :] at the end.
__global__ void rmsnorm_backward_kernel(bf16 *dx, float *partial, const bf16 *dout, const bf16 *x, const bf16 *w,
                                        const float *rstd, int N, int C, int rows_per_block, int vec) {
    extern __shared__ float sdw[];  // (C) when partial != NULL
    __shared__ float red[32];
    if (partial)
        for (int c = threadIdx.x; c < C; c += RMS_BWD_THREADS) sdw[c] = 0.0f;
    // sdw is only touched by its owner thread below, but the zeroing above uses another mapping.
    __syncthreads();
    int r0 = blockIdx.x * rows_per_block, r1 = min(N, r0 + rows_per_block);
    for (int row = r0; row < r1; row++) {
        const bf16 *xr = x + (size_t)row * C, *gr = dout + (size_t)row * C;
        float r = rstd[row];
        if (!dx) {  // dw only (uniform across the block)
            if (vec) {
                for (int c = threadIdx.x * 8; c < C; c += RMS_BWD_THREADS * 8) {
                    float xf[8], gf[8];
                    bf16x8_to_f32(*reinterpret_cast<const uint4 *>(xr + c), xf);
                    bf16x8_to_f32(*reinterpret_cast<const uint4 *>(gr + c), gf);
#pragma unroll
                    for (int j = 0; j < 8; j++) sdw[c + j] += gf[j] * xf[j] * r;
                }
            } else {
                for (int c = threadIdx.x; c < C; c += RMS_BWD_THREADS)
                    sdw[c] += __bfloat162float(gr[c]) * __bfloat162float(xr[c]) * r;
            }
            continue;
        }
        bf16 *dxr = dx + (size_t)row * C;
        float dot = 0.0f;
        if (vec) {
            for (int c = threadIdx.x * 8; c < C; c += RMS_BWD_THREADS * 8) {
                float xf[8], gf[8], wf[8];
                bf16x8_to_f32(*reinterpret_cast<const uint4 *>(xr + c), xf);
                bf16x8_to_f32(*reinterpret_cast<const uint4 *>(gr + c), gf);
                bf16x8_to_f32(*reinterpret_cast<const uint4 *>(w + c), wf);
#pragma unroll
                for (int j = 0; j < 8; j++) dot += gf[j] * wf[j] * xf[j];
            }
        } else {
            for (int c = threadIdx.x; c < C; c += RMS_BWD_THREADS)
                dot += __bfloat162float(gr[c]) * __bfloat162float(w[c]) * __bfloat162float(xr[c]);
        }
        dot = block_sum(dot, red);
        float k = r * r * r * dot / (float)C;
        if (vec) {
            for (int c = threadIdx.x * 8; c < C; c += RMS_BWD_THREADS * 8) {
                float xf[8], gf[8], wf[8], df[8];
                bf16x8_to_f32(*reinterpret_cast<const uint4 *>(xr + c), xf);
                bf16x8_to_f32(*reinterpret_cast<const uint4 *>(gr + c), gf);
                bf16x8_to_f32(*reinterpret_cast<const uint4 *>(w + c), wf);
                bf16x8_to_f32(*reinterpret_cast<const uint4 *>(dxr + c), df);
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    df[j] += r * wf[j] * gf[j] - k * xf[j];
                    if (partial) sdw[c + j] += gf[j] * xf[j] * r;
                }
                *reinterpret_cast<uint4 *>(dxr + c) = f32_to_bf16x8(df);
            }
        } else {
            for (int c = threadIdx.x; c < C; c += RMS_BWD_THREADS) {
                float xf = __bfloat162float(xr[c]), gf = __bfloat162float(gr[c]), wf = __bfloat162float(w[c]);
                dxr[c] = __float2bfloat16_rn(__bfloat162float(dxr[c]) + r * wf * gf - k * xf);
                if (partial) sdw[c] += gf * xf * r;
            }
        }
    }
    if (partial) {
        __syncthreads();
        for (int c = threadIdx.x; c < C; c += RMS_BWD_THREADS) partial[(size_t)blockIdx.x * C + c] = sdw[c];
    }
}

// dst[c] += scale · Σ_b partial[b, c], b in increasing order.
__global__ void sum_partial_rows_kernel(float *dst, const float *partial, int nparts, int C, float scale) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int b = 0; b < nparts; b++) acc += partial[(size_t)b * C + c];
    dst[c] += scale * acc;
}

static void cu_rmsnorm_forward(backend *be, void *out, float *rstd, const void *x, const void *w, int N, int C,
                               float eps) {
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && aligned16(out) && aligned16(x) && aligned16(w);
    unsigned blocks = (unsigned)((N + RMS_FWD_THREADS / 32 - 1) / (RMS_FWD_THREADS / 32));
    rmsnorm_forward_kernel<<<blocks, RMS_FWD_THREADS, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, rstd, (const bf16 *)x, (const bf16 *)w, N, C, eps, vec);
    CUDA_CHECK_LAST();
}

static void cu_rmsnorm_backward(backend *be, void *dx, float *dw, const void *dout, const void *x, const void *w,
                                const float *rstd, int N, int C) {
    if (N <= 0 || C <= 0 || (!dx && !dw)) return;
    cuda_state *s = cuda_state_of(be);
    int vec = C % 8 == 0 && aligned16(dx) && aligned16(dout) && aligned16(x) && aligned16(w);
    int blocks = s->props.multiProcessorCount * 2;
    if (blocks > N) blocks = N;
    int rows_per_block = (N + blocks - 1) / blocks;
    blocks = (N + rows_per_block - 1) / rows_per_block;
    float *partial = NULL;
    size_t smem = 0;
    if (dw) {
        partial = (float *)cuda_scratch(be, (size_t)blocks * C * sizeof(float));
        smem = (size_t)C * sizeof(float);
        if (smem > 48 * 1024) {
            if (smem > (size_t)s->props.sharedMemPerBlockOptin) {
                fprintf(stderr, "quarry: rmsnorm_backward: C = %d needs %zu bytes of shared memory, this GPU allows %zu\n",
                        C, smem, (size_t)s->props.sharedMemPerBlockOptin);
                exit(1);
            }
            CUDA_CHECK(cudaFuncSetAttribute(rmsnorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        }
    }
    rmsnorm_backward_kernel<<<blocks, RMS_BWD_THREADS, smem, s->stream>>>(
        (bf16 *)dx, partial, (const bf16 *)dout, (const bf16 *)x, (const bf16 *)w, rstd, N, C, rows_per_block, vec);
    CUDA_CHECK_LAST();
    if (dw) {
        sum_partial_rows_kernel<<<(C + 255) / 256, 256, 0, s->stream>>>(dw, partial, blocks, C, 1.0f);
        CUDA_CHECK_LAST();
    }
}

void cuda_rmsnorm_install(backend *be) {
    be->rmsnorm_forward = cu_rmsnorm_forward;
    be->rmsnorm_backward = cu_rmsnorm_backward;
}
