// dev/cuda/attention_backward.cu — the attention backward kernel lab (llm.c's dev/cuda manner):
// the CPU backend's op as the fp32 reference, numbered versions, a check of each, a benchmark.
//
//   attention_backward [version] [--T 2048] [--Tk T] [--hd 128] [--heads 32] [--kv-heads 8]
//                      [--batch 1] [--docs 1] [--repeats 20] [--no-bench]
//
// Semantics (kernels/backend.h): dq, dk, dv overwritten from dout, the forward's out and lse, q,
// k, v; causal, GQA, documents via doc_start; bf16 tensors, f32 lse.  As tests/ops_cuda does, the
// forward's out (rounded to bf16) and lse come from the CPU backend and are given to both sides.
// Outputs are poisoned (NaN) before each run.  Bounds: for each of dq, dk, dv, ‖Δ‖/‖ref‖ ≤ 1e-2
// and max |Δ| ≤ 5e-2 · max |ref| (probabilities and dS pass through bf16 before the products).
// FLOPs counted as 2.5 × the causal forward (5 products of the same size instead of 2).
//
// Versions
//  1. the production kernels (kernels/cuda/attention.cu) through the op table: Dsum, then one
//     kernel per 64-key tile for dK/dV (looping over the query heads of its KV group, no atomics),
//     one per 64-query tile for dQ (recomputes S and dP): 29 TFLOP/s at hd 128, T 2048 on an H200.
//  2. FlashAttention-2's backward on mma.sync.m16n8k16 + ldmatrix (mma_ptx.cuh, the layouts PTX
//     documents; the emulator implements the same), deterministic, no atomics: Dsum, then a dK/dV
//     kernel (a block per 64 keys of a KV head, 4 warps × 16 keys, dK and dV in registers across
//     every query head of the group and every query tile that sees the keys; Q/dO tiles and their
//     row statistics double-buffered with cp.async; Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ in registers, Pᵀ and
//     dSᵀ packed straight into the A operands of dV += Pᵀ·dO and dK += dSᵀ·Q, with dO and Q read
//     transposed by ldmatrix.trans), then a dQ kernel (forward v3's grid: 8 warps × 16 rows, two
//     query heads of a KV group per block, K/V double-buffered; S and dP in registers, dS packed
//     into dQ += dS·K).  It executes 7 products (S and dP twice) where the FLOP count credits 5.
//     ptxas (CUDA 13, sm_90, hd 128): dK/dV 255 registers (2 blocks of 4 warps per SM), dQ 238
//     (1 block of 8 warps), no spills.
//
// Prediction for v2 (hd 128, T 2048, H 32, KVH 8, B 1; to be measured): dQ kernel 51.5 GFLOP
// of products at v3-forward-like efficiency (~200 TFLOP/s) ≈ 0.26 ms; dK/dV kernel 68.7 GFLOP,
// but its 256 blocks are one wave whose longest block (the first key tile: 32 query tiles × 4
// heads) carries twice the average work, so ≈ 0.3–0.4 ms; Dsum ≈ 0.01 ms.  Total ≈ 0.55–0.7 ms:
// 120–160 TFLOP/s on the 2.5× count (v1: 29, ~3 ms).
//  3. v2 with the dK/dV work of each key tile split over the query heads of its KV group (4 parts
//     when the group allows, else 2 or 1): grid (KVH·parts, key tiles, B) so the heaviest (first)
//     key tiles start first, each part writes fp32 partials (2 × 8 MB × parts at the shape below)
//     and a small kernel sums them in a fixed order into bf16 dK, dV: still deterministic.
//     Predicted: the dK/dV kernel's longest block shrinks 4× (32 items instead of 128, the
//     average being ~64 per slot), so the kernel runs near its average load: ≈ 0.2–0.25 ms plus
//     ~0.02 ms for the partials; total ≈ 0.45–0.55 ms, 155–190 TFLOP/s.  With MHA (group 1)
//     it equals v2; splitting the query range instead would cover that case.
//  Beyond: dQ in the same pass (FA2's atomics where determinism is off), wgmma (sm_90a).
#include "common.cuh"
#include "lab_common.cuh"
#include "attention.h"
#include "attention_fa2.cuh"
#include "mma_ptx.cuh"
#include <cuda_pipeline_primitives.h>

typedef void (*attn_bwd_fn)(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v, const int32_t *doc_start,
                            int B, int Tq, int Tk, int H, int KVH, int hd, float scale);

