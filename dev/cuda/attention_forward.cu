// dev/cuda/attention_forward.cu — the attention forward kernel lab (llm.c's dev/cuda manner): a
// CPU reference (the CPU backend's op, fp32), numbered kernel versions, a check of each against
// the reference, and a benchmark with CUDA events.
//
//   attention_forward [version] [--T 2048] [--Tk T] [--hd 128] [--heads 32] [--kv-heads 8]
//                     [--batch 1] [--docs 1] [--repeats 20] [--no-bench]
//
// version 0 (default) runs every version.  --docs N splits each batch row into N documents at
// uneven boundaries (doc_start masks); --Tk > --T puts the queries at the end of the keys (a KV
// cache).  Exit status 1 when any checked version fails, 77 without a GPU.
//
// Semantics (kernels/backend.h): causal, GQA (query head h reads KV head h / (H / KVH)),
// documents via doc_start, q/k/v/out bf16 (B·T, heads·hd) rows, lse f32 (B, H, Tq), natural log.
// The check: inputs uniform bf16 (q, k in ±1.5, v in ±1); the reference is the CPU backend's op on
// the same bf16 values in fp32.  Outputs are poisoned (0xff bytes: NaN) before every run, so an
// unwritten element fails.  Bounds (probabilities pass through bf16 before P·V, the output is
// bf16): out ‖Δ‖/‖ref‖ ≤ 1e-2 and max |Δ| ≤ 3e-2 (|ref| ≤ 1: a convex combination of v);
// lse max |Δ| ≤ 1e-3 (fp32 sums of bf16 products, only the order differs).
//
// Versions
//  1. the production kernel (kernels/cuda/attention.cu) through the CUDA backend's op table: the
//     baseline.  64×64 tiles, 4 warps, S and P through shared memory, O kept in shared memory and
//     re-read/re-scaled through it for every key tile, one K/V buffer (load, barrier, compute).
//     Measured 2026-11 on an H200: 39 TFLOP/s at hd 128, T 2048 (4% of the 989 dense peak).
//  2. FlashAttention-2's structure with WMMA (mma.sync on sm_80+; no wgmma yet):
//     - a block of 8 warps; each warp owns 16 query rows of one head.  When the GQA group is even
//       a block covers 64 rows of TWO query heads of the same KV group (warps 0-3 head h, 4-7
//       head h+1), so every K/V tile brought into shared memory feeds 128 query rows; else 128
//       rows of one head.  Blocks of one KV group are adjacent in the grid (heads on grid.x) and
//       the longest (last) query tiles are launched first.
//     - Q fragments in registers for the whole key loop (loaded once).
//     - K/V tiles of 64 keys double-buffered with cp.async: tile t+1 is in flight while tile t
//       is computed; two block barriers per tile, nothing else block-wide.
//     - S = Q·Kᵀ (16 × 64 per warp) goes through a small per-warp shared buffer (4.3 KB) for the
//       online softmax, done by lane pairs (one row each, 32 columns per lane) in registers; P is
//       written as bf16 over the same buffer.  No __syncthreads in the softmax.
//     - O (16 × hd per warp, fp32) stays in accumulator fragments across the whole key loop; its
//       per-row rescale by exp(m_old − m_new) uses a row map calibrated once per warp by loading
//       a 16×16 tile of row indices into an accumulator fragment, so it is right for whatever
//       element→(row, col) mapping the hardware uses (and checkable under the emulator).
//     - causal and document tile skipping per block (key range [min doc_start, last row]) and
//       per warp (a warp whose rows cannot see a tile skips its math); masks are evaluated only
//       on tiles that cross the diagonal or a document start.
//
// Prediction for v2 (hd 128, T 2048, H 32, KVH 8, B 1, causal) — to be measured on the next GPU
// session.  Work: 4·B·H·T²·hd/2 = 34.4 GFLOP; fewest bytes: q, k, v, out once = 16 + 4 + 4 + 16 MB
// (+ 0.25 MB lse) ≈ 40 MB, 12 µs at 3.3 TB/s against 35 µs of tensor work at the 989 TFLOP/s
// peak: compute-bound.  The limit of this design is shared-memory bandwidth, not HBM: per warp
// and 64-key tile it reads K and V (2 × 16 KB of fragments), writes and reads S (2 × 4 KB) and
// writes and reads P (2 × 2 KB): ≈ 44 KB for 0.52 MFLOP, 12 FLOP/byte, while an SM does ~4096
// dense bf16 FLOP but moves 128 bytes of shared memory per clock (32 FLOP/byte needed).  Ceiling
// ≈ 12/32 of peak ≈ 370 TFLOP/s; mma.sync (not wgmma) reaches at most ~2/3 of Hopper's dense
// rate, barrier stalls at 8 warps per SM and the exp2/mask work of the softmax cost more.
// Predicted: 120–170 TFLOP/s forward (3–4× v1's 39), ~0.2–0.3 ms.  Against v1 it removes the
// per-tile O round trip through shared memory (v1 stores and reloads 16 × 128 fp32 per warp per
// tile and rescales it with scalar code: 32 KB more per warp-tile than v2), the single-buffered
// load→barrier→compute serialisation, and half the K/V global→shared traffic (128 query rows per
// K/V tile instead of 64).  ptxas (CUDA 13, sm_90): 255 registers at hd 128, 217 at hd 64, no
// spills: one block (8 warps) per SM.
//  3. FlashAttention-2's own register design, with the PTX instructions whose fragment layouts
//     PTX documents: mma.sync.m16n8k16 (bf16 → fp32) and ldmatrix(.trans).  Grid, blocks, GQA
//     pairing, cp.async double buffering and tile skipping as v2, but S (16 × 64 per warp: 8
//     m16n8 accumulators, 32 floats per lane), P and O never touch shared memory: a lane holds
//     rows g = lane/4 and g+8 and columns 2t, 2t+1 (t = lane%4) of every 8-column slice, so the
//     row max and row sums are two shuffles within the quad, the O rescale is a per-register
//     multiply, and P's bf16 pairs are packed straight into the A fragments of P·V (the m16n8
//     accumulator layout of two adjacent slices is the m16n8k16 A layout).  K comes in through
//     ldmatrix, V through ldmatrix.trans (no transposed copy).  The emulator implements ldmatrix
//     and mma.sync from the same documented layouts, so a layout slip fails the CPU check (two
//     deliberate slips were tried: both fail).  ptxas: 217 registers at hd 128 (166 at hd 64),
//     no spills, 70 KB shared: one block of 8 warps per SM.
//  4. v3 with Q re-read from a shared Q tile at every key tile (ldmatrix, 4 KB per warp-tile)
//     and the online softmax in 32-key steps, so it fits 128 registers (hd 128: 20 bytes of
//     spills; hd 64: none) and two blocks (16 warps) share an SM: more warps to hide the two
//     barriers per tile and the exp2/shuffle latency, at 12% more shared-memory reads.
//
// Predictions (hd 128, T 2048, H 32, KVH 8, B 1, causal; H100/H200; to be measured):
//  v2: 120–170 TFLOP/s (above).
//  v3: per warp and 64-key tile it reads only K and V fragments from shared memory (32 KB for
//      0.52 MFLOP: 16 FLOP/byte, a shared-memory ceiling near 50% of the dense peak) and issues
//      mma.sync, whose rate on Hopper is about 2/3 of the wgmma peak (~660 TFLOP/s); the 1024
//      exp2 per warp-tile (MUFU: 16/clock/SM) cost about a third of the MMA time and overlap it
//      only partly with 2 warps per scheduler.  Predicted 200–280 TFLOP/s (5–7× v1), 0.12–0.17 ms;
//      FlashAttention-2 reaches ~330 with the same instructions.  If v3 lands under 150, suspect
//      shared-memory bank conflicts of ldmatrix on the 272-byte K/V rows (pitch 68 words: the 8
//      row addresses of one 8×8 matrix hit 8 different 16-byte bank groups, so none expected) or
//      barrier stalls (then v4 wins).
//  v4: within ±15% of v3; ahead of v3 if v3's 8 warps per SM leave the tensor pipe idle at the
//      barriers, behind it if shared-memory bandwidth is the limit.
//  Beyond: wgmma (sm_90a) with K/V by TMA and warp specialisation (FlashAttention-3's design,
//  ~600 TFLOP/s at hd 128) is the step to the issue's goal; v3's register layout (S in the
//  accumulators, P re-packed as the A operand from registers) carries over to wgmma's RS form.
#include "common.cuh"
#include "lab_common.cuh"
#include "mma_ptx.cuh"
#include <mma.h>
#include <cuda_pipeline_primitives.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

