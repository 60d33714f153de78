// kernels/cuda/moe.cu — the mixture-of-experts ops of backend.h: the router (softmax + top-k, its
// backward, the load-balancing statistics) and the dispatch (permute to expert-grouped rows, the
// weighted combine back, and their backwards).  bf16 storage, f32 math; every sum has one fixed
// order (no float atomics), so the same inputs give the same bits for any schedule.  E ≤ 256
// experts and top-k ≤ 8 (Qwen3-MoE 128/8, Mixtral 8/2, gpt-oss 32 or 128/4).
//
// Predicted cost on an H100 (memory-bound: bytes moved / ~3.3 TB/s; NOT measured — no GPU was
// available when this was written).  Shape: Qwen3-30B-A3B, N = 8192 token rows, C = 2048,
// E = 128, k = 8, so M = N·k = 65536 routed rows.
//   router_forward    reads logits N·E·2, writes probs N·E·4 + idx/weights N·k·8: 6.8 MB ≈ 2 µs;
//                     the k rounds of 5 dependent shuffle pairs per warp make it latency-bound:
//                     ~5–10 µs predicted.
//   router_backward   reads probs N·E·4 + idx/weights/dweights N·k·12, writes dlogits N·E·2:
//                     7.1 MB ≈ 2 µs (launch-bound: ~5 µs).
//   router_stats      reads probs N·E·4 + idx N·k·4 + mask N·4: 4.5 MB ≈ 1.4 µs; two launches
//                     (per-block partials, 1 MB; then one block per expert): ~10 µs predicted.
//   permute           reads x M·C·2 (each row k times; 256 MB worst case, 32 MB if L2 keeps x),
//                     writes M·C·2 = 256 MB: 290–540 MB ≈ 90–160 µs.
//   permute_backward  reads dout M·C·2 = 256 MB (whole 4 KB rows, gathered), writes dx N·C·2
//                     = 32 MB (+ reads 32 MB when accumulating): 290–320 MB ≈ 90–100 µs.
//   unpermute         the same gather with the weights: ≈ 90 µs.
//   unpermute_backward reads eo M·C·2 = 256 MB and dy (32–256 MB as L2 allows), writes deo
//                     256 MB: 540–770 MB ≈ 165–235 µs.
// For scale: the experts' SwiGLU GEMMs of that step are 6.2e11 FLOP ≈ 0.9 ms at ~700 TFLOP/s,
// so the dispatch ops are ~10–25 % of the MoE block's forward+backward time.  Mixtral-8x7B
// (C = 4096, E = 8, k = 2, N = 8192, M = 16384): permute ≈ 268 MB ≈ 80 µs.
#include "common.cuh"

#define MOE_MAX_E 256
#define MOE_MAX_K 8
#define MOE_SLOTS (MOE_MAX_E / 32)  // experts per lane when a warp holds one router row
#define MOE_ROW_THREADS 256          // warp-per-row kernels: 8 rows per block
#define MOE_ROWS_PER_BLOCK (MOE_ROW_THREADS / 32)
#define MOE_COPY_THREADS 256
#define MOE_STATS_SUM_THREADS 128

static void moe_check_router(const char *op, int E, int k) {
    if (E < 1 || E > MOE_MAX_E || k < 1 || k > MOE_MAX_K || k > E) {
        fprintf(stderr, "quarry: %s: %d experts, top-%d is not supported by the CUDA kernels (need 1 <= k <= 8, k <= E <= 256)\n",
                op, E, k);
        exit(1);
    }
}

static unsigned moe_row_blocks(int rows) { return (unsigned)((rows + MOE_ROWS_PER_BLOCK - 1) / MOE_ROWS_PER_BLOCK); }

