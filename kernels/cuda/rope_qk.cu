// kernels/cuda/rope_qk.cu — RoPE of q and k in one launch, each head RMS-normed first for the
// qk-norm families (Qwen3), forward and backward.  A block walks a contiguous range of token
// rows; per row its threads compute the hd/2 angles once into shared memory (the separate op
// computes them once per head: 40× as many sincosf for Llama-3.1-8B's 32 + 8 heads), then each
// warp takes whole heads, q's and k's alike, a lane owning the pairs (i, i + hd/2) for
// i = lane, lane + 32, ...  The values are those of rmsnorm.cu + rope.cu (the same fp32 formulas,
// the normed head rounded to bf16 before its rotation as the separate ops store it); only the
// order of the sum of squares differs (lanes own other columns), so rstd may differ in its last
// bits.
#include "common.cuh"

#define ROPE_QK_THREADS 256
#define ROPE_QK_WARPS (ROPE_QK_THREADS / 32)

// cs, sn (half each) for one position: sincosf of the fp32 product, as rope.cu.
__device__ __forceinline__ void rope_qk_angles(float *cs, float *sn, int32_t pos, const float *inv_freq, int half,
                                               float scaling, float dir) {
    for (int i = threadIdx.x; i < half; i += ROPE_QK_THREADS) {
        float theta = (float)pos * inv_freq[i];
        float s, c;
        sincosf(theta, &s, &c);
        cs[i] = c * scaling;
        sn[i] = s * (scaling * dir);
    }
}

// Forward.  P: pairs per lane (half ≤ 32·P).  Rows [r0, r1) of this block; head h < Hq of a row
// is q's, the rest k's.  wq NULL: no norm (rstd_q, rstd_k unused).
template <int P>
__global__ void rope_qk_forward_kernel(bf16 *q, bf16 *k, float *rstd_q, float *rstd_k, const bf16 *q_in,
                                       const bf16 *k_in, const bf16 *wq, const bf16 *wk, const int32_t *pos,
                                       const float *inv_freq, int N, int Hq, int Hk, int hd, float scaling, float eps,
                                       int rows_per_block) {
    extern __shared__ float smem[];   // cs (half), sn (half)
    int half = hd / 2, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *cs = smem, *sn = smem + half;
    int r0 = blockIdx.x * rows_per_block, r1 = min(N, r0 + rows_per_block);
    for (int row = r0; row < r1; row++) {
        __syncthreads();   // the previous row's angles are read
        rope_qk_angles(cs, sn, pos[row], inv_freq, half, scaling, 1.0f);
        __syncthreads();
        for (int h = warp; h < Hq + Hk; h += ROPE_QK_WARPS) {
            int isq = h < Hq;
            size_t rh = isq ? (size_t)row * Hq + h : (size_t)row * Hk + (h - Hq);   // head row
            const bf16 *in = (isq ? q_in : k_in) + rh * hd, *w = isq ? wq : wk;
            bf16 *out = (isq ? q : k) + rh * hd;
            float a[P], b[P];
            float ss = 0.0f;
#pragma unroll
            for (int p = 0; p < P; p++) {
                int i = lane + 32 * p;
                a[p] = i < half ? __bfloat162float(in[i]) : 0.0f;
                b[p] = i < half ? __bfloat162float(in[i + half]) : 0.0f;
                ss += a[p] * a[p] + b[p] * b[p];
            }
            if (w) {
                ss = warp_sum(ss);
                float r = 1.0f / sqrtf(ss / (float)hd + eps);
#pragma unroll
                for (int p = 0; p < P; p++) {
                    int i = lane + 32 * p;
                    if (i < half) {   // rounded as rmsnorm_forward stores it
                        a[p] = __bfloat162float(__float2bfloat16_rn(a[p] * r * __bfloat162float(w[i])));
                        b[p] = __bfloat162float(__float2bfloat16_rn(b[p] * r * __bfloat162float(w[i + half])));
                    }
                }
                if (lane == 0) (isq ? rstd_q : rstd_k)[rh] = r;
            }
#pragma unroll
            for (int p = 0; p < P; p++) {
                int i = lane + 32 * p;
                if (i < half) {
                    out[i] = __float2bfloat16_rn(a[p] * cs[i] - b[p] * sn[i]);
                    out[i + half] = __float2bfloat16_rn(b[p] * cs[i] + a[p] * sn[i]);
                }
            }
        }
    }
}

