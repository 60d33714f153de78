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
#include "attention_fa2.cuh"
#include "attention_fa2.h"
#include <mma.h>
#include <cuda_pipeline_primitives.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

using namespace nvcuda;

// ---------------------------------------------------------------------------------------------
// Version 2: FlashAttention-2 structure on WMMA.

// The K/V geometry (8 warps, 64-key tiles, two stages) and the cp.async tile copy are
// kernels/cuda/attention_fa2.cuh's, shared with the promoted v3/v4.
template <int HD> struct v2_cfg : fa2_kv_cfg<HD> {
    using fa2_kv_cfg<HD>::WARPS;
    using fa2_kv_cfg<HD>::BK;
    using fa2_kv_cfg<HD>::KV_BYTES;
    static constexpr int S_LD = BK + 4;   // f32 score rows in the warp buffer
    static constexpr int P_LD = BK + 8;   // bf16 probability rows, over the same buffer
    static constexpr int Q_LD = HD + 8;   // bf16 Q staging rows, over the same buffer
    static constexpr int WBUF = 16 * S_LD * 4 > 16 * Q_LD * 2 ? 16 * S_LD * 4 : 16 * Q_LD * 2;  // bytes
    // K/V stages | per-warp buffers | per-warp alpha[16] and 1/l[16] | block key-range scratch
    static constexpr int SMEM = KV_BYTES + WARPS * WBUF + WARPS * 32 * 4 + WARPS * 4;
};

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> v2_frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> v2_frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> v2_frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> v2_frag_acc;

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
        fa2_rows_in<HD, cfg::Q_LD>(wp, q, b, r0, Tq, H, h);
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
    const fa2_range rg = fa2_key_range(row_valid ? (float)ds : 3.0e38f, range_s, q0, BQ, r0, Tq, off);
    const bool warp_valid = rg.warp_valid;
    const int wlo = rg.wlo, whi = rg.whi, kt0 = rg.kt0, kt1 = rg.kt1;

    v2_frag_acc o[HD / 16];
#pragma unroll
    for (int j = 0; j < HD / 16; j++) wmma::fill_fragment(o[j], 0.0f);
    float m = -INFINITY, l = 0.0f;

    fa2_load_kv<HD>(kv_s, kv_s + cfg::KV_TILE, k, v, b, kt0 * cfg::BK, Tk, KVH, kvh);
    for (int t = kt0; t <= kt1; t++) {
        const int k0 = t * cfg::BK;
        const bf16 *Ks = kv_s + ((t - kt0) & 1) * 2 * cfg::KV_TILE, *Vs = Ks + cfg::KV_TILE;
        if (t < kt1) {
            // The other stage was last read in iteration t−1, which ended with a barrier.
            bf16 *nk = kv_s + ((t + 1 - kt0) & 1) * 2 * cfg::KV_TILE;
            fa2_load_kv<HD>(nk, nk + cfg::KV_TILE, k, v, b, k0 + cfg::BK, Tk, KVH, kvh);
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
        float row_lse;
        linv_s[r] = fold_sink(m, l, -INFINITY, &row_lse);  // no sink: 1/l and the lse of the keys
        if (row_valid) lse[((size_t)b * H + h) * Tq + i] = row_lse;
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
        scale * FA2_LOG2E);
    CUDA_CHECK_LAST();
}

// ---------------------------------------------------------------------------------------------
// Version 3: FlashAttention-2's register-resident design with mma.sync.m16n8k16 (PTX) and
// ldmatrix (mma_ptx.cuh), whose fragment layouts PTX documents (the emulator implements them from
// the same documentation, so the layout logic is checked on the CPU): S, P and O never leave
// registers.

// The kernel (template attention_forward_fa2<HD, QREG>: QREG true = v3, false = v4) was promoted
// to kernels/cuda/attention_fa2.cu with the production op's windows and sinks; the lab runs that
// very code (window 0, no sinks), so its check and timing are the production kernel's.

// ---------------------------------------------------------------------------------------------
// The driver: versions, the reference, the check and the benchmark.

typedef void (*attn_fn)(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                        const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale);

static void run_v1(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    be->attention_forward(be, out, lse, q, k, v, doc_start, 1, B, Tq, Tk, H, KVH, hd, scale, 0, NULL);
}

static void run_v2(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    if (hd == 64) v2_launch<64>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
    else v2_launch<128>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, scale);
}

static void run_v3(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    if (!cuda_attention_forward_fa2(be, 3, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, hd, scale, 0, NULL))
        fprintf(stderr, "attention_forward: v3 declined the call (sm < 80 or misaligned)\n");
}