// One warp per row; lane l holds experts l, l + 32, ... (slot i: expert l + 32 i).
// probs = softmax(logits) (the max and sum as fixed butterflies), then k rounds of a warp argmax
// over the experts not yet taken: larger prob wins, equal probs go to the lower index (inside a
// lane the slots run in increasing index with a strict >, across lanes the comparison says so),
// which every lane reaches identically.  Lane j keeps the j-th choice; the weights' sum runs in j
// order.  Indices cross the shuffle as floats (exact below 2^24; the CPU emulation shuffles floats).
__global__ void moe_router_forward_kernel(int32_t *idx, float *weights, float *probs, const bf16 *logits, int N, int E,
                                          int k, int renorm) {
    int row = blockIdx.x * MOE_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;  // the whole warp: its shuffles stay full
    const bf16 *lr = logits + (size_t)row * E;
    float *pr = probs + (size_t)row * E;
    float p[MOE_SLOTS];
    float m = -INFINITY;
#pragma unroll
    for (int i = 0; i < MOE_SLOTS; i++) {
        int e = lane + 32 * i;
        p[i] = e < E ? __bfloat162float(lr[e]) : -INFINITY;
        m = fmaxf(m, p[i]);
    }
    m = warp_max(m);
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < MOE_SLOTS; i++) {
        int e = lane + 32 * i;
        p[i] = e < E ? expf(p[i] - m) : 0.0f;
        s += p[i];
    }
    float inv = 1.0f / warp_sum(s);
#pragma unroll
    for (int i = 0; i < MOE_SLOTS; i++) {
        int e = lane + 32 * i;
        if (e < E) {
            p[i] *= inv;
            pr[e] = p[i];
        }
    }
    unsigned taken = 0;
    float wsum = 0.0f, my_v = 0.0f;
    int my_i = 0;
    for (int j = 0; j < k; j++) {
        float bv = -INFINITY;
        int bi = MOE_MAX_E;
#pragma unroll
        for (int i = 0; i < MOE_SLOTS; i++) {
            int e = lane + 32 * i;
            if (e < E && !((taken >> i) & 1u) && p[i] > bv) {
                bv = p[i];
                bi = e;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = (int)__shfl_xor_sync(0xffffffffu, (float)bi, o);
            if (ov > bv || (ov == bv && oi < bi)) {
                bv = ov;
                bi = oi;
            }
        }
        if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
        if (lane == j) {
            my_v = bv;
            my_i = bi;
        }
        wsum += bv;
    }
    if (lane < k) {
        idx[(size_t)row * k + lane] = my_i;
        weights[(size_t)row * k + lane] = renorm ? my_v / wsum : my_v;
    }
}

// One warp per row.  The gradient reaching the probs: g[e] = dprob[e] (rows with mask[n] != 0;
// mask NULL: every row) + (for e = idx[j]) the
// weights' part, dweights[j] without renormalisation, (dweights[j] − Σ_l dweights[l]·weights[l]) / S
// with it (S = Σ_l probs[idx[l]], l in order); then the softmax: dlogits = p · (g − Σ_e g·p).
__global__ void moe_router_backward_kernel(bf16 *dlogits, const float *dweights, const float *dprob,
                                           const int32_t *mask, const float *probs, const int32_t *idx, const float *weights, int N, int E,
                                           int k, int renorm) {
    int row = blockIdx.x * MOE_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *pr = probs + (size_t)row * E, *dw = dweights + (size_t)row * k, *w = weights + (size_t)row * k;
    const int32_t *ir = idx + (size_t)row * k;
    if (mask && !mask[row]) dprob = NULL;  // padding: the load-balancing term skips it
    float S = 0.0f, dot_w = 0.0f;
    if (renorm)
        for (int j = 0; j < k; j++) {
            S += pr[ir[j]];
            dot_w += dw[j] * w[j];
        }
    float p[MOE_SLOTS], g[MOE_SLOTS];
#pragma unroll
    for (int i = 0; i < MOE_SLOTS; i++) {
        int e = lane + 32 * i;
        p[i] = e < E ? pr[e] : 0.0f;
        g[i] = e < E && dprob ? dprob[e] : 0.0f;
    }
    for (int j = 0; j < k; j++) {
        int e = ir[j];
        float gj = renorm ? (dw[j] - dot_w) / S : dw[j];
#pragma unroll
        for (int i = 0; i < MOE_SLOTS; i++)
            if (e == lane + 32 * i) g[i] += gj;
    }
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < MOE_SLOTS; i++) dot += g[i] * p[i];
    dot = warp_sum(dot);
    bf16 *dl = dlogits + (size_t)row * E;