// Backward, in place on dq, dk: g = rope by −θ (rounded to bf16, as rope_backward stores it),
// then with the norm dx = r·w·g − x·r³·(Σ g·w·x)/hd over the head (rmsnorm.cu's formula).
// partial (non-NULL when a norm weight's gradient is wanted): the block's Σ g·x·r per column,
// q's (hd) then k's (hd), at partial[blockIdx.x, 2·hd]: each warp sums its heads in registers,
// then the block adds the warps' sums in warp order (shared memory after the angles), so the
// result does not depend on scheduling.
template <int P>
__global__ void rope_qk_backward_kernel(bf16 *dq, bf16 *dk, float *partial, const bf16 *q_in, const bf16 *k_in,
                                        const bf16 *wq, const bf16 *wk, const float *rstd_q, const float *rstd_k,
                                        const int32_t *pos, const float *inv_freq, int N, int Hq, int Hk, int hd,
                                        float scaling, int rows_per_block) {
    extern __shared__ float smem[];   // cs (half), sn (half), then with partial: (warps, 2·hd)
    int half = hd / 2, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *cs = smem, *sn = smem + half;
    // This warp's Σ g·x·r over its heads: q's and k's columns i and i + half of each pair.
    float qa[P], qb[P], ka[P], kb[P];
#pragma unroll
    for (int p = 0; p < P; p++) qa[p] = qb[p] = ka[p] = kb[p] = 0.0f;
    int r0 = blockIdx.x * rows_per_block, r1 = min(N, r0 + rows_per_block);
    for (int row = r0; row < r1; row++) {
        __syncthreads();
        rope_qk_angles(cs, sn, pos[row], inv_freq, half, scaling, -1.0f);
        __syncthreads();
        for (int h = warp; h < Hq + Hk; h += ROPE_QK_WARPS) {
            int isq = h < Hq;
            size_t rh = isq ? (size_t)row * Hq + h : (size_t)row * Hk + (h - Hq);
            bf16 *g = (isq ? dq : dk) + rh * hd;
            const bf16 *w = isq ? wq : wk;
            float ga[P], gb[P];
#pragma unroll
            for (int p = 0; p < P; p++) {
                int i = lane + 32 * p;
                float a = i < half ? __bfloat162float(g[i]) : 0.0f, b = i < half ? __bfloat162float(g[i + half]) : 0.0f;
                float c = i < half ? cs[i] : 0.0f, s = i < half ? sn[i] : 0.0f;
                ga[p] = __bfloat162float(__float2bfloat16_rn(a * c - b * s));
                gb[p] = __bfloat162float(__float2bfloat16_rn(b * c + a * s));
            }
            if (!w) {
#pragma unroll
                for (int p = 0; p < P; p++) {
                    int i = lane + 32 * p;
                    if (i < half) {
                        g[i] = __float2bfloat16_rn(ga[p]);
                        g[i + half] = __float2bfloat16_rn(gb[p]);
                    }
                }
                continue;
            }
            const bf16 *x = (isq ? q_in : k_in) + rh * hd;
            float r = (isq ? rstd_q : rstd_k)[rh];
            float xa[P], xb[P], wa[P], wb[P];
            float dot = 0.0f;
#pragma unroll
            for (int p = 0; p < P; p++) {
                int i = lane + 32 * p;
                xa[p] = i < half ? __bfloat162float(x[i]) : 0.0f;
                xb[p] = i < half ? __bfloat162float(x[i + half]) : 0.0f;
                wa[p] = i < half ? __bfloat162float(w[i]) : 0.0f;
                wb[p] = i < half ? __bfloat162float(w[i + half]) : 0.0f;
                dot += ga[p] * wa[p] * xa[p] + gb[p] * wb[p] * xb[p];
            }
            dot = warp_sum(dot);
            float kk = r * r * r * dot / (float)hd;
#pragma unroll
            for (int p = 0; p < P; p++) {
                int i = lane + 32 * p;
                if (i < half) {
                    g[i] = __float2bfloat16_rn(r * wa[p] * ga[p] - kk * xa[p]);
                    g[i + half] = __float2bfloat16_rn(r * wb[p] * gb[p] - kk * xb[p]);
                }
                if (isq) {
                    qa[p] += ga[p] * xa[p] * r;
                    qb[p] += gb[p] * xb[p] * r;
                } else {
                    ka[p] += ga[p] * xa[p] * r;
                    kb[p] += gb[p] * xb[p] * r;
                }
            }
        }
    }
    if (!partial) return;
    float *sw = smem + hd;   // (warps, 2·hd), after the angles
    __syncthreads();
    float *mine = sw + (size_t)warp * 2 * hd;
#pragma unroll
    for (int p = 0; p < P; p++) {
        int i = lane + 32 * p;
        if (i < half) {
            mine[i] = qa[p];
            mine[i + half] = qb[p];
            mine[hd + i] = ka[p];
            mine[hd + i + half] = kb[p];
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < 2 * hd; c += ROPE_QK_THREADS) {
        float acc = 0.0f;
        for (int wi = 0; wi < ROPE_QK_WARPS; wi++) acc += sw[(size_t)wi * 2 * hd + c];
        partial[(size_t)blockIdx.x * 2 * hd + c] = acc;
    }
}

// dwq[c] += Σ_b partial[b, c], dwk[c] += Σ_b partial[b, hd + c], b in increasing order.
__global__ void rope_qk_dw_kernel(float *dwq, float *dwk, const float *partial, int nparts, int hd) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= 2 * hd) return;
    float *dst = c < hd ? dwq : dwk;
    if (!dst) return;
    float acc = 0.0f;
    for (int b = 0; b < nparts; b++) acc += partial[(size_t)b * 2 * hd + c];
    dst[c < hd ? c : c - hd] += acc;
}