using namespace nvcuda;

#define V2_LOG2E 1.4426950408889634f
#define V2_LN2 0.6931471805599453f

// ---------------------------------------------------------------------------------------------
// Version 2: FlashAttention-2 structure on WMMA.

template <int HD> struct v2_cfg {
    static constexpr int WARPS = 8, THREADS = 256, BK = 64;
    static constexpr int KV_LD = HD + 8;  // bf16 K/V tile rows, padded against bank conflicts
    static constexpr int KV_TILE = BK * KV_LD;  // elements of one K (or V) tile
    static constexpr int S_LD = BK + 4;   // f32 score rows in the warp buffer
    static constexpr int P_LD = BK + 8;   // bf16 probability rows, over the same buffer
    static constexpr int Q_LD = HD + 8;   // bf16 Q staging rows, over the same buffer
    static constexpr int WBUF = 16 * S_LD * 4 > 16 * Q_LD * 2 ? 16 * S_LD * 4 : 16 * Q_LD * 2;  // bytes
    static constexpr int KV_BYTES = 2 * 2 * KV_TILE * 2;  // two stages of K and V
    // K/V stages | per-warp buffers | per-warp alpha[16] and 1/l[16] | block key-range scratch
    static constexpr int SMEM = KV_BYTES + WARPS * WBUF + WARPS * 32 * 4 + WARPS * 4;
};

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> v2_frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> v2_frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> v2_frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> v2_frag_acc;