static void run_v1(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                   const void *q, const void *k, const void *v, const int32_t *doc_start, int B, int Tq, int Tk, int H,
                   int KVH, int hd, float scale) {
    be->attention_backward(be, dq, dk, dv, dout, out, lse, q, k, v, doc_start, 1, B, Tq, Tk, H, KVH, hd, scale, 0, NULL,
                           NULL);
}

// ---------------------------------------------------------------------------------------------
// Version 2: FlashAttention-2's backward on mma.sync + ldmatrix (mma_ptx.cuh), deterministic
// (no atomics): three kernels.
//  - Dsum[b, h, i] = Σ_d dO · O: v1's pass (attention.cu, cuda_attention_dsum).
//  - dK, dV: a block per 64 keys of one KV head, 4 warps × 16 keys.  dK and dV (16 × hd per warp)
//    stay in registers over every query head of the KV group and every query tile that can see
//    the keys; Q and dO tiles (with their rows' lse, Dsum, position and document start) are
//    double-buffered with cp.async.  In the transposed form Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ (16 keys ×
//    64 queries per warp, registers), Pᵀ and dSᵀ are packed straight into the A operands of
//    dV += Pᵀ·dO and dK += dSᵀ·Q, with dO and Q read transposed by ldmatrix.trans.
//  - dQ: a block of 8 warps × 16 query rows (two query heads of one KV group when the group is
//    even, as forward v2/v3), K/V tiles double-buffered with cp.async; S = Q·Kᵀ and dP = dO·Vᵀ
//    in registers, dS packed into the A operand of dQ += dS·K (K read transposed).
//  Q and dO fragments are re-read from shared memory per k-step (4 KB each per warp and tile).

template <int HD> struct bw_cfg {
    static constexpr int LD = HD + 8;         // bf16 tile rows (pitch 17 or 9 × 16 bytes: no ldmatrix conflicts)
    static constexpr int TILE = 64 * LD;      // elements of a 64-row tile
    // dK/dV kernel: K, V | two stages of (Q, dO) | two stages of row stats (lse2, D, pos, ds) × 64
    static constexpr int KV_SMEM = 2 * TILE * 2 + 2 * 2 * TILE * 2 + 2 * 4 * 64 * 4;
    // dQ kernel: two stages of (K, V) | per warp 16 rows of Q and of dO (8 warps) | 8 floats
    static constexpr int Q_SMEM = 2 * 2 * TILE * 2 + 2 * 8 * 16 * LD * 2 + 8 * 4;
};

// Copies rows [r0, r0 + 64) of a (rows, heads·HD) tensor (head `head`) into a 64-row tile with
// cp.async, zero rows at or past `limit`.  Does not commit.
template <int HD, int THREADS>
__device__ __forceinline__ void bw_tile_async(bf16 *dst, const bf16 *src, size_t row_base, int r0, int limit,
                                              int heads, int head) {
    constexpr int W = HD / 8;
    for (int idx = threadIdx.x; idx < 64 * W; idx += THREADS) {
        int r = idx / W, c = (idx % W) * 8;
        bf16 *d = dst + r * bw_cfg<HD>::LD + c;
        if (r0 + r < limit) __pipeline_memcpy_async(d, src + ((row_base + r0 + r) * heads + head) * HD + c, 16);
        else *reinterpret_cast<uint4 *>(d) = make_uint4(0, 0, 0, 0);
    }
}