// Pairs per lane for head_dim hd: 0 when hd is odd or above 1024 (rope.cu's and the CPU's limit).
static int pairs_per_lane(int hd) {
    int half = hd / 2;
    if (hd % 2 || half <= 0) return 0;
    for (int p = 1; p <= 16; p *= 2)
        if (half <= 32 * p) return p;
    return 0;
}

static void check_head_dim(const char *op, int hd) {
    if (pairs_per_lane(hd)) return;
    fprintf(stderr, "quarry: %s: head_dim %d is not supported (even, at most 1024)\n"
            "hint: model_options.no_fusion with MODEL_FUSE_ROPE_QK runs the separate ops\n", op, hd);
    exit(1);
}

// Blocks of ROPE_QK_THREADS over N token rows: forward up to 8 per SM (64 warps, enough loads in
// flight); backward with a norm weight's gradient 2 per SM, which bounds the partial sums.
static void rows_split(backend *be, int N, int per_sm, int *blocks, int *rows_per_block) {
    int b = cuda_state_of(be)->props.multiProcessorCount * per_sm;
    if (b > N) b = N;
    *rows_per_block = (N + b - 1) / b;
    *blocks = (N + *rows_per_block - 1) / *rows_per_block;
}

template <int P>
static void forward_launch(backend *be, int blocks, int rpb, size_t smem, bf16 *q, bf16 *k, float *rstd_q, float *rstd_k,
                           const bf16 *q_in, const bf16 *k_in, const bf16 *wq, const bf16 *wk, const int32_t *pos,
                           const rope_table *rope, int N, int Hq, int Hk, float eps) {
    rope_qk_forward_kernel<P><<<blocks, ROPE_QK_THREADS, smem, cuda_state_of(be)->stream>>>(
        q, k, rstd_q, rstd_k, q_in, k_in, wq, wk, pos, rope->inv_freq, N, Hq, Hk, rope->head_dim,
        rope->attention_scaling, eps, rpb);
    CUDA_CHECK_LAST();
}

