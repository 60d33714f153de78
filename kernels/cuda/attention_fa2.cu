// kernels/cuda/attention_fa2.cu — see attention_fa2.h.  Forward versions 3 and 4 of the kernel lab
// (dev/cuda/attention_forward.cu: their design, register counts and predicted speed are in its
// header and dev/cuda/README.md), with the production op's sliding window and sinks added: the
// window narrows each row's first visible key (dst = max(doc_start, p − W + 1)), so the block's
// key loop starts at the first tile its rows' windows reach (O(T·W) work, as v1); the sink is
// folded into each row's softmax after its keys (fold_sink), so lse carries it and v1's
// backward reads it unchanged.
#include "common.cuh"   // first: the emulator's rewrite puts emu.h before it
#include "attention_fa2.h"
#include "attention_fa2.cuh"
#include "mma_ptx.cuh"
#include "../cudnn_load.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The forward kernel when QUARRY_ATTN_KERNEL is unset: today's v1 until a GPU has measured v3 and
// v4 (scripts/gpu_check.sh's attention table; dev/cuda/README.md); then this one line flips.
#define ATTN_KERNEL_DEFAULT 1

int cuda_attention_kernel(void) {
    static int chosen = 0;   // read once per process
    if (chosen) return chosen;
    const char *e = getenv("QUARRY_ATTN_KERNEL");
    int version;
    if (!attention_kernel_parse(e, &version)) {
        fprintf(stderr, "quarry: error: QUARRY_ATTN_KERNEL=%s is not v1, v3 or v4\n"
                "hint: unset it for the default forward kernel (v%d)\n", e, ATTN_KERNEL_DEFAULT);
        exit(1);
    }
    chosen = version ? version : ATTN_KERNEL_DEFAULT;
    return chosen;
}

const char *cuda_attention_kernel_label(void) {
    switch (cuda_attention_kernel()) {
    case 3: return "quarry (forward v3)";
    case 4: return "quarry (forward v4)";
    default: return "quarry";
    }
}