#pragma unroll
    for (int i = 0; i < MOE_SLOTS; i++) {
        int e = lane + 32 * i;
        if (e < E) dl[e] = __float2bfloat16_rn(p[i] * (g[i] - dot));
    }
}

// Block b sums rows [b·rows_per_block, ...) of the unmasked rows, thread e owning expert e (rows
// in increasing order), into partial[b, e] (prob sums) and partial[nparts + b, e] (counts).
__global__ void moe_router_stats_partial_kernel(float *partial, const float *probs, const int32_t *idx,
                                                const int32_t *mask, int N, int E, int k, int rows_per_block) {
    int e = threadIdx.x;
    if (e >= E) return;
    int r0 = blockIdx.x * rows_per_block, r1 = min(N, r0 + rows_per_block);
    float ps = 0.0f, cnt = 0.0f;
    for (int n = r0; n < r1; n++) {
        if (mask && !mask[n]) continue;
        ps += probs[(size_t)n * E + e];
        for (int j = 0; j < k; j++) cnt += idx[(size_t)n * k + j] == e ? 1.0f : 0.0f;
    }
    partial[(size_t)blockIdx.x * E + e] = ps;
    partial[(size_t)(gridDim.x + blockIdx.x) * E + e] = cnt;
}

// Block e: prob_sum[e] += Σ_b partial[b, e], count[e] += Σ_b partial[nparts + b, e], each thread
// summing b ≡ t (mod blockDim) in increasing order, then the fixed tree of block_sum.
__global__ void moe_router_stats_sum_kernel(float *prob_sum, float *count, const float *partial, int nparts, int E) {
    __shared__ float red[32];
    int e = blockIdx.x;
    float ps = 0.0f, cnt = 0.0f;
    for (int b = threadIdx.x; b < nparts; b += blockDim.x) {
        ps += partial[(size_t)b * E + e];
        cnt += partial[(size_t)(nparts + b) * E + e];
    }
    ps = block_sum(ps, red);
    cnt = block_sum(cnt, red);
    if (threadIdx.x == 0) {
        prob_sum[e] += ps;
        count[e] += cnt;
    }
}

// out[i,:] = x[src[i] / k, :], as 16-byte words when C allows.  One thread per word.
__global__ void moe_permute_kernel(bf16 *out, const bf16 *x, const int32_t *src, int M, int k, int C, int vec) {
    int per_row = vec ? C / 8 : C;
    size_t total = (size_t)M * per_row;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        size_t i = t / per_row, w = t % per_row;
        const bf16 *xr = x + (size_t)(src[i] / k) * C;
        bf16 *orow = out + i * (size_t)C;
        if (vec)
            reinterpret_cast<uint4 *>(orow)[w] = reinterpret_cast<const uint4 *>(xr)[w];
        else
            orow[w] = xr[w];
    }
}

