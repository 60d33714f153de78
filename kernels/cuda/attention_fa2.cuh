// kernels/cuda/attention_fa2.cuh — device pieces the FlashAttention-2-style kernels share
// (attention_fa2.cu's forward v3/v4, and the lab's forward v2 and backward v2/v3 in
// dev/cuda/attention_forward.cu, attention_backward.cu): the K/V tile geometry of a block of 8
// warps and the cp.async copy of one 64-key K/V tile; a lane's two query rows, the block's key
// range; a warp's 16 rows in and out of shared staging; and fold_sink, the end of an online
// softmax with gpt-oss' sink (attention.cu's v1 uses it too).
// Lane l of a warp: g = l / 4 holds rows g and g + 8 of the warp's 16, t = l % 4 columns 2t, 2t+1
// of every 8-column slice (mma_ptx.cuh's m16n8 accumulator layout).
#pragma once
#include "common.cuh"
#ifndef QUARRY_EMU
#include <cuda_pipeline_primitives.h>
#endif

#define FA2_LOG2E 1.4426950408889634f
#define FA2_LN2 0.6931471805599453f

template <int HD> struct fa2_kv_cfg {
    static constexpr int WARPS = 8, THREADS = 256, BK = 64;
    static constexpr int KV_LD = HD + 8;        // bf16 K/V tile rows, padded against bank conflicts
    static constexpr int KV_TILE = BK * KV_LD;  // elements of one K (or V) tile
    static constexpr int KV_BYTES = 2 * 2 * KV_TILE * 2;  // two stages of K and V
};

// Issues the copies of a 64-key tile of K and V (KV head kvh) into one stage; rows at or past Tk
// are zero (they are never seen, but P·V must not meet NaN there).  One cp.async batch.
template <int HD>
__device__ __forceinline__ void fa2_load_kv(bf16 *Ks, bf16 *Vs, const bf16 *k, const bf16 *v, int b, int k0, int Tk,
                                            int KVH, int kvh) {
    typedef fa2_kv_cfg<HD> cfg;
    constexpr int W = HD / 8;
    for (int idx = threadIdx.x; idx < cfg::BK * W; idx += cfg::THREADS) {
        int r = idx / W, c = (idx % W) * 8;
        bf16 *dk = Ks + r * cfg::KV_LD + c, *dv = Vs + r * cfg::KV_LD + c;
        if (k0 + r < Tk) {
            size_t g = (((size_t)b * Tk + k0 + r) * KVH + kvh) * HD + c;
            __pipeline_memcpy_async(dk, k + g, 16);
            __pipeline_memcpy_async(dv, v + g, 16);
        } else {
            *reinterpret_cast<uint4 *>(dk) = make_uint4(0, 0, 0, 0);
            *reinterpret_cast<uint4 *>(dv) = make_uint4(0, 0, 0, 0);
        }
    }
    __pipeline_commit();
}

// The two query rows of the lane (r0 + g, r0 + g + 8): valid (row < Tq), position (row + off,
// off = Tk − Tq) and first visible key dst (its document's start, and with a window position −
// W + 1; 0 when not valid).  Returns the lowest dst of the valid rows, 3e38 when none (positions
// < 2^24: exact in f32).
__device__ __forceinline__ float fa2_lane_rows(bool valid[2], int pos[2], int dst[2], const int32_t *doc_start, int b,
                                               int r0, int g, int Tq, int Tk, int off, int window) {
    float lo = 3.0e38f;
#pragma unroll
    for (int x = 0; x < 2; x++) {
        int i = r0 + g + 8 * x;
        valid[x] = i < Tq;
        pos[x] = i + off;
        dst[x] = valid[x] ? doc_start[(size_t)b * Tk + pos[x]] : 0;
        if (valid[x] && window > 0) dst[x] = max(dst[x], pos[x] - window + 1);
        if (valid[x]) lo = fminf(lo, (float)dst[x]);
    }
    return lo;
}