// Issues the copies of a 64-key tile of K and V (KV head kvh) into one stage; rows at or past Tk
// are zero (they are never seen, but P·V must not meet NaN there).  One cp.async batch.
template <int HD>
__device__ __forceinline__ void v2_load_kv(bf16 *Ks, bf16 *Vs, const bf16 *k, const bf16 *v, int b, int k0, int Tk,
                                           int KVH, int kvh) {
    typedef v2_cfg<HD> cfg;
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

// Grid: (H / hpb, ceil(Tq / (128 / hpb)), B); 256 threads.  hpb (query heads per block) is 1 or 2
// and divides H / KVH.
template <int HD>
__global__ void __launch_bounds__(256, 1)
attention_forward_v2(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, const int32_t *doc_start,
                     int Tq, int Tk, int H, int KVH, int hpb, float scale_log2) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef v2_cfg<HD> cfg;
    constexpr int NE = v2_frag_acc::num_elements;
    extern __shared__ __align__(128) unsigned char smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    bf16 *kv_s = (bf16 *)smem;
    unsigned char *wbuf = smem + cfg::KV_BYTES + warp * cfg::WBUF;
    float *wf = (float *)wbuf;  // S (16 × S_LD f32), O staging
    bf16 *wp = (bf16 *)wbuf;    // P (16 × P_LD bf16), Q staging (16 × Q_LD)
    float *alpha_s = (float *)(smem + cfg::KV_BYTES + cfg::WARPS * cfg::WBUF) + warp * 32;
    float *linv_s = alpha_s + 16;
    float *range_s = (float *)(smem + cfg::KV_BYTES + cfg::WARPS * cfg::WBUF + cfg::WARPS * 32 * 4);

    const int wpb = cfg::WARPS / hpb;  // warps per head: the block has 16·wpb query rows
    const int BQ = 16 * wpb;
    const int qt = gridDim.y - 1 - blockIdx.y;  // the longest query tiles first
    const int q0 = qt * BQ, b = blockIdx.z;
    const int h = blockIdx.x * hpb + warp / wpb, kvh = h / (H / KVH), off = Tk - Tq;
    const int r0 = q0 + (warp % wpb) * 16;  // this warp's first query row

    // Row map of an accumulator fragment: element e of this lane holds row rmap[e].
    int rmap[NE];
    {
        for (int idx = lane; idx < 256; idx += 32) wf[idx] = (float)(idx / 16);
        __syncwarp();
        v2_frag_acc f;
        wmma::load_matrix_sync(f, wf, 16, wmma::mem_row_major);
#pragma unroll
        for (int e = 0; e < NE; e++) rmap[e] = (int)f.x[e];
        __syncwarp();
    }
    // Q: 16 rows × HD staged through the warp buffer, then held as HD/16 fragments.
    v2_frag_a qf[HD / 16];
    {
        constexpr int W = HD / 8;
        for (int idx = lane; idx < 16 * W; idx += 32) {
            int r = idx / W, c = (idx % W) * 8;
            uint4 val = make_uint4(0, 0, 0, 0);
            if (r0 + r < Tq) val = *reinterpret_cast<const uint4 *>(q + (((size_t)b * Tq + r0 + r) * H + h) * HD + c);
            *reinterpret_cast<uint4 *>(wp + r * cfg::Q_LD + c) = val;
        }
        __syncwarp();
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) wmma::load_matrix_sync(qf[kk], wp + kk * 16, cfg::Q_LD);
        __syncwarp();
    }

    // Each lane pair owns one row of the warp's 16; half picks 32 of the 64 columns of a tile.
    const int r = lane >> 1, half = lane & 1;
    const int i = r0 + r;
    const bool row_valid = i < Tq;
    const int p = i + off;
    const int ds = row_valid ? doc_start[(size_t)b * Tk + p] : 0;
    // The warp's key range [wlo, whi] and the block's (min doc start, last row's position).
    float lo = row_valid ? (float)ds : 3.0e38f;  // positions < 2^24: exact in f32
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    const bool warp_valid = r0 < Tq;
    const int wlo = warp_valid ? (int)lo : 0;
    const int whi = warp_valid ? min(Tq - 1, r0 + 15) + off : -1;
    if (lane == 0) range_s[warp] = lo;
    __syncthreads();
    float blo = range_s[0];
    for (int w = 1; w < cfg::WARPS; w++) blo = fminf(blo, range_s[w]);
    const int kt0 = (int)blo / cfg::BK;  // row q0 is valid, so blo is a real position
    const int kt1 = (min(Tq - 1, q0 + BQ - 1) + off) / cfg::BK;

    v2_frag_acc o[HD / 16];