// The gather-sum both the combine and the dispatch's backward are:
//   out[n,:] = (accumulate ? out[n,:] : 0) + Σ_j scale_j · rows[pos[n·k + j], :]
// with scale_j = w[n·k + j] (w NULL: 1), added left to right (j in order) in f32.  One thread per output word of 8
// columns (or 1 column without vec), so each sum has one order and there is nothing to race.
__global__ void moe_gather_sum_kernel(bf16 *out, const bf16 *rows, const int32_t *pos, const float *w, int N, int k,
                                      int C, int accumulate, int vec) {
    int per_row = vec ? C / 8 : C;
    size_t total = (size_t)N * per_row;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        size_t n = t / per_row, wd = t % per_row;
        bf16 *orow = out + n * (size_t)C;
        if (vec) {
            float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, f[8];
            if (accumulate) bf16x8_to_f32(reinterpret_cast<const uint4 *>(orow)[wd], acc);
            for (int j = 0; j < k; j++) {
                size_t a = n * k + j;
                float s = w ? w[a] : 1.0f;
                bf16x8_to_f32(reinterpret_cast<const uint4 *>(rows + (size_t)pos[a] * C)[wd], f);
#pragma unroll
                for (int q = 0; q < 8; q++) acc[q] += s * f[q];
            }
            reinterpret_cast<uint4 *>(orow)[wd] = f32_to_bf16x8(acc);
        } else {
            float acc = accumulate ? __bfloat162float(orow[wd]) : 0.0f;
            for (int j = 0; j < k; j++) {
                size_t a = n * k + j;
                acc += (w ? w[a] : 1.0f) * __bfloat162float(rows[(size_t)pos[a] * C + wd]);
            }
            orow[wd] = __float2bfloat16_rn(acc);
        }
    }
}

// One warp per assignment a (row n = a / k, permuted row p = pos[a]):
//   deo[p,:] = weights[a] · dy[n,:];  dweights[a] = Σ_c dy[n,c] · eo[p,c]
// (each lane its fixed columns in increasing order, then the butterfly).  Each element of eo is
// read by the thread that then writes that element of deo, so deo may alias eo.
__global__ void moe_unpermute_backward_kernel(bf16 *deo, float *dweights, const bf16 *dy, const bf16 *eo,
                                              const float *weights, const int32_t *pos, int M, int k, int C,
                                              int vec) {
    int a = blockIdx.x * MOE_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (a >= M) return;
    size_t p = (size_t)pos[a];
    const bf16 *dyr = dy + (size_t)(a / k) * C, *er = eo + p * C;
    bf16 *dr = deo + p * C;
    float wa = weights[a], dot = 0.0f;
    if (vec) {
        for (int c = lane * 8; c < C; c += 256) {
            float g[8], e[8];
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(dyr + c), g);
            bf16x8_to_f32(*reinterpret_cast<const uint4 *>(er + c), e);
#pragma unroll
            for (int q = 0; q < 8; q++) {
                dot += g[q] * e[q];
                g[q] *= wa;
            }
            *reinterpret_cast<uint4 *>(dr + c) = f32_to_bf16x8(g);
        }
    } else {
        for (int c = lane; c < C; c += 32) {
            float g = __bfloat162float(dyr[c]);
            dot += g * __bfloat162float(er[c]);
            dr[c] = __float2bfloat16_rn(wa * g);
        }
    }
    dot = warp_sum(dot);
    if (lane == 0) dweights[a] = dot;
}

static void cu_moe_router_forward(backend *be, int32_t *idx, float *weights, float *probs, const void *logits, int N,
                                  int E, int k, int renorm) {
    if (N <= 0) return;
    moe_check_router("moe_router_forward", E, k);
    moe_router_forward_kernel<<<moe_row_blocks(N), MOE_ROW_THREADS, 0, cuda_state_of(be)->stream>>>(
        idx, weights, probs, (const bf16 *)logits, N, E, k, renorm);
    CUDA_CHECK_LAST();
}

static void cu_moe_router_backward(backend *be, void *dlogits, const float *dweights, const float *dprob,
                                   const int32_t *mask, const float *probs, const int32_t *idx, const float *weights, int N, int E, int k,
                                   int renorm) {
    if (N <= 0) return;
    moe_check_router("moe_router_backward", E, k);
    moe_router_backward_kernel<<<moe_row_blocks(N), MOE_ROW_THREADS, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)dlogits, dweights, dprob, mask, probs, idx, weights, N, E, k, renorm);
    CUDA_CHECK_LAST();
}