// Grid (ceil(Tk / 64), KVH, B), 128 threads; dynamic smem KV_SMEM + 16 + 4·ceil(Tq / 64) (the
// count and list of the query tiles that can see the block's keys).
// nsplit > 1 (v3): grid (KVH·nsplit, ceil(Tk / 64), B) — the heaviest (first) key tiles first —
// and block part p of nsplit takes the group's query heads [p·group/nsplit, (p+1)·group/nsplit),
// writing fp32 partials part[p] (dK·scale then dV, each B·Tk·KVH·HD) for bw_sum_parts.
template <int HD>
__global__ void __launch_bounds__(128, 2)
bw_dkv_kernel(bf16 *dk, bf16 *dv, float *part, int nsplit, const bf16 *dout, const float *lse, const float *Dsum,
              const bf16 *q, const bf16 *k, const bf16 *v, const int32_t *doc_start, int Tq, int Tk, int H, int KVH,
              float scale, float scale_log2) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef bw_cfg<HD> cfg;
    constexpr int LD = cfg::LD;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Ks = (bf16 *)smem, *Vs = Ks + cfg::TILE;
    bf16 *st0 = Vs + cfg::TILE;  // stage s: Q at st0 + 2s·TILE, dO at st0 + (2s+1)·TILE
    float *stats0 = (float *)(smem + 6 * cfg::TILE * 2);  // stage s: lse2, D, pos, ds at + 256s
    int *n_rel_s = (int *)(smem + cfg::KV_SMEM), *tiles = n_rel_s + 4;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int mi = lane >> 3, r8 = lane & 7;
    const int k0 = (nsplit > 1 ? blockIdx.y : blockIdx.x) * 64, b = blockIdx.z;
    const int kvh = nsplit > 1 ? blockIdx.x / nsplit : blockIdx.y, sp = nsplit > 1 ? blockIdx.x % nsplit : 0;
    const int group = H / KVH, gp = group / nsplit, off = Tk - Tq, klast = min(Tk - 1, k0 + 63);
    const int kw0 = k0 + warp * 16;  // this warp's first key

    // The query tiles that can see a key of this block (any row p ≥ k0 with doc_start[p] ≤ klast).
    const int nqt = (Tq + 63) / 64;
    for (int qt = threadIdx.x; qt < nqt; qt += 128) {
        int rel = 0;
        for (int r = 0; r < 64 && !rel; r++) {
            int i = qt * 64 + r;
            if (i >= Tq) break;
            int p = i + off;
            rel = p >= k0 && doc_start[(size_t)b * Tk + p] <= klast;
        }
        tiles[qt] = rel;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int n = 0;
        for (int qt = 0; qt < nqt; qt++)
            if (tiles[qt]) tiles[n++] = qt;
        *n_rel_s = n;
    }
    // K and V of the block (cp.async, committed with the first Q/dO stage).
    bw_tile_async<HD, 128>(Ks, k, (size_t)b * Tk, k0, Tk, KVH, kvh);
    bw_tile_async<HD, 128>(Vs, v, (size_t)b * Tk, k0, Tk, KVH, kvh);
    __syncthreads();
    const int nrel = *n_rel_s, items = nrel * gp;

    auto issue = [&](int it) {  // item it: query head sp·gp + it / nrel of the group, tile tiles[it % nrel]
        const int s = it & 1, h = kvh * group + sp * gp + it / nrel, q0 = tiles[it % nrel] * 64;
        bw_tile_async<HD, 128>(st0 + 2 * s * cfg::TILE, q, (size_t)b * Tq, q0, Tq, H, h);
        bw_tile_async<HD, 128>(st0 + (2 * s + 1) * cfg::TILE, dout, (size_t)b * Tq, q0, Tq, H, h);
        __pipeline_commit();
        if (threadIdx.x < 64) {
            float *st = stats0 + 256 * s;
            int i = q0 + threadIdx.x;
            if (i < Tq) {
                size_t si = ((size_t)b * H + h) * Tq + i;
                st[threadIdx.x] = lse[si] * FA2_LOG2E;
                st[64 + threadIdx.x] = Dsum[si];
                ((int *)st)[128 + threadIdx.x] = i + off;
                ((int *)st)[192 + threadIdx.x] = doc_start[(size_t)b * Tk + i + off];
            } else {
                st[threadIdx.x] = 0.0f;
                st[64 + threadIdx.x] = 0.0f;
                ((int *)st)[128 + threadIdx.x] = -1;  // sees no key
                ((int *)st)[192 + threadIdx.x] = 0;
            }
        }
    };

    float dK[HD / 8][4], dV[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dK[n][e] = dV[n][e] = 0.0f;

    if (items > 0) {
        issue(0);
    } else {  // no query sees these keys: dK = dV = 0, but every thread's K/V copies must land
        __pipeline_commit();  // before the staging below reuses their rows
        __pipeline_wait_prior(0);
        __syncthreads();
    }
    for (int it = 0; it < items; it++) {
        const int s = it & 1, q0 = tiles[it % nrel] * 64;
        if (it + 1 < items) {
            issue(it + 1);  // the other stage was last read in iteration it−1 (ended by a barrier)
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const bf16 *Qs = st0 + 2 * s * cfg::TILE, *dOs = Qs + cfg::TILE;
        const float *lse2_s = stats0 + 256 * s, *D_s = lse2_s + 64;
        const int *pos_s = (const int *)lse2_s + 128, *ds_s = (const int *)lse2_s + 192;
        if (q0 + 63 + off >= kw0) {  // some query of the tile is at or after this warp's first key
            // Sᵀ (16 keys × 64 queries) = K·Qᵀ and dPᵀ = V·dOᵀ.
            float sT[8][4], pT[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) sT[nt][e] = pT[nt][e] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                uint32_t ka[4], va[4];
                v3_ldsm_x4(ka, Ks + (warp * 16 + (mi & 1) * 8 + r8) * LD + kk * 16 + (mi >> 1) * 8);
                v3_ldsm_x4(va, Vs + (warp * 16 + (mi & 1) * 8 + r8) * LD + kk * 16 + (mi >> 1) * 8);
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t qb[4], ob[4];
                    v3_ldsm_x4(qb, Qs + (np * 16 + (mi >> 1) * 8 + r8) * LD + kk * 16 + (mi & 1) * 8);
                    v3_ldsm_x4(ob, dOs + (np * 16 + (mi >> 1) * 8 + r8) * LD + kk * 16 + (mi & 1) * 8);
                    v3_mma(sT[2 * np], ka, qb[0], qb[1]);
                    v3_mma(sT[2 * np + 1], ka, qb[2], qb[3]);
                    v3_mma(pT[2 * np], va, ob[0], ob[1]);
                    v3_mma(pT[2 * np + 1], va, ob[2], ob[3]);
                }
            }
            // Pᵀ = exp2(Sᵀ·scale − lse2) where the query sees the key, dSᵀ = Pᵀ ∘ (dPᵀ − D); both
            // packed as A fragments (keys × 16 queries per k-step: slices 2kk, 2kk+1).
            uint32_t pa[4][4], da[4][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
#pragma unroll
                for (int x = 0; x < 2; x++) {
                    const int key = kw0 + g + 8 * x;
                    float P[2], dS[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int c = nt * 8 + 2 * t + e;
                        bool ok = key >= ds_s[c] && key <= pos_s[c];
                        P[e] = ok ? exp2f(sT[nt][2 * x + e] * scale_log2 - lse2_s[c]) : 0.0f;
                        dS[e] = P[e] * (pT[nt][2 * x + e] - D_s[c]);
                    }
                    // slice nt = 2kk + hs → register 2hs + x of k-step kk
                    pa[nt / 2][2 * (nt % 2) + x] = v3_pack(P[0], P[1]);
                    da[nt / 2][2 * (nt % 2) + x] = v3_pack(dS[0], dS[1]);
                }
            }
            // dV += Pᵀ·dO, dK += dSᵀ·Q (dO, Q: 16 queries × 16 dims per matrix pair, transposed).
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
#pragma unroll
                for (int np = 0; np < HD / 16; np++) {
                    uint32_t ob[4], qb[4];
                    v3_ldsm_x4_t(ob, dOs + (kk * 16 + (mi & 1) * 8 + r8) * LD + np * 16 + (mi >> 1) * 8);
                    v3_ldsm_x4_t(qb, Qs + (kk * 16 + (mi & 1) * 8 + r8) * LD + np * 16 + (mi >> 1) * 8);
                    v3_mma(dV[2 * np], pa[kk], ob[0], ob[1]);
                    v3_mma(dV[2 * np + 1], pa[kk], ob[2], ob[3]);
                    v3_mma(dK[2 * np], da[kk], qb[0], qb[1]);
                    v3_mma(dK[2 * np + 1], da[kk], qb[2], qb[3]);
                }
            }
        }
        __syncthreads();
    }
    if (part) {  // fp32 partials, 8-byte stores (a lane's two columns)
        const size_t n = (size_t)gridDim.z * Tk * KVH * HD;
        float *pk = part + 2 * n * sp, *pv = pk + n;
#pragma unroll
        for (int x = 0; x < 2; x++) {
            const int key = kw0 + g + 8 * x;
            if (key >= Tk) continue;
            const size_t base = (((size_t)b * Tk + key) * KVH + kvh) * HD + 2 * t;
#pragma unroll
            for (int n8 = 0; n8 < HD / 8; n8++) {
                *reinterpret_cast<float2 *>(pk + base + n8 * 8) =
                    make_float2(dK[n8][2 * x] * scale, dK[n8][2 * x + 1] * scale);
                *reinterpret_cast<float2 *>(pv + base + n8 * 8) = make_float2(dV[n8][2 * x], dV[n8][2 * x + 1]);
            }
        }
        return;
    }
    // dK·scale and dV to bf16 over this warp's own 16 rows of the K and V tiles (no other warp
    // reads them), then 16-byte stores.
    bf16 *kst = Ks + warp * 16 * LD, *vst = Vs + warp * 16 * LD;
    fa2_frags_to_rows<HD, LD>(kst, dK, scale, scale);
    fa2_frags_to_rows<HD, LD>(vst, dV, 1.0f, 1.0f);
    __syncwarp();
    fa2_rows_out<HD, LD>(dk, kst, b, kw0, Tk, KVH, kvh);
    fa2_rows_out<HD, LD>(dv, vst, b, kw0, Tk, KVH, kvh);