static void run_v4(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                   const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, int hd, float scale) {
    if (!cuda_attention_forward_fa2(be, 4, out, lse, q, k, v, doc_start, B, Tq, Tk, H, KVH, hd, scale, 0, NULL))
        fprintf(stderr, "attention_forward: v4 declined the call (sm < 80 or misaligned)\n");
}

typedef lab_version<attn_fn> version;
static const version versions[] = {
    {"v1 production (kernels/cuda/attention.cu)", run_v1, NULL},
    {"v2 FA2-style WMMA, Q in registers, cp.async K/V", run_v2, lab_hd_64_128},
    {"v3 FA2 mma.sync+ldmatrix, S/P/O in registers", run_v3, lab_hd_64_128},
    {"v4 = v3 with Q re-read from smem, 2 blocks/SM", run_v4, lab_hd_64_128},
};
static const int n_versions = (int)(sizeof versions / sizeof versions[0]);

int main(int argc, char **argv) {
    const lab_shape sh = lab_parse_shape(argc, argv, "attention_forward", n_versions);
    const int only = sh.only, B = sh.B, T = sh.T, Tk = sh.Tk, hd = sh.hd, H = sh.H, KVH = sh.KVH,
              repeats = sh.repeats, bench = sh.bench;
    backend *gpu = lab_gpu(), *cpu = backend_cpu(0);
    lab_print_attention("attention_forward", gpu, sh);

    const lab_attn_inputs in = lab_attention_inputs(sh);
    const lab_attn_bufs gi = lab_attention_put(gpu, in);
    void *outg = lab_alloc(gpu, in.nq * 2);
    float *lseg = (float *)lab_alloc(gpu, in.nl * 4);

    // The reference: the CPU backend's op in fp32 on the same bf16 values.
    const lab_attn_bufs ci = lab_attention_put(cpu, in);
    float *outc = (float *)lab_alloc(cpu, in.nq * 4), *lsec = (float *)lab_alloc(cpu, in.nl * 4);
    cpu->attention_forward(cpu, outc, lsec, ci.q, ci.k, ci.v, ci.doc, 1, B, T, Tk, H, KVH, hd, in.scale, 0, NULL);
    cpu->synchronize(cpu);

    std::vector<float> lse_h(in.nl);
    int failed = 0;
    std::vector<std::pair<int, double>> results;
    for (int vi = 1; vi <= n_versions; vi++) {
        if (only && vi != only) continue;
        const version &ver = versions[vi - 1];
        if (ver.supports && !ver.supports(hd)) {
            printf("%d %-50s not for hd %d\n", vi, ver.name, hd);
            continue;
        }
        // Poison, run, compare every element.
        CUDA_CHECK(cudaMemsetAsync(outg, 0xff, in.nq * 2, cuda_state_of(gpu)->stream));
        CUDA_CHECK(cudaMemsetAsync(lseg, 0xff, in.nl * 4, cuda_state_of(gpu)->stream));
        ver.fn(gpu, outg, lseg, gi.q, gi.k, gi.v, gi.doc, B, T, Tk, H, KVH, hd, in.scale);
        gpu->synchronize(gpu);
        std::vector<float> out_h = lab_get_bf16(gpu, outg, in.nq);
        gpu->copy_to_host(gpu, lse_h.data(), lseg, in.nl * 4);
        lab_err eo = lab_compare(out_h.data(), outc, in.nq), el = lab_compare(lse_h.data(), lsec, in.nl);
        int ok = eo.bad + el.bad == 0 && eo.rel <= 1e-2 && eo.max <= 3e-2 && el.max <= 1e-3;
        printf("%d %-50s check %s: out rel %.2e max %.2e, lse max %.2e, %zu non-finite\n", vi, ver.name,
               ok ? "ok" : "FAILED", eo.rel, eo.max, el.max, eo.bad + el.bad);
        fflush(stdout);
        if (!ok) {
            failed = 1;
            continue;
        }
        lab_bench(results, vi, gpu, bench, repeats,
                  [&] { ver.fn(gpu, outg, lseg, gi.q, gi.k, gi.v, gi.doc, B, T, Tk, H, KVH, hd, in.scale); });
    }
#ifndef QUARRY_EMU
    if (!results.empty()) {
        const void *kern[3][2] = {
            {(const void *)attention_forward_v2<64>, (const void *)attention_forward_v2<128>},
            {cuda_attention_fa2_kernel(3, 64), cuda_attention_fa2_kernel(3, 128)},
            {cuda_attention_fa2_kernel(4, 64), cuda_attention_fa2_kernel(4, 128)}};
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
    for (void *x : {outg, (void *)lseg}) gpu->free(gpu, x);
    for (void *x : {(void *)outc, (void *)lsec}) cpu->free(cpu, x);
    lab_attention_free(gpu, gi);
    lab_attention_free(cpu, ci);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return failed;
}