#pragma unroll
    for (int j = 0; j < HD / 16; j++) wmma::fill_fragment(o[j], 0.0f);
    float m = -INFINITY, l = 0.0f;

    v2_load_kv<HD>(kv_s, kv_s + cfg::KV_TILE, k, v, b, kt0 * cfg::BK, Tk, KVH, kvh);
    for (int t = kt0; t <= kt1; t++) {
        const int k0 = t * cfg::BK;
        const bf16 *Ks = kv_s + ((t - kt0) & 1) * 2 * cfg::KV_TILE, *Vs = Ks + cfg::KV_TILE;
        if (t < kt1) {
            // The other stage was last read in iteration t−1, which ended with a barrier.
            bf16 *nk = kv_s + ((t + 1 - kt0) & 1) * 2 * cfg::KV_TILE;
            v2_load_kv<HD>(nk, nk + cfg::KV_TILE, k, v, b, k0 + cfg::BK, Tk, KVH, kvh);
            __pipeline_wait_prior(1);
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();  // tile t landed for every thread's copies
        if (warp_valid && k0 <= whi && k0 + cfg::BK - 1 >= wlo) {
            // S (16 × 64) = Q · Kᵀ into the warp buffer.
#pragma unroll
            for (int j = 0; j < 4; j++) {
                v2_frag_acc acc;
                wmma::fill_fragment(acc, 0.0f);
#pragma unroll
                for (int kk = 0; kk < HD / 16; kk++) {
                    v2_frag_b_col kf;
                    wmma::load_matrix_sync(kf, Ks + j * 16 * cfg::KV_LD + kk * 16, cfg::KV_LD);
                    wmma::mma_sync(acc, qf[kk], kf, acc);
                }
                wmma::store_matrix_sync(wf + j * 16, acc, cfg::S_LD, wmma::mem_row_major);
            }
            __syncwarp();
            float s[32];
#pragma unroll
            for (int c = 0; c < 32; c++) s[c] = wf[r * cfg::S_LD + half * 32 + c];
            __syncwarp();  // every lane has its scores before P overwrites the buffer
            float tmax = -INFINITY;
            if (row_valid && ds <= k0 && k0 + cfg::BK - 1 <= p) {
#pragma unroll
                for (int c = 0; c < 32; c++) {
                    s[c] *= scale_log2;
                    tmax = fmaxf(tmax, s[c]);
                }
            } else {
#pragma unroll
                for (int c = 0; c < 32; c++) {
                    int key = k0 + half * 32 + c;
                    bool ok = row_valid && key >= ds && key <= p;
                    s[c] = ok ? s[c] * scale_log2 : -INFINITY;
                    tmax = fmaxf(tmax, s[c]);
                }
            }
            tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
            const float m_new = fmaxf(m, tmax);
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // nothing seen yet: every term 0
            const float alpha = exp2f(m - m_use);
            float rowsum = 0.0f;
            __nv_bfloat162 *prow = reinterpret_cast<__nv_bfloat162 *>(wp + r * cfg::P_LD + half * 32);
#pragma unroll
            for (int c = 0; c < 32; c += 2) {
                float e0 = exp2f(s[c] - m_use), e1 = exp2f(s[c + 1] - m_use);
                rowsum += e0 + e1;
                prow[c / 2] = __floats2bfloat162_rn(e0, e1);
            }
            rowsum += __shfl_xor_sync(0xffffffffu, rowsum, 1);
            l = l * alpha + rowsum;
            m = m_new;
            if (half == 0) alpha_s[r] = alpha;
            __syncwarp();
            // O = diag(alpha) · O + P · V.
            float a[NE];
#pragma unroll
            for (int e = 0; e < NE; e++) a[e] = alpha_s[rmap[e]];
            v2_frag_a pf[4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wmma::load_matrix_sync(pf[kk], wp + kk * 16, cfg::P_LD);
#pragma unroll
            for (int j = 0; j < HD / 16; j++) {
#pragma unroll
                for (int e = 0; e < NE; e++) o[j].x[e] *= a[e];
#pragma unroll
                for (int kk = 0; kk < 4; kk++) {
                    v2_frag_b_row vf;
                    wmma::load_matrix_sync(vf, Vs + kk * 16 * cfg::KV_LD + j * 16, cfg::KV_LD);
                    wmma::mma_sync(o[j], pf[kk], vf, o[j]);
                }
            }
            __syncwarp();  // P and alpha read before the next tile overwrites them
        }
        __syncthreads();  // every warp is done with this stage before it is refilled
    }

    if (!warp_valid) return;
    if (half == 0) {
        linv_s[r] = l > 0.0f ? 1.0f / l : 0.0f;
        if (row_valid) lse[((size_t)b * H + h) * Tq + i] = l > 0.0f ? (m + log2f(l)) * V2_LN2 : -INFINITY;
    }
    __syncwarp();
    // O / l to bf16, 64 columns at a time through the warp buffer.
#pragma unroll
    for (int cc = 0; cc < HD / 64; cc++) {
#pragma unroll
        for (int jj = 0; jj < 4; jj++)
            wmma::store_matrix_sync(wf + jj * 16, o[cc * 4 + jj], cfg::S_LD, wmma::mem_row_major);
        __syncwarp();
        for (int idx = lane; idx < 16 * 8; idx += 32) {
            int rr = idx / 8, c = (idx % 8) * 8;
            if (r0 + rr >= Tq) continue;
            float f[8];
            float sc = linv_s[rr];
#pragma unroll
            for (int t = 0; t < 8; t++) f[t] = wf[rr * cfg::S_LD + c + t] * sc;
            *reinterpret_cast<uint4 *>(out + (((size_t)b * Tq + r0 + rr) * H + h) * HD + cc * 64 + c) =
                f32_to_bf16x8(f);
        }
        __syncwarp();
    }
#endif
}

template <int HD>
static void v2_launch(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                      const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, float scale) {
    typedef v2_cfg<HD> cfg;
    int hpb = (H / KVH) % 2 == 0 ? 2 : 1;
    int BQ = 16 * cfg::WARPS / hpb;
    CUDA_CHECK(cudaFuncSetAttribute(attention_forward_v2<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, cfg::SMEM));
    dim3 grid((unsigned)(H / hpb), (unsigned)((Tq + BQ - 1) / BQ), (unsigned)B);
    attention_forward_v2<HD><<<grid, cfg::THREADS, cfg::SMEM, cuda_state_of(be)->stream>>>(
        (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, Tq, Tk, H, KVH, hpb,
        scale * V2_LOG2E);
    CUDA_CHECK_LAST();
}

// ---------------------------------------------------------------------------------------------
// Version 3: FlashAttention-2's register-resident design with mma.sync.m16n8k16 (PTX) and
// ldmatrix (mma_ptx.cuh), whose fragment layouts PTX documents (the emulator implements them from
// the same documentation, so the layout logic is checked on the CPU): S, P and O never leave
// registers.

// Grid, block and shared memory as v2 (K/V stages; Q and the output staged through stage 1
// before and after the key loop).  Lane l of a warp: g = l / 4 owns rows g and g + 8 of the
// warp's 16; t = l % 4 owns columns 2t, 2t+1 of every 8-column slice.
// QREG: Q fragments held in registers for the whole key loop (v3, 1 block of 8 warps per SM by
// registers), or re-read from a shared Q tile at every key tile (v4: under 128 registers, so two
// blocks, 16 warps, per SM; 4 KB more shared-memory reads per warp and tile).
template <int HD, bool QREG>
__global__ void __launch_bounds__(256, QREG ? 1 : 2)
attention_forward_v3(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, const int32_t *doc_start,
                     int Tq, int Tk, int H, int KVH, int hpb, float scale_log2) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef v2_cfg<HD> cfg;
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
        constexpr int W = HD / 8;
        for (int idx = lane; idx < 16 * W; idx += 32) {
            int r = idx / W, c = (idx % W) * 8;
            uint4 val = make_uint4(0, 0, 0, 0);
            if (r0 + r < Tq) val = *reinterpret_cast<const uint4 *>(q + (((size_t)b * Tq + r0 + r) * H + h) * HD + c);
            *reinterpret_cast<uint4 *>(wst + r * LD + c) = val;
        }
        __syncwarp();
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++)
            if (QREG) v3_ldsm_x4(qa[QREG ? kk : 0], wst + ((mi & 1) * 8 + r8) * LD + kk * 16 + (mi >> 1) * 8);
    }

    int pos[2], dst[2];
    bool valid[2];
    float lo = 3.0e38f;