#endif
}

// dk, dv (bf16, n each) = Σ over the nsplit fp32 partials in a fixed order: deterministic.
__global__ void bw_sum_parts(bf16 *dk, bf16 *dv, const float *part, int nsplit, size_t n) {
    size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * 8;
    if (i >= 2 * n) return;  // n is a multiple of 8
    float f[8];
#pragma unroll
    for (int e = 0; e < 8; e++) f[e] = 0.0f;
    for (int s = 0; s < nsplit; s++) {
        const float *p = part + 2 * n * s + i;
#pragma unroll
        for (int e = 0; e < 8; e++) f[e] += p[e];
    }
    bf16 *d = i < n ? dk + i : dv + (i - n);
    *reinterpret_cast<uint4 *>(d) = f32_to_bf16x8(f);
}

// Grid (H / hpb, ceil(Tq / (128 / hpb)), B), 256 threads, dynamic smem Q_SMEM.
template <int HD>
__global__ void __launch_bounds__(256, 1)
bw_dq_kernel(bf16 *dq, const bf16 *dout, const float *lse, const float *Dsum, const bf16 *q, const bf16 *k,
             const bf16 *v, const int32_t *doc_start, int Tq, int Tk, int H, int KVH, int hpb, float scale,
             float scale_log2) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef bw_cfg<HD> cfg;
    constexpr int LD = cfg::LD;
    extern __shared__ __align__(128) unsigned char smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int mi = lane >> 3, r8 = lane & 7;
    bf16 *kv_s = (bf16 *)smem;  // stage s: K at 2s·TILE, V at (2s+1)·TILE
    bf16 *Qw = kv_s + 4 * cfg::TILE + warp * 2 * 16 * LD, *dOw = Qw + 16 * LD;
    float *range_s = (float *)(smem + cfg::Q_SMEM - 8 * 4);

    const int wpb = 8 / hpb, BQ = 16 * wpb;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BQ, b = blockIdx.z;
    const int h = blockIdx.x * hpb + warp / wpb, kvh = h / (H / KVH), off = Tk - Tq;
    const int r0 = q0 + (warp % wpb) * 16;

    fa2_rows_in<HD, LD>(Qw, q, b, r0, Tq, H, h);  // Q and dO rows of the warp
    fa2_rows_in<HD, LD>(dOw, dout, b, r0, Tq, H, h);
    __syncwarp();
    int pos[2], dst[2];
    bool valid[2];
    const float lo = fa2_lane_rows(valid, pos, dst, doc_start, b, r0, g, Tq, Tk, off, 0);
    float lse2[2], Dv[2];