static void cu_moe_router_stats(backend *be, float *prob_sum, float *count, const float *probs, const int32_t *idx,
                                const int32_t *mask, int N, int E, int k) {
    if (N <= 0) return;
    moe_check_router("moe_router_stats", E, k);
    cuda_state *s = cuda_state_of(be);
    // Many short row ranges (8 per SM) keep the per-thread row loops short; the second pass is one
    // block per expert, so neither pass walks thousands of dependent adds.
    int blocks = s->props.multiProcessorCount * 8;
    if (blocks > N) blocks = N;
    int rows_per_block = (N + blocks - 1) / blocks;
    blocks = (N + rows_per_block - 1) / rows_per_block;
    float *partial = (float *)cuda_scratch(be, (size_t)2 * blocks * E * sizeof(float));
    int threads = (E + 31) / 32 * 32;
    moe_router_stats_partial_kernel<<<blocks, threads, 0, s->stream>>>(partial, probs, idx, mask, N, E, k,
                                                                       rows_per_block);
    CUDA_CHECK_LAST();
    moe_router_stats_sum_kernel<<<E, MOE_STATS_SUM_THREADS, 0, s->stream>>>(prob_sum, count, partial, blocks, E);
    CUDA_CHECK_LAST();
}

static void cu_moe_permute(backend *be, void *out, const void *x, const int32_t *src, int M, int k, int C) {
    if (M <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && aligned16(out) && aligned16(x);
    size_t work = (size_t)M * (vec ? C / 8 : C);
    moe_permute_kernel<<<grid_for(be, work, MOE_COPY_THREADS), MOE_COPY_THREADS, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, (const bf16 *)x, src, M, k, C, vec);
    CUDA_CHECK_LAST();
}

static void moe_gather_sum(backend *be, void *out, const void *rows, const int32_t *pos, const float *w, int N, int k,
                           int C, int accumulate) {
    if (N <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && aligned16(out) && aligned16(rows);
    size_t work = (size_t)N * (vec ? C / 8 : C);
    moe_gather_sum_kernel<<<grid_for(be, work, MOE_COPY_THREADS), MOE_COPY_THREADS, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, (const bf16 *)rows, pos, w, N, k, C, accumulate, vec);
    CUDA_CHECK_LAST();
}

static void cu_moe_permute_backward(backend *be, void *dx, const void *dout, const int32_t *pos, int N, int k, int C,
                                    int accumulate) {
    moe_gather_sum(be, dx, dout, pos, NULL, N, k, C, accumulate);
}

static void cu_moe_unpermute(backend *be, void *y, const void *eo, const float *weights, const int32_t *pos, int N,
                             int k, int C) {
    moe_gather_sum(be, y, eo, pos, weights, N, k, C, 0);
}

static void cu_moe_unpermute_backward(backend *be, void *deo, float *dweights, const void *dy, const void *eo,
                                      const float *weights, const int32_t *pos, int N, int k, int C) {
    int M = N * k;
    if (M <= 0 || C <= 0) return;
    int vec = C % 8 == 0 && aligned16(deo) && aligned16(dy) && aligned16(eo);
    moe_unpermute_backward_kernel<<<moe_row_blocks(M), MOE_ROW_THREADS, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)deo, dweights, (const bf16 *)dy, (const bf16 *)eo, weights, pos, M, k, C, vec);
    CUDA_CHECK_LAST();
}

void cuda_moe_install(backend *be) {
    be->moe_router_forward = cu_moe_router_forward;
    be->moe_router_backward = cu_moe_router_backward;
    be->moe_router_stats = cu_moe_router_stats;
    be->moe_permute = cu_moe_permute;
    be->moe_permute_backward = cu_moe_permute_backward;
    be->moe_unpermute = cu_moe_unpermute;
    be->moe_unpermute_backward = cu_moe_unpermute_backward;
}