#pragma unroll
    for (int x = 0; x < 2; x++) {
        int i = r0 + g + 8 * x;
        valid[x] = i < Tq;
        pos[x] = i + off;
        dst[x] = valid[x] ? doc_start[(size_t)b * Tk + pos[x]] : 0;
        if (valid[x]) lo = fminf(lo, (float)dst[x]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    const bool warp_valid = r0 < Tq;
    const int wlo = warp_valid ? (int)lo : 0;
    const int whi = warp_valid ? min(Tq - 1, r0 + 15) + off : -1;
    if (lane == 0) range_s[warp] = lo;
    __syncthreads();  // also: every warp has its Q fragments before stage 1 is refilled
    float blo = range_s[0];
    for (int w = 1; w < cfg::WARPS; w++) blo = fminf(blo, range_s[w]);
    const int kt0 = (int)blo / cfg::BK;
    const int kt1 = (min(Tq - 1, q0 + BQ - 1) + off) / cfg::BK;

    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // l: this lane's partial row sums

    v2_load_kv<HD>(kv_s, kv_s + cfg::KV_TILE, k, v, b, kt0 * cfg::BK, Tk, KVH, kvh);
    for (int tt = kt0; tt <= kt1; tt++) {
        const int k0 = tt * cfg::BK;
        const bf16 *Ks = kv_s + ((tt - kt0) & 1) * 2 * cfg::KV_TILE, *Vs = Ks + cfg::KV_TILE;
        if (tt < kt1) {
            bf16 *nk = kv_s + ((tt + 1 - kt0) & 1) * 2 * cfg::KV_TILE;
            v2_load_kv<HD>(nk, nk + cfg::KV_TILE, k, v, b, k0 + cfg::BK, Tk, KVH, kvh);
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
    float inv[2];
#pragma unroll
    for (int x = 0; x < 2; x++) {
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 1);
        l[x] += __shfl_xor_sync(0xffffffffu, l[x], 2);
        inv[x] = l[x] > 0.0f ? 1.0f / l[x] : 0.0f;
        if (t == 0 && valid[x])
            lse[((size_t)b * H + h) * Tq + r0 + g + 8 * x] = l[x] > 0.0f ? (m[x] + log2f(l[x])) * V2_LN2 : -INFINITY;
    }
#pragma unroll
    for (int n = 0; n < HD / 8; n++) {
        *reinterpret_cast<__nv_bfloat162 *>(wst + g * LD + n * 8 + 2 * t) =
            __floats2bfloat162_rn(o[n][0] * inv[0], o[n][1] * inv[0]);
        *reinterpret_cast<__nv_bfloat162 *>(wst + (g + 8) * LD + n * 8 + 2 * t) =
            __floats2bfloat162_rn(o[n][2] * inv[1], o[n][3] * inv[1]);
    }
    __syncwarp();
    constexpr int W = HD / 8;
    for (int idx = lane; idx < 16 * W; idx += 32) {
        int rr = idx / W, c = (idx % W) * 8;
        if (r0 + rr < Tq)
            *reinterpret_cast<uint4 *>(out + (((size_t)b * Tq + r0 + rr) * H + h) * HD + c) =
                *reinterpret_cast<const uint4 *>(wst + rr * LD + c);
    }
#endif
}

template <int HD, bool QREG>
static void v3_launch(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                      const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, float scale) {
    typedef v2_cfg<HD> cfg;
    int hpb = (H / KVH) % 2 == 0 ? 2 : 1;
    int BQ = 16 * cfg::WARPS / hpb;
    int smem = cfg::KV_BYTES + cfg::WARPS * 4 + (QREG ? 0 : 128 + cfg::WARPS * 16 * cfg::KV_LD * 2);
    CUDA_CHECK(
        cudaFuncSetAttribute(attention_forward_v3<HD, QREG>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 grid((unsigned)(H / hpb), (unsigned)((Tq + BQ - 1) / BQ), (unsigned)B);
    attention_forward_v3<HD, QREG><<<grid, cfg::THREADS, smem, cuda_state_of(be)->stream>>>(
        (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, Tq, Tk, H, KVH, hpb,
        scale * V2_LOG2E);
    CUDA_CHECK_LAST();
}

// ---------------------------------------------------------------------------------------------
// The driver: versions, the reference, the check and the benchmark.

typedef void (*attn_fn)(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                        const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale);

static void run_v1(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    be->attention_forward(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, hd, scale, 0, NULL);
}

static void run_v2(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    if (hd == 64) v2_launch<64>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
    else v2_launch<128>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
}

static void run_v3(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    if (hd == 64) v3_launch<64, true>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
    else v3_launch<128, true>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
}

static void run_v4(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    if (hd == 64) v3_launch<64, false>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
    else v3_launch<128, false>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
}

struct version {
    const char *name;
    attn_fn fn;
    int (*supports)(int hd);
};
static int any_hd(int) { return 1; }
static int hd_64_128(int hd) { return hd == 64 || hd == 128; }
static const version versions[] = {
    {"v1 production (kernels/cuda/attention.cu)", run_v1, any_hd},
    {"v2 FA2-style WMMA, Q in registers, cp.async K/V", run_v2, hd_64_128},
    {"v3 FA2 mma.sync+ldmatrix, S/P/O in registers", run_v3, hd_64_128},
    {"v4 = v3 with Q re-read from smem, 2 blocks/SM", run_v4, hd_64_128},
};
static const int n_versions = (int)(sizeof versions / sizeof versions[0]);

int main(int argc, char **argv) {
    const lab_shape sh = lab_parse_shape(argc, argv, "attention_forward", n_versions);
    const int only = sh.only, B = sh.B, T = sh.T, Tk = sh.Tk, hd = sh.hd, H = sh.H, KVH = sh.KVH, docs = sh.docs,
              repeats = sh.repeats, bench = sh.bench;
    char err[256] = "";
    backend *gpu = backend_cuda(0, err, sizeof err);
    if (!gpu) {
        printf("SKIP: no CUDA device (%s)\n", err);
        return 77;
    }
    backend *cpu = backend_cpu(0);
    const cudaDeviceProp &props = cuda_state_of(gpu)->props;
    printf("attention_forward: %s (%d SMs), B=%d T=%d Tk=%d heads=%d kv-heads=%d hd=%d docs=%d\n",
           props.name[0] ? props.name : gpu->name, props.multiProcessorCount, B, T, Tk, H, KVH, hd, docs);

    const size_t nq = (size_t)B * T * H * hd, nk = (size_t)B * Tk * KVH * hd, nl = (size_t)B * H * T;
    std::vector<float> q = lab_rand_bf(nq, 1.5f, 1), k = lab_rand_bf(nk, 1.5f, 2), v = lab_rand_bf(nk, 1.0f, 3);
    std::vector<int32_t> doc = lab_docs(B, Tk, docs);
    void *qg = lab_put(gpu, q), *kg = lab_put(gpu, k), *vg = lab_put(gpu, v);
    void *outg = lab_alloc(gpu, nq * 2);
    float *lseg = (float *)lab_alloc(gpu, nl * 4);
    int32_t *docg = (int32_t *)lab_alloc(gpu, doc.size() * 4);
    gpu->copy_to_device(gpu, docg, doc.data(), doc.size() * 4);

    // The reference: the CPU backend's op in fp32 on the same bf16 values.
    void *qc = lab_put(cpu, q), *kc = lab_put(cpu, k), *vc = lab_put(cpu, v);
    float *outc = (float *)lab_alloc(cpu, nq * 4), *lsec = (float *)lab_alloc(cpu, nl * 4);
    int32_t *docc = (int32_t *)lab_alloc(cpu, doc.size() * 4);
    cpu->copy_to_device(cpu, docc, doc.data(), doc.size() * 4);
    const float scale = 1.0f / sqrtf((float)hd);
    cpu->attention_forward(cpu, outc, lsec, qc, kc, vc, docc, B, T, Tk, H, KVH, hd, scale, 0, NULL);
    cpu->synchronize(cpu);

    std::vector<float> lse_h(nl);
    int failed = 0;
    std::vector<std::pair<int, double>> results;
    for (int vi = 1; vi <= n_versions; vi++) {
        if (only && vi != only) continue;
        const version &ver = versions[vi - 1];
        if (!ver.supports(hd)) {
            printf("%d %-50s not for hd %d\n", vi, ver.name, hd);
            continue;
        }
        // Poison, run, compare every element.
        CUDA_CHECK(cudaMemsetAsync(outg, 0xff, nq * 2, cuda_state_of(gpu)->stream));
        CUDA_CHECK(cudaMemsetAsync(lseg, 0xff, nl * 4, cuda_state_of(gpu)->stream));
        ver.fn(gpu, outg, lseg, qg, kg, vg, docg, B, T, Tk, H, KVH, hd, scale);
        gpu->synchronize(gpu);
        std::vector<float> out_h = lab_get_bf16(gpu, outg, nq);
        gpu->copy_to_host(gpu, lse_h.data(), lseg, nl * 4);
        lab_err eo = lab_compare(out_h.data(), outc, nq), el = lab_compare(lse_h.data(), lsec, nl);
        int ok = eo.bad + el.bad == 0 && eo.rel <= 1e-2 && eo.max <= 3e-2 && el.max <= 1e-3;
        printf("%d %-50s check %s: out rel %.2e max %.2e, lse max %.2e, %zu non-finite\n", vi, ver.name,
               ok ? "ok" : "FAILED", eo.rel, eo.max, el.max, eo.bad + el.bad);
        fflush(stdout);
        if (!ok) {
            failed = 1;
            continue;
        }
#ifndef QUARRY_EMU
        if (bench)
            results.push_back({vi, lab_median_ms(gpu, repeats, [&] {
                                   ver.fn(gpu, outg, lseg, qg, kg, vg, docg, B, T, Tk, H, KVH, hd, scale);
                               })});
#endif
    }
#ifndef QUARRY_EMU
    if (!results.empty()) {
        const void *kern[3][2] = {
            {(const void *)attention_forward_v2<64>, (const void *)attention_forward_v2<128>},
            {(const void *)attention_forward_v3<64, true>, (const void *)attention_forward_v3<128, true>},
            {(const void *)attention_forward_v3<64, false>, (const void *)attention_forward_v3<128, false>}};
        for (int x = 0; x < 3; x++) {
            cudaFuncAttributes fa;
            CUDA_CHECK(cudaFuncGetAttributes(&fa, kern[x][hd == 128]));
            printf("v%d kernel: %d registers, %zu bytes local (spills)\n", x + 2, fa.numRegs, (size_t)fa.localSizeBytes);
        }
        // Causal FLOPs: 4·B·H·T·Tk·hd/2 (half the score matrix; with documents the real work is smaller).
        lab_table(gpu, results, 4.0 * B * H * (double)T * Tk * hd / 2.0, repeats);
    }
#endif
    printf("attention_forward: %s\n", failed ? "FAILED" : "all checked versions pass");
    void *gp[] = {qg, kg, vg, outg, lseg, docg}, *cp[] = {qc, kc, vc, outc, lsec, docc};
    for (void *x : gp) gpu->free(gpu, x);
    for (void *x : cp) cpu->free(cpu, x);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return failed;
}
