// kernels/cuda/attention_fa2.cuh — device pieces the FlashAttention-2-style forward kernels share
// (attention_fa2.cu's v3/v4 and the lab's v2 in dev/cuda/attention_forward.cu): the K/V tile
// geometry of a block of 8 warps and the cp.async copy of one 64-key K/V tile; and fold_sink, the
// end of an online softmax with gpt-oss' sink (attention.cu's v1 uses it too).
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