#pragma unroll
    for (int x = 0; x < 2; x++) {
        size_t si = ((size_t)b * H + h) * Tq + r0 + g + 8 * x;
        lse2[x] = valid[x] ? lse[si] * FA2_LOG2E : 0.0f;
        Dv[x] = valid[x] ? Dsum[si] : 0.0f;
    }
    const fa2_range rg = fa2_key_range(lo, range_s, q0, BQ, r0, Tq, off);
    const bool warp_valid = rg.warp_valid;
    const int wlo = rg.wlo, whi = rg.whi, kt0 = rg.kt0, kt1 = rg.kt1;

    float dQ[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) dQ[n][0] = dQ[n][1] = dQ[n][2] = dQ[n][3] = 0.0f;

    bw_tile_async<HD, 256>(kv_s, k, (size_t)b * Tk, kt0 * 64, Tk, KVH, kvh);
    bw_tile_async<HD, 256>(kv_s + cfg::TILE, v, (size_t)b * Tk, kt0 * 64, Tk, KVH, kvh);
    __pipeline_commit();
    for (int kt = kt0; kt <= kt1; kt++) {
        const int k0 = kt * 64, s = (kt - kt0) & 1;
        if (kt < kt1) {
            bf16 *nk = kv_s + 2 * (1 - s) * cfg::TILE;
            bw_tile_async<HD, 256>(nk, k, (size_t)b * Tk, k0 + 64, Tk, KVH, kvh);
            bw_tile_async<HD, 256>(nk + cfg::TILE, v, (size_t)b * Tk, k0 + 64, Tk, KVH, kvh);
            __pipeline_commit();
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();
        const bf16 *Ks = kv_s + 2 * s * cfg::TILE, *Vs = Ks + cfg::TILE;
        if (warp_valid && k0 <= whi && k0 + 63 >= wlo) {
            float S[8][4], dP[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) S[nt][e] = dP[nt][e] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                uint32_t qa[4], oa[4];
                v3_ldsm_x4(qa, Qw + ((mi & 1) * 8 + r8) * LD + kk * 16 + (mi >> 1) * 8);
                v3_ldsm_x4(oa, dOw + ((mi & 1) * 8 + r8) * LD + kk * 16 + (mi >> 1) * 8);
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    uint32_t kb[4], vb[4];
                    v3_ldsm_x4(kb, Ks + (np * 16 + (mi >> 1) * 8 + r8) * LD + kk * 16 + (mi & 1) * 8);
                    v3_ldsm_x4(vb, Vs + (np * 16 + (mi >> 1) * 8 + r8) * LD + kk * 16 + (mi & 1) * 8);
                    v3_mma(S[2 * np], qa, kb[0], kb[1]);
                    v3_mma(S[2 * np + 1], qa, kb[2], kb[3]);
                    v3_mma(dP[2 * np], oa, vb[0], vb[1]);
                    v3_mma(dP[2 * np + 1], oa, vb[2], vb[3]);
                }
            }
            uint32_t da[4][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int x = 0; x < 2; x++) {
                    float dS[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int key = k0 + nt * 8 + 2 * t + e;
                        bool ok = valid[x] && key >= dst[x] && key <= pos[x];
                        float P = ok ? exp2f(S[nt][2 * x + e] * scale_log2 - lse2[x]) : 0.0f;
                        dS[e] = P * (dP[nt][2 * x + e] - Dv[x]);
                    }
                    da[nt / 2][2 * (nt % 2) + x] = v3_pack(dS[0], dS[1]);
                }
            // dQ += dS·K (K: 16 keys × 16 dims per matrix pair, transposed).
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
#pragma unroll
                for (int np = 0; np < HD / 16; np++) {
                    uint32_t kb[4];
                    v3_ldsm_x4_t(kb, Ks + (kk * 16 + (mi & 1) * 8 + r8) * LD + np * 16 + (mi >> 1) * 8);
                    v3_mma(dQ[2 * np], da[kk], kb[0], kb[1]);
                    v3_mma(dQ[2 * np + 1], da[kk], kb[2], kb[3]);
                }
        }
        __syncthreads();
    }
    if (!warp_valid) return;
    // dQ·scale to bf16 over the warp's Q rows (its own), then 16-byte stores.
    fa2_frags_to_rows<HD, LD>(Qw, dQ, scale, scale);
    __syncwarp();
    fa2_rows_out<HD, LD>(dq, Qw, b, r0, Tq, H, h);