// The keys a block of 8 warps × 16 query rows visits.  lo: each lane's lowest first visible key
// (3e38 for none); q0, BQ: the block's first query row and row count; r0: the warp's first row;
// off = Tk − Tq.  Gives the warp's key range [wlo, whi] (warp_valid: it has a row < Tq) and the
// block's 64-key tiles [kt0, kt1].  Block-wide: one barrier (range_s: 8 floats of shared memory).
struct fa2_range {
    bool warp_valid;
    int wlo, whi, kt0, kt1;
};
__device__ __forceinline__ fa2_range fa2_key_range(float lo, float *range_s, int q0, int BQ, int r0, int Tq,
                                                   int off) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    fa2_range rg;
    rg.warp_valid = r0 < Tq;
    rg.wlo = rg.warp_valid ? (int)lo : 0;
    rg.whi = rg.warp_valid ? min(Tq - 1, r0 + 15) + off : -1;
    if (lane == 0) range_s[threadIdx.x >> 5] = lo;
    __syncthreads();
    float blo = range_s[0];
    for (int w = 1; w < 8; w++) blo = fminf(blo, range_s[w]);
    rg.kt0 = (int)blo / 64;  // the block's row q0 is valid, so blo is a real position
    rg.kt1 = (min(Tq - 1, q0 + BQ - 1) + off) / 64;
    return rg;
}

// Warp-level: rows r0 .. r0 + 15 of head h of a (B·T, H·HD) bf16 tensor into 16 shared rows of
// pitch LD; rows at or past T are zero.
template <int HD, int LD>
__device__ __forceinline__ void fa2_rows_in(bf16 *dst, const bf16 *src, int b, int r0, int T, int H, int h) {
    constexpr int W = HD / 8;
    for (int idx = threadIdx.x & 31; idx < 16 * W; idx += 32) {
        int r = idx / W, c = (idx % W) * 8;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (r0 + r < T) val = *reinterpret_cast<const uint4 *>(src + (((size_t)b * T + r0 + r) * H + h) * HD + c);
        *reinterpret_cast<uint4 *>(dst + r * LD + c) = val;
    }
}

// Warp-level, the way back: 16 shared rows (pitch LD) to rows r0 .. r0 + 15 of head h of a
// (B·T, H·HD) bf16 tensor in 16-byte stores; rows at or past T are not written.
template <int HD, int LD>
__device__ __forceinline__ void fa2_rows_out(bf16 *dst, const bf16 *src, int b, int r0, int T, int H, int h) {
    constexpr int W = HD / 8;
    for (int idx = threadIdx.x & 31; idx < 16 * W; idx += 32) {
        int rr = idx / W, c = (idx % W) * 8;
        if (r0 + rr < T)
            *reinterpret_cast<uint4 *>(dst + (((size_t)b * T + r0 + rr) * H + h) * HD + c) =
                *reinterpret_cast<const uint4 *>(src + rr * LD + c);
    }
}

// A warp's 16 × HD accumulators (HD / 8 m16n8 slices) as bf16 into 16 shared rows of pitch LD,
// row g times s0 and row g + 8 times s1.
template <int HD, int LD>
__device__ __forceinline__ void fa2_frags_to_rows(bf16 *dst, const float (*o)[4], float s0, float s1) {
    const int g = (threadIdx.x & 31) >> 2, t = threadIdx.x & 3;
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        *reinterpret_cast<__nv_bfloat162 *>(dst + g * LD + n * 8 + 2 * t) =
            __floats2bfloat162_rn(o[n][0] * s0, o[n][1] * s0);
        *reinterpret_cast<__nv_bfloat162 *>(dst + (g + 8) * LD + n * 8 + 2 * t) =
            __floats2bfloat162_rn(o[n][2] * s1, o[n][3] * s1);
    }
}

// Folds a sink logit (log2 domain) into a finished online softmax (running max m, sum l, both
// log2 domain): returns the factor that rescales the accumulated P·V into the output, and sets
// the natural-log lse.  Without a sink (sink2 = −inf) it is 1/l and m + log2 l.
__device__ __forceinline__ float fold_sink(float m, float l, float sink2, float *lse_out) {
    if (sink2 == -INFINITY) {
        *lse_out = l > 0.0f ? (m + log2f(l)) * FA2_LN2 : -INFINITY;
        return l > 0.0f ? 1.0f / l : 0.0f;
    }
    float mf = fmaxf(m, sink2);             // eager_attention_forward's max over scores and sink
    float corr = exp2f(m - mf);             // 0 when no key was seen (m = −inf)
    float lf = l * corr + exp2f(sink2 - mf);
    *lse_out = (mf + log2f(lf)) * FA2_LN2;
    return corr / lf;
}