template <int P>
static void backward_launch(backend *be, int blocks, int rpb, size_t smem, bf16 *dq, bf16 *dk, float *partial,
                            const bf16 *q_in, const bf16 *k_in, const bf16 *wq, const bf16 *wk, const float *rstd_q,
                            const float *rstd_k, const int32_t *pos, const rope_table *rope, int N, int Hq, int Hk) {
    if (smem > 48 * 1024)
        CUDA_CHECK(cudaFuncSetAttribute(rope_qk_backward_kernel<P>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    rope_qk_backward_kernel<P><<<blocks, ROPE_QK_THREADS, smem, cuda_state_of(be)->stream>>>(
        dq, dk, partial, q_in, k_in, wq, wk, rstd_q, rstd_k, pos, rope->inv_freq, N, Hq, Hk, rope->head_dim,
        rope->attention_scaling, rpb);
    CUDA_CHECK_LAST();
}

static void cu_rope_qk_forward(backend *be, void *q, void *k, float *rstd_q, float *rstd_k, const void *q_in,
                               const void *k_in, const void *wq, const void *wk, const int32_t *pos,
                               const rope_table *rope, int N, int Hq, int Hk, float eps) {
    int hd = rope->head_dim;
    if (N <= 0 || Hq + Hk <= 0) return;
    check_head_dim("rope_qk_forward", hd);
    int blocks, rpb;
    rows_split(be, N, 8, &blocks, &rpb);
    size_t smem = (size_t)hd * sizeof(float);
    bf16 *q_ = (bf16 *)q, *k_ = (bf16 *)k;
    const bf16 *qi = (const bf16 *)q_in, *ki = (const bf16 *)k_in, *wq_ = (const bf16 *)wq, *wk_ = (const bf16 *)wk;
    switch (pairs_per_lane(hd)) {
    case 1: forward_launch<1>(be, blocks, rpb, smem, q_, k_, rstd_q, rstd_k, qi, ki, wq_, wk_, pos, rope, N, Hq, Hk, eps); break;
    case 2: forward_launch<2>(be, blocks, rpb, smem, q_, k_, rstd_q, rstd_k, qi, ki, wq_, wk_, pos, rope, N, Hq, Hk, eps); break;
    case 4: forward_launch<4>(be, blocks, rpb, smem, q_, k_, rstd_q, rstd_k, qi, ki, wq_, wk_, pos, rope, N, Hq, Hk, eps); break;
    case 8: forward_launch<8>(be, blocks, rpb, smem, q_, k_, rstd_q, rstd_k, qi, ki, wq_, wk_, pos, rope, N, Hq, Hk, eps); break;
    default: forward_launch<16>(be, blocks, rpb, smem, q_, k_, rstd_q, rstd_k, qi, ki, wq_, wk_, pos, rope, N, Hq, Hk, eps); break;
    }
}

static void cu_rope_qk_backward(backend *be, void *dq, void *dk, float *dwq, float *dwk, const void *q_in,
                                const void *k_in, const void *wq, const void *wk, const float *rstd_q,
                                const float *rstd_k, const int32_t *pos, const rope_table *rope, int N, int Hq,
                                int Hk) {
    int hd = rope->head_dim;
    if (N <= 0 || Hq + Hk <= 0) return;
    check_head_dim("rope_qk_backward", hd);
    int want_dw = (wq && dwq) || (wk && dwk);
    int blocks, rpb;
    rows_split(be, N, want_dw ? 2 : 8, &blocks, &rpb);
    size_t smem = (size_t)hd * sizeof(float);
    float *partial = NULL;
    if (want_dw) {
        partial = (float *)cuda_scratch(be, (size_t)blocks * 2 * hd * sizeof(float));
        smem += (size_t)ROPE_QK_WARPS * 2 * hd * sizeof(float);   // ≤ 68 KiB at hd 1024
    }
    bf16 *dq_ = (bf16 *)dq, *dk_ = (bf16 *)dk;
    const bf16 *qi = (const bf16 *)q_in, *ki = (const bf16 *)k_in, *wq_ = (const bf16 *)wq, *wk_ = (const bf16 *)wk;
    switch (pairs_per_lane(hd)) {
    case 1: backward_launch<1>(be, blocks, rpb, smem, dq_, dk_, partial, qi, ki, wq_, wk_, rstd_q, rstd_k, pos, rope, N, Hq, Hk); break;
    case 2: backward_launch<2>(be, blocks, rpb, smem, dq_, dk_, partial, qi, ki, wq_, wk_, rstd_q, rstd_k, pos, rope, N, Hq, Hk); break;
    case 4: backward_launch<4>(be, blocks, rpb, smem, dq_, dk_, partial, qi, ki, wq_, wk_, rstd_q, rstd_k, pos, rope, N, Hq, Hk); break;
    case 8: backward_launch<8>(be, blocks, rpb, smem, dq_, dk_, partial, qi, ki, wq_, wk_, rstd_q, rstd_k, pos, rope, N, Hq, Hk); break;
    default: backward_launch<16>(be, blocks, rpb, smem, dq_, dk_, partial, qi, ki, wq_, wk_, rstd_q, rstd_k, pos, rope, N, Hq, Hk); break;
    }
    if (want_dw) {
        rope_qk_dw_kernel<<<(2 * hd + 255) / 256, 256, 0, cuda_state_of(be)->stream>>>(wq ? dwq : NULL, wk ? dwk : NULL,
                                                                                      partial, blocks, hd);
        CUDA_CHECK_LAST();
    }
}

void cuda_rope_qk_install(backend *be) {
    be->rope_qk_forward = cu_rope_qk_forward;
    be->rope_qk_backward = cu_rope_qk_backward;
}