// Grid: (H / hpb, ceil(Tq / (128 / hpb)), B); 256 threads = 8 warps, each owning 16 query rows of
// one head.  hpb (query heads per block) is 2 when the GQA group is even (both heads read the same
// K/V tiles), else 1; the longest (last) query tiles are launched first.  Shared memory: two
// stages of a 64-key K and V tile (cp.async double buffering); Q and the output staged through
// stage 1 before and after the key loop (v3) or a Q tile per warp (v4).  Lane l of a warp: g = l / 4 owns rows g and g + 8 of the
// warp's 16; t = l % 4 owns columns 2t, 2t+1 of every 8-column slice.
// QREG: Q fragments held in registers for the whole key loop (v3, 1 block of 8 warps per SM by
// registers), or re-read from a shared Q tile at every key tile (v4: under 128 registers, so two
// blocks, 16 warps, per SM; 4 KB more shared-memory reads per warp and tile).
template <int HD, bool QREG>
__global__ void __launch_bounds__(256, QREG ? 1 : 2)
attention_forward_fa2(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, const int32_t *doc_start,
                      int Tq, int Tk, int H, int KVH, int hpb, float scale_log2, int window, const float *sinks) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef fa2_kv_cfg<HD> cfg;
    constexpr int LD = cfg::KV_LD;  // also the row pitch of the Q / output staging
    constexpr int SUB = QREG ? 64 : 32, NT = SUB / 8;
    extern __shared__ __align__(128) unsigned char smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    bf16 *kv_s = (bf16 *)smem;
    // The warp's 16 rows of Q / output staging: in stage 1 (v3) or a Q tile of their own (v4).
    bf16 *wst = QREG ? kv_s + 2 * cfg::KV_TILE + warp * 16 * LD
                     : (bf16 *)(smem + cfg::KV_BYTES + cfg::WARPS * 4 + 124) + warp * 16 * LD;
    wst = (bf16 *)((uintptr_t)wst & ~(uintptr_t)127);
    float *range_s = (float *)(smem + cfg::KV_BYTES);

    const int wpb = cfg::WARPS / hpb, BQ = 16 * wpb;
    const int qt = gridDim.y - 1 - blockIdx.y;
    const int q0 = qt * BQ, b = blockIdx.z;
    const int h = blockIdx.x * hpb + warp / wpb, kvh = h / (H / KVH), off = Tk - Tq;
    const int r0 = q0 + (warp % wpb) * 16;
    // ldmatrix x4 row address of this lane: matrix mi = lane / 8, its row lane % 8.
    const int mi = lane >> 3, r8 = lane & 7;

    // Q → staging → A fragments (a0: rows 0-7 cols 0-7, a1: rows 8-15, a2: cols 8-15, a3: both).
    uint32_t qa[QREG ? HD / 16 : 1][4];
    {
        fa2_rows_in<HD, LD>(wst, q, b, r0, Tq, H, h);
        __syncwarp();
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++)
            if (QREG) v3_ldsm_x4(qa[QREG ? kk : 0], wst + ((mi & 1) * 8 + r8) * LD + kk * 16 + (mi >> 1) * 8);
    }

    int pos[2], dst[2];
    bool valid[2];
    const float lo = fa2_lane_rows(valid, pos, dst, doc_start, b, r0, g, Tq, Tk, off, window);
    // Its barrier also: every warp has its Q fragments before stage 1 is refilled.
    const fa2_range rg = fa2_key_range(lo, range_s, q0, BQ, r0, Tq, off);
    const bool warp_valid = rg.warp_valid;
    const int wlo = rg.wlo, whi = rg.whi, kt0 = rg.kt0, kt1 = rg.kt1;

    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this lane's partial row sums

    fa2_load_kv<HD>(kv_s, kv_s + cfg::KV_TILE, k, v, b, kt0 * cfg::BK, Tk, KVH, kvh);
    for (int tt = kt0; tt <= kt1; tt++) {
        const int k0 = tt * cfg::BK;
        const bf16 *Ks = kv_s + ((tt - kt0) & 1) * 2 * cfg::KV_TILE, *Vs = Ks + cfg::KV_TILE;
        if (tt < kt1) {
            bf16 *nk = kv_s + ((tt + 1 - kt0) & 1) * 2 * cfg::KV_TILE;
            fa2_load_kv<HD>(nk, nk + cfg::KV_TILE, k, v, b, k0 + cfg::BK, Tk, KVH, kvh);
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        // The tile in sub-tiles of SUB keys (one online-softmax step each): 64 for v3, 32 for v4,
        // whose S fragments must fit beside O in 128 registers.
#pragma unroll
        for (int sb = 0; sb < cfg::BK / SUB; sb++) {
            const int kb0 = k0 + sb * SUB;  // first key of the sub-tile
            if (!(warp_valid && kb0 <= whi && kb0 + SUB - 1 >= wlo)) continue;
            const bf16 *Kb = Ks + sb * SUB * LD, *Vb = Vs + sb * SUB * LD;
            // S (16 × SUB) = Q · Kᵀ: s[nt] is the 16 × 8 slice of keys kb0 + 8nt .. + 7.
            float s[NT][4];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                if (!QREG) v3_ldsm_x4(qa[0], wst + ((mi & 1) * 8 + r8) * LD + kk * 16 + (mi >> 1) * 8);
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    // matrices: keys 16np + 0-7 | 8-15 (mi / 2) × head dims 16kk + 0-7 | 8-15 (mi % 2)
                    uint32_t kb[4];
                    v3_ldsm_x4(kb, Kb + (np * 16 + (mi >> 1) * 8 + r8) * LD + kk * 16 + (mi & 1) * 8);
                    v3_mma(s[2 * np], qa[QREG ? kk : 0], kb[0], kb[1]);
                    v3_mma(s[2 * np + 1], qa[QREG ? kk : 0], kb[2], kb[3]);
                }
            }
            // Mask, scale (log2 units), running max over the quad that shares a row.
            float tmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int x = 0; x < 2; x++) {
                const bool full = valid[x] && dst[x] <= kb0 && kb0 + SUB - 1 <= pos[x];
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int key = kb0 + nt * 8 + 2 * t + e;
                        bool ok = full || (valid[x] && key >= dst[x] && key <= pos[x]);
                        float sv = ok ? s[nt][2 * x + e] * scale_log2 : -INFINITY;
                        s[nt][2 * x + e] = sv;
                        tmax[x] = fmaxf(tmax[x], sv);
                    }
            }
            float alpha[2], muse[2];
#pragma unroll
            for (int x = 0; x < 2; x++) {
                tmax[x] = fmaxf(tmax[x], __shfl_xor_sync(0xffffffffu, tmax[x], 1));
                tmax[x] = fmaxf(tmax[x], __shfl_xor_sync(0xffffffffu, tmax[x], 2));
                float mn = fmaxf(m[x], tmax[x]);
                muse[x] = mn == -INFINITY ? 0.0f : mn;  // nothing seen yet: every term 0
                alpha[x] = exp2f(m[x] - muse[x]);
                m[x] = mn;
                l[x] *= alpha[x];
            }
#pragma unroll
            for (int n = 0; n < HD / 8; n++) {
                o[n][0] *= alpha[0];
                o[n][1] *= alpha[0];
                o[n][2] *= alpha[1];
                o[n][3] *= alpha[1];
            }
            // P = exp2(S − m) as A fragments of P · V (16 keys per k-step: slices 2kk, 2kk+1),
            // then O += P · V with V read transposed by ldmatrix.