#endif
}

template <int HD>
static void bw_launch(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                      const void *q, const void *k, const void *v, const int32_t *doc_start, int B, int Tq, int Tk,
                      int H, int KVH, float scale, int nsplit) {
    typedef bw_cfg<HD> cfg;
    cudaStream_t st = cuda_state_of(be)->stream;
    const float sl2 = scale * FA2_LOG2E;
    size_t rows = (size_t)B * Tq * H, nkv = (size_t)B * Tk * KVH * HD;
    size_t dsum_bytes = (rows * sizeof(float) + 255) & ~(size_t)255;
    unsigned char *scratch =
        (unsigned char *)cuda_scratch(be, dsum_bytes + (nsplit > 1 ? 2 * nkv * nsplit * sizeof(float) : 0));
    float *Dsum = (float *)scratch, *part = nsplit > 1 ? (float *)(scratch + dsum_bytes) : NULL;
    cuda_attention_dsum(be, Dsum, dout, out, B, Tq, H, HD);  // v1's first pass (attention.cu)
    int kv_smem = cfg::KV_SMEM + 16 + 4 * ((Tq + 63) / 64);
    if (kv_smem > 227 * 1024) {
        fprintf(stderr, "attention_backward: T %d too long for the tile list\n", Tq);
        exit(1);
    }
    CUDA_CHECK(cudaFuncSetAttribute(bw_dkv_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, kv_smem));
    unsigned ntk = (unsigned)((Tk + 63) / 64);
    dim3 gkv = nsplit > 1 ? dim3((unsigned)(KVH * nsplit), ntk, (unsigned)B) : dim3(ntk, (unsigned)KVH, (unsigned)B);
    bw_dkv_kernel<HD><<<gkv, 128, kv_smem, st>>>((bf16 *)dk, (bf16 *)dv, part, nsplit, (const bf16 *)dout, lse, Dsum,
                                                  (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, Tq, Tk,
                                                  H, KVH, scale, sl2);
    CUDA_CHECK_LAST();
    if (nsplit > 1) {
        bw_sum_parts<<<(unsigned)((2 * nkv / 8 + 255) / 256), 256, 0, st>>>((bf16 *)dk, (bf16 *)dv, part, nsplit, nkv);
        CUDA_CHECK_LAST();
    }
    int hpb = (H / KVH) % 2 == 0 ? 2 : 1, BQ = 128 / hpb;
    CUDA_CHECK(cudaFuncSetAttribute(bw_dq_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, cfg::Q_SMEM));
    dim3 gq((unsigned)(H / hpb), (unsigned)((Tq + BQ - 1) / BQ), (unsigned)B);
    bw_dq_kernel<HD><<<gq, 256, cfg::Q_SMEM, st>>>((bf16 *)dq, (const bf16 *)dout, lse, Dsum, (const bf16 *)q,
                                                    (const bf16 *)k, (const bf16 *)v, doc_start, Tq, Tk, H, KVH, hpb,
                                                    scale, sl2);
    CUDA_CHECK_LAST();
}

static void run_v2(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                   const void *q, const void *k, const void *v, const int32_t *doc_start, int B, int Tq, int Tk, int H,
                   int KVH, int hd, float scale) {
    if (hd == 64) bw_launch<64>(be, dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale, 1);
    else bw_launch<128>(be, dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale, 1);
}

// v3: v2 with each key tile's work split over the query heads of its KV group (up to 4 blocks,
// heaviest key tiles first), partials summed in a fixed order.
static void run_v3(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                   const void *q, const void *k, const void *v, const int32_t *doc_start, int B, int Tq, int Tk, int H,
                   int KVH, int hd, float scale) {
    int group = H / KVH, nsplit = group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
    if (hd == 64) bw_launch<64>(be, dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale, nsplit);
    else bw_launch<128>(be, dq, dk, dv, dout, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale, nsplit);
}

typedef lab_version<attn_bwd_fn> version;
static const version versions[] = {
    {"v1 production (kernels/cuda/attention.cu)", run_v1, NULL},
    {"v2 FA2 mma.sync, dK/dV and dQ in registers", run_v2, lab_hd_64_128},
    {"v3 = v2, dK/dV split over the group's heads", run_v3, lab_hd_64_128},
};
static const int n_versions = (int)(sizeof versions / sizeof versions[0]);

int main(int argc, char **argv) {
    const lab_shape sh = lab_parse_shape(argc, argv, "attention_backward", n_versions);
    const int only = sh.only, B = sh.B, T = sh.T, Tk = sh.Tk, hd = sh.hd, H = sh.H, KVH = sh.KVH,
              repeats = sh.repeats, bench = sh.bench;
    backend *gpu = lab_gpu(), *cpu = backend_cpu(0);
    lab_print_attention("attention_backward", gpu, sh);

    const lab_attn_inputs in = lab_attention_inputs(sh);
    std::vector<float> dout = lab_rand_bf(in.nq, 1.0f, 4);

    // CPU: the forward (its out rounded to bf16, and lse, feed both sides), then the reference.
    const lab_attn_bufs ci = lab_attention_put(cpu, in);
    void *doutc = lab_put(cpu, dout);
    float *outc = (float *)lab_alloc(cpu, in.nq * 4), *lsec = (float *)lab_alloc(cpu, in.nl * 4);
    cpu->attention_forward(cpu, outc, lsec, ci.q, ci.k, ci.v, ci.doc, 1, B, T, Tk, H, KVH, hd, in.scale, 0, NULL);
    std::vector<float> out(outc, outc + in.nq), lse(lsec, lsec + in.nl);
    for (float &x : out) x = lab_bf2f(lab_f2bf(x));
    cpu->copy_to_device(cpu, outc, out.data(), in.nq * 4);
    float *dqc = (float *)lab_alloc(cpu, in.nq * 4), *dkc = (float *)lab_alloc(cpu, in.nk * 4);
    float *dvc = (float *)lab_alloc(cpu, in.nk * 4);
    cpu->attention_backward(cpu, dqc, dkc, dvc, doutc, outc, lsec, ci.q, ci.k, ci.v, ci.doc, 1, B, T, Tk, H, KVH, hd, in.scale, 0,
                            NULL, NULL);
    cpu->synchronize(cpu);

    const lab_attn_bufs gi = lab_attention_put(gpu, in);
    void *doutg = lab_put(gpu, dout);
    void *outg = lab_put(gpu, out);
    float *lseg = (float *)lab_alloc(gpu, in.nl * 4);
    gpu->copy_to_device(gpu, lseg, lse.data(), in.nl * 4);
    void *dqg = lab_alloc(gpu, in.nq * 2), *dkg = lab_alloc(gpu, in.nk * 2), *dvg = lab_alloc(gpu, in.nk * 2);

    int failed = 0;
    std::vector<std::pair<int, double>> results;
    for (int vi = 1; vi <= n_versions; vi++) {
        if (only && vi != only) continue;
        const version &ver = versions[vi - 1];
        if (ver.supports && !ver.supports(hd)) {
            printf("%d %-44s not for hd %d\n", vi, ver.name, hd);
            continue;
        }
        cudaStream_t st = cuda_state_of(gpu)->stream;
        CUDA_CHECK(cudaMemsetAsync(dqg, 0xff, in.nq * 2, st));
        CUDA_CHECK(cudaMemsetAsync(dkg, 0xff, in.nk * 2, st));
        CUDA_CHECK(cudaMemsetAsync(dvg, 0xff, in.nk * 2, st));
        ver.fn(gpu, dqg, dkg, dvg, doutg, outg, lseg, gi.q, gi.k, gi.v, gi.doc, B, T, Tk, H, KVH, hd, in.scale);
        gpu->synchronize(gpu);
        const char *names[3] = {"dq", "dk", "dv"};
        const void *gs[3] = {dqg, dkg, dvg};
        const float *rs[3] = {dqc, dkc, dvc};
        size_t ns[3] = {in.nq, in.nk, in.nk};
        int ok = 1;
        char line[256] = "";
        for (int x = 0; x < 3; x++) {
            std::vector<float> g = lab_get_bf16(gpu, gs[x], ns[x]);
            lab_err e = lab_compare(g.data(), rs[x], ns[x]);
            double rmax = 0;
            for (size_t i = 0; i < ns[x]; i++) rmax = std::max(rmax, (double)fabsf(rs[x][i]));
            ok &= e.bad == 0 && e.rel <= 1e-2 && e.max <= 5e-2 * rmax;
            size_t len = strlen(line);
            snprintf(line + len, sizeof line - len, "%s%s rel %.2e max %.2e/%.2e (%zu non-finite)", x ? ", " : "",
                     names[x], e.rel, e.max, rmax, e.bad);
        }
        printf("%d %-44s check %s: %s\n", vi, ver.name, ok ? "ok" : "FAILED", line);
        fflush(stdout);
        if (!ok) {
            failed = 1;
            continue;
        }
        lab_bench(results, vi, gpu, bench, repeats, [&] {
            ver.fn(gpu, dqg, dkg, dvg, doutg, outg, lseg, gi.q, gi.k, gi.v, gi.doc, B, T, Tk, H, KVH, hd, in.scale);
        });
    }
    if (!results.empty()) lab_table(gpu, results, 2.5 * 4.0 * B * H * (double)T * Tk * hd / 2.0, repeats);
    printf("attention_backward: %s\n", failed ? "FAILED" : "all checked versions pass");
    for (void *x : {doutg, outg, (void *)lseg, dqg, dkg, dvg}) gpu->free(gpu, x);
    for (void *x : {doutc, (void *)outc, (void *)lsec, (void *)dqc, (void *)dkc, (void *)dvc}) cpu->free(cpu, x);
    lab_attention_free(gpu, gi);
    lab_attention_free(cpu, ci);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return failed;
}