#pragma unroll
            for (int kk = 0; kk < NT / 2; kk++) {
                uint32_t pa[4];
#pragma unroll
                for (int hs = 0; hs < 2; hs++) {
                    float *sv = s[2 * kk + hs];
                    float e0 = exp2f(sv[0] - muse[0]), e1 = exp2f(sv[1] - muse[0]);
                    float e2 = exp2f(sv[2] - muse[1]), e3 = exp2f(sv[3] - muse[1]);
                    l[0] += e0 + e1;
                    l[1] += e2 + e3;
                    pa[2 * hs] = v3_pack(e0, e1);      // row g, keys 16kk + 8hs + 2t, +1
                    pa[2 * hs + 1] = v3_pack(e2, e3);  // row g + 8
                }
#pragma unroll
                for (int np = 0; np < HD / 16; np++) {
                    // matrices: keys 16kk + 0-7 | 8-15 (mi % 2) × head dims 16np + 0-7 | 8-15 (mi / 2)
                    uint32_t vb[4];
                    v3_ldsm_x4_t(vb, Vb + (kk * 16 + (mi & 1) * 8 + r8) * LD + np * 16 + (mi >> 1) * 8);
                    v3_mma(o[2 * np], pa, vb[0], vb[1]);
                    v3_mma(o[2 * np + 1], pa, vb[2], vb[3]);
                }
            }
        }
        __syncthreads();
    }

    if (!warp_valid) return;
    // Row sums over the quad; O / l to bf16 through the staging rows (stage 1 is free: the loop
    // ended with a barrier; v4's Q tile is the warp's own), then 16-byte stores.
    // The sink joins each row's denominator now (a logit with no value; fold_sink).
    float inv[2];
    const float sink2 = sinks ? sinks[h] * FA2_LOG2E : -INFINITY;
#pragma unroll
    for (int x = 0; x < 2; x++) {
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 1);
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 2);
        float row_lse;
        inv[x] = fold_sink(m[x], l[x], sink2, &row_lse);
        if (t == 0 && valid[x]) lse[((size_t)b * H + h) * Tq + r0 + g + 8 * x] = row_lse;
    }
    fa2_frags_to_rows<HD, LD>(wst, o, inv[0], inv[1]);
    __syncwarp();
    fa2_rows_out<HD, LD>(out, wst, b, r0, Tq, H, h);
#endif
}

template <int HD, bool QREG>
static void fa2_launch(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                       const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, float scale, int window,
                       const float *sinks) {
    typedef fa2_kv_cfg<HD> cfg;
    int hpb = (H / KVH) % 2 == 0 ? 2 : 1;
    int BQ = 16 * cfg::WARPS / hpb;
    int smem = cfg::KV_BYTES + cfg::WARPS * 4 + (QREG ? 0 : 128 + cfg::WARPS * 16 * cfg::KV_LD * 2);
    CUDA_CHECK(
        cudaFuncSetAttribute(attention_forward_fa2<HD, QREG>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 grid((unsigned)(H / hpb), (unsigned)((Tq + BQ - 1) / BQ), (unsigned)B);
    attention_forward_fa2<HD, QREG><<<grid, cfg::THREADS, smem, cuda_state_of(be)->stream>>>(
        (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, Tq, Tk, H, KVH, hpb,
        scale * FA2_LOG2E, window, sinks);
    CUDA_CHECK_LAST();
}

template <bool QREG>
static void fa2_launch_hd(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                          const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale,
                          int window, const float *sinks) {
    if (hd == 64) fa2_launch<64, QREG>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale, window, sinks);
    else fa2_launch<128, QREG>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale, window, sinks);
}

int cuda_attention_forward_fa2(backend *be, int version, void *out, float *lse, const void *q, const void *k,
                               const void *v, const int32_t *doc_start, int B, int Tq, int Tk, int n_heads,
                               int n_kv_heads, int hd, float scale, int window, const float *sinks) {
    if (cuda_state_of(be)->props.major < 8 || (hd != 64 && hd != 128)) return 0;
    if (!aligned16(out) || !aligned16(q) || !aligned16(k) || !aligned16(v)) return 0;
    if (window < 0) window = 0;
    if (version == 3)
        fa2_launch_hd<true>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, n_heads, n_kv_heads, hd, scale, window, sinks);
    else
        fa2_launch_hd<false>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, n_heads, n_kv_heads, hd, scale, window, sinks);
    return 1;
}

const void *cuda_attention_fa2_kernel(int version, int hd) {
    if (version == 3)
        return hd == 64 ? (const void *)attention_forward_fa2<64, true> : (const void *)attention_forward_fa2<128, true>;
    return hd == 64 ? (const void *)attention_forward_fa2<64, false> : (const void *)attention_forward_fa2<128, false>;
}
