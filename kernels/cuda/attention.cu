// kernels/cuda/attention.cu — causal attention with GQA, document masks, sliding windows and
// learned sinks (gpt-oss), flash-style: tiles of 64 queries × 64 keys in shared memory, bf16
// tensor-core products (WMMA, sm_80+), online softmax in fp32, never a T × T matrix.  Backward
// recomputes the probabilities from the saved logsumexp: one kernel per key tile writes dK/dV
// (looping over every query head of its KV group, so GQA needs no atomics), another per query
// tile writes dQ — deterministic.
// Window W: key j visible from position p when p − j < W (kernels/backend.h); key tiles wholly
// before a query tile's window are never visited (the loops start at the first tile that the
// tile's first row can see), so a sliding layer costs O(T·W), not O(T²): with W = 128 a query
// tile reads 3 key tiles (4 when Tk − Tq is not a multiple of 64) whatever T is — at T = 2048,
// 93 tile pairs instead of the causal 528.  The sink joins each row's online softmax after
// its keys (a logit with no value: only the denominator and lse change), so the backward's
// P = exp(S − lse) already carry it; dsinks[h] −= Σ_rows exp(sink − lse)·D comes from one block
// per head summing a fixed row partition in a fixed tree: deterministic, no atomics.
// Head dims 64 and 128 take the tensor-core path; other sizes (tiny test models) a plain one.
// The forward may run attention_fa2.cu's kernels instead (QUARRY_ATTN_KERNEL=v3|v4, attention_fa2.h).
#include "common.cuh"
#include "attention.h"
#include "attention_cudnn.h"
#include "attention_fa2.cuh"
#include "attention_fa2.h"
#include <mma.h>

using namespace nvcuda;

#define LOG2E_F 1.4426950408889634f

template <int HD> struct attn_cfg {
    static constexpr int BQ = 64, BK = 64, WARPS = 4, THREADS = 128;
    static constexpr int QK_LD = HD + 8;  // bf16 tiles (rows × HD), padded against bank conflicts
    static constexpr int S_LD = BK + 4;   // f32 score tiles (64 × 64)
    static constexpr int P_LD = BK + 8;   // bf16 probability tiles (64 × 64)
    static constexpr int O_LD = HD + 4;   // f32 output / staging tiles (64 × HD)
    static constexpr int TILE_BYTES = 64 * QK_LD * 2;
    static constexpr int S_BYTES = 64 * S_LD * 4;
    static constexpr int P_BYTES = 64 * P_LD * 2;
    static constexpr int O_BYTES = 64 * O_LD * 4;
    // forward: Q K V | S | P | O | 1/l per row
    static constexpr int FWD_BYTES = 3 * TILE_BYTES + S_BYTES + P_BYTES + O_BYTES + 64 * 4;
    // backward: Q dO K V | work (S and dP, later the f32 staging of dK/dV/dQ) | P | dS | row stats
    static constexpr int WORK_BYTES = 2 * S_BYTES > O_BYTES ? 2 * S_BYTES : O_BYTES;
    static constexpr int BWD_BYTES = 4 * TILE_BYTES + WORK_BYTES + 2 * P_BYTES + 4 * 64 * 4;
};

// The first key position p sees: its document's start (≥ 0) and, with a window, p − W + 1.
__device__ __forceinline__ int first_visible(const int32_t *doc_start, size_t doc_row, int p, int window) {
    int lo = max(0, doc_start[doc_row + p]);
    return window > 0 ? max(lo, p - window + 1) : lo;
}

// The first key tile (a multiple of 64) a query tile whose first position is p0 may see: with a
// window, nothing before p0 − W + 1 (documents only narrow it further, row by row).
__device__ __forceinline__ int first_key_tile(int p0, int window) {
    return window > 0 ? (max(0, p0 - window + 1) / 64) * 64 : 0;
}

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> frag_a_row;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> frag_a_col;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;

// Copies 64 rows × HD of a (rows, heads·HD) bf16 tensor into a padded shared tile; rows at or past
// `limit` are zero (so masked rows contribute exact zeros, never stale NaNs).
template <int HD>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, size_t row0, int first, int limit, int heads,
                                          int head) {
    constexpr int W = HD / 8;
    for (int idx = threadIdx.x; idx < 64 * W; idx += attn_cfg<HD>::THREADS) {
        int r = idx / W, c = (idx % W) * 8;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (first + r < limit)
            val = *reinterpret_cast<const uint4 *>(src + ((row0 + first + r) * heads + head) * HD + c);
        *reinterpret_cast<uint4 *>(dst + r * attn_cfg<HD>::QK_LD + c) = val;
    }
}

// Warp-level: out(16 × 64, f32, ld S_LD) = A(16 rows of a, HD) · B(64 rows of b, HD)ᵀ.
template <int HD>
__device__ __forceinline__ void tile_abt(float *out, const bf16 *a, const bf16 *b) {
    constexpr int LD = attn_cfg<HD>::QK_LD;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        frag_acc acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            frag_a_row fa;
            frag_b_col fb;
            wmma::load_matrix_sync(fa, a + kk * 16, LD);
            wmma::load_matrix_sync(fb, b + j * 16 * LD + kk * 16, LD);
            wmma::mma_sync(acc, fa, fb, acc);
        }
        wmma::store_matrix_sync(out + j * 16, acc, attn_cfg<HD>::S_LD, wmma::mem_row_major);
    }
}

template <int HD>
__global__ void __launch_bounds__(128)
attention_forward_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v, const int32_t *doc_start,
                         int Tq, int Tk, int H, int KVH, float scale_log2, int window, const float *sinks) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef attn_cfg<HD> cfg;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *Qs = (bf16 *)smem;
    bf16 *Ks = (bf16 *)(smem + cfg::TILE_BYTES);
    bf16 *Vs = (bf16 *)(smem + 2 * cfg::TILE_BYTES);
    float *Ss = (float *)(smem + 3 * cfg::TILE_BYTES);
    bf16 *Ps = (bf16 *)(smem + 3 * cfg::TILE_BYTES + cfg::S_BYTES);
    float *Os = (float *)(smem + 3 * cfg::TILE_BYTES + cfg::S_BYTES + cfg::P_BYTES);
    float *rinv = (float *)(smem + 3 * cfg::TILE_BYTES + cfg::S_BYTES + cfg::P_BYTES + cfg::O_BYTES);

    const int q0 = blockIdx.x * 64, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (H / KVH), off = Tk - Tq;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    load_tile<HD>(Qs, q, (size_t)b * Tq, q0, Tq, H, h);
    for (int idx = threadIdx.x; idx < 64 * cfg::O_LD; idx += cfg::THREADS) Os[idx] = 0.0f;

    // Each lane pair owns one query row of its warp's 16; lane & 1 picks the half of the columns.
    const int r = warp * 16 + (lane >> 1), half = lane & 1;
    const int i = q0 + r;
    const bool row_valid = i < Tq;
    const int p = i + off;
    const int ds = row_valid ? first_visible(doc_start, (size_t)b * Tk, p, window) : 0;
    float m = -INFINITY, l = 0.0f;

    const int last_q = min(Tq - 1, q0 + 63);
    const int kend = last_q + off + 1;  // keys past the last query position are never seen
    for (int k0 = first_key_tile(q0 + off, window); k0 < kend; k0 += 64) {
        int sees = row_valid && half == 0 && ds <= k0 + 63 && p >= k0;
        // Also the barrier that ends every warp's reads of the previous K/V tile.
        if (!__syncthreads_or(sees)) continue;
        load_tile<HD>(Ks, k, (size_t)b * Tk, k0, Tk, KVH, kvh);
        load_tile<HD>(Vs, v, (size_t)b * Tk, k0, Tk, KVH, kvh);
        __syncthreads();
        tile_abt<HD>(Ss + warp * 16 * cfg::S_LD, Qs + warp * 16 * cfg::QK_LD, Ks);
        __syncwarp();

        float *srow = Ss + r * cfg::S_LD + half * 32;
        bf16 *prow = Ps + r * cfg::P_LD + half * 32;
        float tmax = -INFINITY;
        for (int c = 0; c < 32; c++) {
            int key = k0 + half * 32 + c;
            bool ok = row_valid && key >= ds && key <= p;
            float s = ok ? srow[c] * scale_log2 : -INFINITY;
            srow[c] = s;
            tmax = fmaxf(tmax, s);
        }
        tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
        float m_new = fmaxf(m, tmax);
        float m_use = m_new == -INFINITY ? 0.0f : m_new;  // nothing seen yet: keep every term 0
        float alpha = exp2f(m - m_use);
        float rowsum = 0.0f;
        for (int c = 0; c < 32; c++) {
            float e = exp2f(srow[c] - m_use);
            rowsum += e;
            prow[c] = __float2bfloat16_rn(e);
        }
        rowsum += __shfl_xor_sync(0xffffffffu, rowsum, 1);
        l = l * alpha + rowsum;
        m = m_new;
        float *orow = Os + r * cfg::O_LD + half * (HD / 2);
        for (int c = 0; c < HD / 2; c++) orow[c] *= alpha;
        __syncwarp();

        // O(16 × HD) += P(16 × 64) · V(64 × HD) for this warp's rows.
#pragma unroll
        for (int j = 0; j < HD / 16; j++) {
            frag_acc acc;
            float *o = Os + warp * 16 * cfg::O_LD + j * 16;
            wmma::load_matrix_sync(acc, o, cfg::O_LD, wmma::mem_row_major);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                frag_a_row fa;
                frag_b_row fb;
                wmma::load_matrix_sync(fa, Ps + warp * 16 * cfg::P_LD + kk * 16, cfg::P_LD);
                wmma::load_matrix_sync(fb, Vs + kk * 16 * cfg::QK_LD + j * 16, cfg::QK_LD);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(o, acc, cfg::O_LD, wmma::mem_row_major);
        }
        __syncwarp();
    }
    __syncthreads();  // Os was zeroed with another thread mapping; rows with no tile still read it
    if (half == 0) {
        float row_lse;
        rinv[r] = fold_sink(m, l, sinks ? sinks[h] * LOG2E_F : -INFINITY, &row_lse);
        if (row_valid) lse[((size_t)b * H + h) * Tq + i] = row_lse;
    }
    __syncwarp();
    constexpr int W = HD / 8;
    for (int idx = lane; idx < 16 * W; idx += 32) {
        int rr = warp * 16 + idx / W, c = (idx % W) * 8;
        if (q0 + rr >= Tq) continue;
        float f[8];
        float s = rinv[rr];
#pragma unroll
        for (int t = 0; t < 8; t++) f[t] = Os[rr * cfg::O_LD + c + t] * s;
        *reinterpret_cast<uint4 *>(out + (((size_t)b * Tq + q0 + rr) * H + h) * HD + c) = f32_to_bf16x8(f);
    }
#endif
}

// Dsum[b, h, i] = Σ_d dout · out over one head's row: one warp per (row, head).
__global__ void attention_dsum_kernel(float *Dsum, const bf16 *dout, const bf16 *out, int B, int Tq, int H, int hd) {
    size_t warps = (size_t)B * Tq * H;
    size_t gw = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (gw >= warps) return;
    int h = (int)(gw % H);
    size_t row = gw / H;  // b * Tq + i
    const bf16 *a = dout + row * H * hd + (size_t)h * hd, *o = out + row * H * hd + (size_t)h * hd;
    float acc = 0.0f;
    for (int d = lane; d < hd; d += 32) acc += __bfloat162float(a[d]) * __bfloat162float(o[d]);
    acc = warp_sum(acc);
    if (lane == 0) {
        size_t b = row / Tq, i = row % Tq;
        Dsum[(b * H + h) * Tq + i] = acc;
    }
}

void cuda_attention_dsum(backend *be, float *Dsum, const void *dout, const void *out, int B, int Tq, int H, int hd) {
    size_t rows = (size_t)B * Tq * H;
    attention_dsum_kernel<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, cuda_state_of(be)->stream>>>(
        Dsum, (const bf16 *)dout, (const bf16 *)out, B, Tq, H, hd);
    CUDA_CHECK_LAST();
}

// dsinks[h] += −Σ_{b,i} exp(sink_h − lse[b,h,i]) · D[b,h,i] (the sink's probability times
// 0 − D): one block of 256 threads per head; thread t sums rows t, t + 256, ... in order, then a
// fixed tree adds the 256 partial sums — the same bits on every run, no atomics.
__global__ void attention_dsinks_kernel(float *dsinks, const float *sinks, const float *lse, const float *Dsum, int B,
                                        int Tq, int H) {
    __shared__ float part[256];
    const int h = blockIdx.x;
    const float sink = sinks[h];
    float acc = 0.0f;
    for (size_t r = threadIdx.x; r < (size_t)B * Tq; r += 256) {
        size_t si = ((r / Tq) * H + h) * Tq + r % Tq;
        acc += expf(sink - lse[si]) * Dsum[si];
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) dsinks[h] -= part[0];
}

// Row statistics of a query tile for the backward kernels, in shared memory (threads < 64).
template <int HD>
__device__ __forceinline__ void load_row_stats(float *lse2_s, float *D_s, int *pos_s, int *ds_s, const float *lse,
                                               const float *Dsum, const int32_t *doc_start, int b, int h, int H,
                                               int q0, int Tq, int Tk, int window) {
    int r = threadIdx.x;
    if (r < 64) {
        int i = q0 + r;
        if (i < Tq) {
            size_t si = ((size_t)b * H + h) * Tq + i;
            lse2_s[r] = lse[si] * LOG2E_F;
            D_s[r] = Dsum[si];
            pos_s[r] = i + Tk - Tq;
            ds_s[r] = first_visible(doc_start, (size_t)b * Tk, i + Tk - Tq, window);
        } else {
            lse2_s[r] = 0.0f;
            D_s[r] = 0.0f;
            pos_s[r] = -1;  // sees no key
            ds_s[r] = 0;
        }
    }
}

// P = exp(S·scale − lse), dS = P ∘ (dP − D) for the lane pair's row (warp-local rows).
template <int HD>
__device__ __forceinline__ void softmax_grad_rows(bf16 *Pb, bf16 *dSb, const float *Ss, const float *dPs,
                                                  const float *lse2_s, const float *D_s, const int *pos_s,
                                                  const int *ds_s, int k0, float scale_log2) {
    typedef attn_cfg<HD> cfg;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int r = warp * 16 + (lane >> 1), half = lane & 1;
    float lse2 = lse2_s[r], D = D_s[r];
    int p = pos_s[r], ds = ds_s[r];
    for (int c = half * 32; c < half * 32 + 32; c++) {
        int key = k0 + c;
        bool ok = key >= ds && key <= p;
        float P = ok ? exp2f(Ss[r * cfg::S_LD + c] * scale_log2 - lse2) : 0.0f;
        float dS = P * (dPs[r * cfg::S_LD + c] - D);
        if (Pb) Pb[r * cfg::P_LD + c] = __float2bfloat16_rn(P);
        dSb[r * cfg::P_LD + c] = __float2bfloat16_rn(dS);
    }
}

// Writes a warp's 16 rows of f32 staging (ld O_LD) times s as bf16 rows of a (rows, heads·HD) tensor.
template <int HD>
__device__ __forceinline__ void store_rows(bf16 *dst, const float *stage, size_t row0, int first, int limit, int heads,
                                           int head, float s) {
    typedef attn_cfg<HD> cfg;
    constexpr int W = HD / 8;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int idx = lane; idx < 16 * W; idx += 32) {
        int rr = warp * 16 + idx / W, c = (idx % W) * 8;
        if (first + rr >= limit) continue;
        float f[8];
#pragma unroll
        for (int t = 0; t < 8; t++) f[t] = stage[rr * cfg::O_LD + c + t] * s;
        *reinterpret_cast<uint4 *>(dst + ((row0 + first + rr) * heads + head) * HD + c) = f32_to_bf16x8(f);
    }
}

// The backward kernels' shared memory (BWD_BYTES): the Q, dO, K, V tiles | work: S and dP, later
// the f32 staging of dK, dV or dQ | P | dS | the query tile's row statistics (64 each).
template <int HD> struct bwd_smem {
    bf16 *Qs, *dOs, *Ks, *Vs;
    float *Ss, *dPs, *stage;
    bf16 *Pb, *dSb;
    float *lse2_s, *D_s;  // lse·log2 e and D of each query row
    int *pos_s, *ds_s;    // its position and first visible key
    __device__ __forceinline__ explicit bwd_smem(unsigned char *smem) {
        typedef attn_cfg<HD> cfg;
        Qs = (bf16 *)smem;
        dOs = (bf16 *)(smem + cfg::TILE_BYTES);
        Ks = (bf16 *)(smem + 2 * cfg::TILE_BYTES);
        Vs = (bf16 *)(smem + 3 * cfg::TILE_BYTES);
        unsigned char *work = smem + 4 * cfg::TILE_BYTES;
        Ss = (float *)work;
        dPs = (float *)(work + cfg::S_BYTES);
        stage = (float *)work;  // over S and dP, once the tiles are done
        Pb = (bf16 *)(work + cfg::WORK_BYTES);
        dSb = (bf16 *)(work + cfg::WORK_BYTES + cfg::P_BYTES);
        lse2_s = (float *)(work + cfg::WORK_BYTES + 2 * cfg::P_BYTES);
        D_s = lse2_s + 64;
        pos_s = (int *)(D_s + 64);
        ds_s = pos_s + 64;
    }
};

// Block-wide (and a barrier): whether a row of the query tile at q0 sees a key of [k0, klast];
// threads < 64 test one row each.  off = Tk − Tq.
__device__ __forceinline__ int query_tile_sees(const int32_t *doc_start, int b, int q0, int Tq, int Tk, int off, int k0,
                                               int klast, int window) {
    int sees = 0;
    if (threadIdx.x < 64 && q0 + (int)threadIdx.x < Tq) {
        int p = q0 + threadIdx.x + off;
        sees = first_visible(doc_start, (size_t)b * Tk, p, window) <= klast && p >= k0;
    }
    return __syncthreads_or(sees);
}

// The query tile at q0 of head h into shared memory: Q, dO and the rows' statistics.
template <int HD>
__device__ __forceinline__ void load_query_tile(const bwd_smem<HD> &sm, const bf16 *q, const bf16 *dout,
                                                const float *lse, const float *Dsum, const int32_t *doc_start, int b,
                                                int h, int H, int q0, int Tq, int Tk, int window) {
    load_tile<HD>(sm.Qs, q, (size_t)b * Tq, q0, Tq, H, h);
    load_tile<HD>(sm.dOs, dout, (size_t)b * Tq, q0, Tq, H, h);
    load_row_stats<HD>(sm.lse2_s, sm.D_s, sm.pos_s, sm.ds_s, lse, Dsum, doc_start, b, h, H, q0, Tq, Tk, window);
}

// Warp-level: S = Q·Kᵀ and dP = dO·Vᵀ for the warp's 16 query rows, then their P (when Pb is
// not NULL) and dS (softmax_grad_rows).
template <int HD>
__device__ __forceinline__ void scores_and_grads(const bwd_smem<HD> &sm, bf16 *Pb, int k0, float scale_log2) {
    typedef attn_cfg<HD> cfg;
    const int warp = threadIdx.x >> 5;
    tile_abt<HD>(sm.Ss + warp * 16 * cfg::S_LD, sm.Qs + warp * 16 * cfg::QK_LD, sm.Ks);
    tile_abt<HD>(sm.dPs + warp * 16 * cfg::S_LD, sm.dOs + warp * 16 * cfg::QK_LD, sm.Vs);
    __syncwarp();
    softmax_grad_rows<HD>(Pb, sm.dSb, sm.Ss, sm.dPs, sm.lse2_s, sm.D_s, sm.pos_s, sm.ds_s, k0, scale_log2);
}

// Warp-level: its 16 × HD accumulators through its rows of the f32 staging, then store_rows.
template <int HD>
__device__ __forceinline__ void store_acc_rows(bf16 *dst, float *stage, const frag_acc *acc, size_t row0, int first,
                                               int limit, int heads, int head, float s) {
    typedef attn_cfg<HD> cfg;
    const int warp = threadIdx.x >> 5;
#pragma unroll
    for (int j = 0; j < HD / 16; j++)
        wmma::store_matrix_sync(stage + warp * 16 * cfg::O_LD + j * 16, acc[j], cfg::O_LD, wmma::mem_row_major);
    __syncwarp();
    store_rows<HD>(dst, stage, row0, first, limit, heads, head, s);
}

// dK, dV for one key tile of one KV head: loops over the query heads of the group and the query
// tiles that can see the keys.  Warp w owns key rows 16w..16w+15 of dK and dV (in registers).
template <int HD>
__global__ void __launch_bounds__(128)
attention_backward_kv_kernel(bf16 *dk, bf16 *dv, const bf16 *dout, const float *lse, const float *Dsum, const bf16 *q,
                             const bf16 *k, const bf16 *v, const int32_t *doc_start, int Tq, int Tk, int H, int KVH,
                             float scale, float scale_log2, int window) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef attn_cfg<HD> cfg;
    extern __shared__ __align__(128) unsigned char smem[];
    const bwd_smem<HD> sm(smem);

    const int k0 = blockIdx.x * 64, kvh = blockIdx.y, b = blockIdx.z;
    const int group = H / KVH, off = Tk - Tq;
    const int warp = threadIdx.x >> 5;
    load_tile<HD>(sm.Ks, k, (size_t)b * Tk, k0, Tk, KVH, kvh);
    load_tile<HD>(sm.Vs, v, (size_t)b * Tk, k0, Tk, KVH, kvh);
    frag_acc dK[HD / 16], dV[HD / 16];
#pragma unroll
    for (int j = 0; j < HD / 16; j++) {
        wmma::fill_fragment(dK[j], 0.0f);
        wmma::fill_fragment(dV[j], 0.0f);
    }
    const int klast = min(Tk - 1, k0 + 63);
    const int i_start = max(0, k0 - off);  // query rows before this cannot reach key k0
    // With a window, rows at positions ≥ klast + W cannot reach the tile's last key.
    const int i_end = window > 0 ? min(Tq, klast + window - off) : Tq;
    for (int hq = 0; hq < group; hq++) {
        const int h = kvh * group + hq;
        for (int q0 = (i_start / 64) * 64; q0 < i_end; q0 += 64) {
            // Also the barrier that ends every warp's reads of the previous query tile.
            if (!query_tile_sees(doc_start, b, q0, Tq, Tk, off, k0, klast, window)) continue;
            load_query_tile<HD>(sm, q, dout, lse, Dsum, doc_start, b, h, H, q0, Tq, Tk, window);
            __syncthreads();
            scores_and_grads<HD>(sm, sm.Pb, k0, scale_log2);
            __syncthreads();  // dV/dK below read every warp's rows of P and dS
            // dV[keys] += Pᵀ(keys × 64 queries) · dO(64 × HD);  dK[keys] += dSᵀ · Q.
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                frag_a_col pt, dst;
                wmma::load_matrix_sync(pt, sm.Pb + kk * 16 * cfg::P_LD + warp * 16, cfg::P_LD);
                wmma::load_matrix_sync(dst, sm.dSb + kk * 16 * cfg::P_LD + warp * 16, cfg::P_LD);
#pragma unroll
                for (int j = 0; j < HD / 16; j++) {
                    frag_b_row fo, fq;
                    wmma::load_matrix_sync(fo, sm.dOs + kk * 16 * cfg::QK_LD + j * 16, cfg::QK_LD);
                    wmma::mma_sync(dV[j], pt, fo, dV[j]);
                    wmma::load_matrix_sync(fq, sm.Qs + kk * 16 * cfg::QK_LD + j * 16, cfg::QK_LD);
                    wmma::mma_sync(dK[j], dst, fq, dK[j]);
                }
            }
        }
    }
    __syncthreads();  // stage overlays S/dP of other warps
    store_acc_rows<HD>(dv, sm.stage, dV, (size_t)b * Tk, k0, Tk, KVH, kvh, 1.0f);
    __syncwarp();
    store_acc_rows<HD>(dk, sm.stage, dK, (size_t)b * Tk, k0, Tk, KVH, kvh, scale);
#endif
}

// dQ for one query tile of one head: loops over the key tiles its rows can see.  Warp w owns
// query rows 16w..16w+15 throughout (only the K/V loads are shared).
template <int HD>
__global__ void __launch_bounds__(128)
attention_backward_q_kernel(bf16 *dq, const bf16 *dout, const float *lse, const float *Dsum, const bf16 *q,
                            const bf16 *k, const bf16 *v, const int32_t *doc_start, int Tq, int Tk, int H, int KVH,
                            float scale, float scale_log2, int window) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef attn_cfg<HD> cfg;
    extern __shared__ __align__(128) unsigned char smem[];
    const bwd_smem<HD> sm(smem);

    const int q0 = blockIdx.x * 64, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (H / KVH), off = Tk - Tq;
    const int warp = threadIdx.x >> 5;
    load_query_tile<HD>(sm, q, dout, lse, Dsum, doc_start, b, h, H, q0, Tq, Tk, window);
    frag_acc dQ[HD / 16];
#pragma unroll
    for (int j = 0; j < HD / 16; j++) wmma::fill_fragment(dQ[j], 0.0f);
    const int kend = min(Tq - 1, q0 + 63) + off + 1;
    for (int k0 = first_key_tile(q0 + off, window); k0 < kend; k0 += 64) {
        if (!query_tile_sees(doc_start, b, q0, Tq, Tk, off, k0, k0 + 63, window)) continue;
        load_tile<HD>(sm.Ks, k, (size_t)b * Tk, k0, Tk, KVH, kvh);
        load_tile<HD>(sm.Vs, v, (size_t)b * Tk, k0, Tk, KVH, kvh);
        __syncthreads();
        scores_and_grads<HD>(sm, NULL, k0, scale_log2);
        __syncwarp();
        // dQ(16 × HD) += dS(16 × 64 keys) · K(64 × HD)
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            frag_a_row fs;
            wmma::load_matrix_sync(fs, sm.dSb + warp * 16 * cfg::P_LD + kk * 16, cfg::P_LD);
#pragma unroll
            for (int j = 0; j < HD / 16; j++) {
                frag_b_row fk;
                wmma::load_matrix_sync(fk, sm.Ks + kk * 16 * cfg::QK_LD + j * 16, cfg::QK_LD);
                wmma::mma_sync(dQ[j], fs, fk, dQ[j]);
            }
        }
    }
    __syncthreads();  // stage overlays S/dP of other warps
    store_acc_rows<HD>(dq, sm.stage, dQ, (size_t)b * Tq, q0, Tq, H, h, scale);
#endif
}

// The plain path for any head dim ≤ 256 (lanes own dims lane, lane+32, ...): one warp per query
// row and head, keys one at a time with an online softmax.  Slow, exact in structure, no T × T.
#define GEN_MAX 8
__global__ void attention_forward_generic_kernel(bf16 *out, float *lse, const bf16 *q, const bf16 *k, const bf16 *v,
                                                 const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH,
                                                 int hd, float scale_log2, int window, const float *sinks) {
    size_t gw = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (gw >= (size_t)B * Tq * H) return;
    int h = (int)(gw % H);
    size_t row = gw / H;
    int b = (int)(row / Tq), i = (int)(row % Tq);
    int kvh = h / (H / KVH), p = i + Tk - Tq;
    int ds = first_visible(doc_start, (size_t)b * Tk, p, window);
    const bf16 *qr = q + (row * H + h) * hd;
    float qv[GEN_MAX], o[GEN_MAX];
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) {
        int d = lane + 32 * t;
        qv[t] = d < hd ? __bfloat162float(qr[d]) : 0.0f;
        o[t] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = ds; j <= p; j++) {
        const bf16 *kr = k + (((size_t)b * Tk + j) * KVH + kvh) * hd;
        const bf16 *vr = v + (((size_t)b * Tk + j) * KVH + kvh) * hd;
        float s = 0.0f;
#pragma unroll
        for (int t = 0; t < GEN_MAX; t++) {
            int d = lane + 32 * t;
            if (d < hd) s += qv[t] * __bfloat162float(kr[d]);
        }
        s = warp_sum(s) * scale_log2;
        float m_new = fmaxf(m, s);
        float alpha = exp2f(m - m_new), e = exp2f(s - m_new);
        l = l * alpha + e;
#pragma unroll
        for (int t = 0; t < GEN_MAX; t++) {
            int d = lane + 32 * t;
            if (d < hd) o[t] = o[t] * alpha + e * __bfloat162float(vr[d]);
        }
        m = m_new;
    }
    float row_lse;
    float inv = fold_sink(m, l, sinks ? sinks[h] * LOG2E_F : -INFINITY, &row_lse);
    bf16 *orow = out + (row * H + h) * hd;
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) {
        int d = lane + 32 * t;
        if (d < hd) orow[d] = __float2bfloat16_rn(o[t] * inv);
    }
    if (lane == 0) lse[((size_t)b * H + h) * Tq + i] = row_lse;
}

__device__ __forceinline__ float dot_lanes(const float *a, const bf16 *b, int lane, int hd) {
    float s = 0.0f;
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) {
        int d = lane + 32 * t;
        if (d < hd) s += a[t] * __bfloat162float(b[d]);
    }
    return warp_sum(s);
}

__device__ __forceinline__ void load_lanes(float *dst, const bf16 *src, int lane, int hd) {
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) {
        int d = lane + 32 * t;
        dst[t] = d < hd ? __bfloat162float(src[d]) : 0.0f;
    }
}

__global__ void attention_backward_q_generic_kernel(bf16 *dq, const bf16 *dout, const float *lse, const float *Dsum,
                                                    const bf16 *q, const bf16 *k, const bf16 *v,
                                                    const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH,
                                                    int hd, float scale, float scale_log2, int window) {
    size_t gw = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (gw >= (size_t)B * Tq * H) return;
    int h = (int)(gw % H);
    size_t row = gw / H;
    int b = (int)(row / Tq), i = (int)(row % Tq);
    int kvh = h / (H / KVH), p = i + Tk - Tq;
    int ds = first_visible(doc_start, (size_t)b * Tk, p, window);
    size_t si = ((size_t)b * H + h) * Tq + i;
    float lse2 = lse[si] * LOG2E_F, D = Dsum[si];
    float qv[GEN_MAX], gv[GEN_MAX], acc[GEN_MAX];
    load_lanes(qv, q + (row * H + h) * hd, lane, hd);
    load_lanes(gv, dout + (row * H + h) * hd, lane, hd);
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) acc[t] = 0.0f;
    for (int j = ds; j <= p; j++) {
        const bf16 *kr = k + (((size_t)b * Tk + j) * KVH + kvh) * hd;
        const bf16 *vr = v + (((size_t)b * Tk + j) * KVH + kvh) * hd;
        float P = exp2f(dot_lanes(qv, kr, lane, hd) * scale_log2 - lse2);
        float dS = P * (dot_lanes(gv, vr, lane, hd) - D);
#pragma unroll
        for (int t = 0; t < GEN_MAX; t++) {
            int d = lane + 32 * t;
            if (d < hd) acc[t] += dS * __bfloat162float(kr[d]);
        }
    }
    bf16 *dr = dq + (row * H + h) * hd;
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) {
        int d = lane + 32 * t;
        if (d < hd) dr[d] = __float2bfloat16_rn(acc[t] * scale);
    }
}

// One warp per (key row, KV head): every query of the group's heads that sees the key, in order.
__global__ void attention_backward_kv_generic_kernel(bf16 *dk, bf16 *dv, const bf16 *dout, const float *lse,
                                                     const float *Dsum, const bf16 *q, const bf16 *k, const bf16 *v,
                                                     const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH,
                                                     int hd, float scale, float scale_log2, int window) {
    size_t gw = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (gw >= (size_t)B * Tk * KVH) return;
    int kvh = (int)(gw % KVH);
    size_t krow = gw / KVH;
    int b = (int)(krow / Tk), j = (int)(krow % Tk);
    int group = H / KVH, off = Tk - Tq;
    float kv[GEN_MAX], vv[GEN_MAX], ak[GEN_MAX], av[GEN_MAX];
    load_lanes(kv, k + (krow * KVH + kvh) * hd, lane, hd);
    load_lanes(vv, v + (krow * KVH + kvh) * hd, lane, hd);
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) ak[t] = av[t] = 0.0f;
    for (int hq = 0; hq < group; hq++) {
        int h = kvh * group + hq;
        int i_end = window > 0 ? min(Tq, j + window - off) : Tq;  // p − j < W
        for (int i = max(0, j - off); i < i_end; i++) {
            if (first_visible(doc_start, (size_t)b * Tk, i + off, window) > j) continue;
            size_t qrow = (size_t)b * Tq + i, si = ((size_t)b * H + h) * Tq + i;
            const bf16 *qr = q + (qrow * H + h) * hd, *gr = dout + (qrow * H + h) * hd;
            float P = exp2f(dot_lanes(kv, qr, lane, hd) * scale_log2 - lse[si] * LOG2E_F);
            float dS = P * (dot_lanes(vv, gr, lane, hd) - Dsum[si]);
#pragma unroll
            for (int t = 0; t < GEN_MAX; t++) {
                int d = lane + 32 * t;
                if (d < hd) {
                    av[t] += P * __bfloat162float(gr[d]);
                    ak[t] += dS * __bfloat162float(qr[d]);
                }
            }
        }
    }
    bf16 *dkr = dk + (krow * KVH + kvh) * hd, *dvr = dv + (krow * KVH + kvh) * hd;
#pragma unroll
    for (int t = 0; t < GEN_MAX; t++) {
        int d = lane + 32 * t;
        if (d < hd) {
            dkr[d] = __float2bfloat16_rn(ak[t] * scale);
            dvr[d] = __float2bfloat16_rn(av[t]);
        }
    }
}

static void check_shapes(int B, int Tq, int Tk, int H, int KVH, int hd) {
    if (B <= 0 || Tq <= 0 || Tk < Tq || H <= 0 || KVH <= 0 || H % KVH != 0 || hd <= 0 || hd > 32 * GEN_MAX) {
        fprintf(stderr,
                "quarry: attention: unsupported shape B=%d Tq=%d Tk=%d heads=%d kv_heads=%d head_dim=%d "
                "(need Tk >= Tq, heads a multiple of kv_heads, head_dim <= %d)\n",
                B, Tq, Tk, H, KVH, hd, 32 * GEN_MAX);
        exit(1);
    }
}

// The tensor-core path needs sm_80, head dim 64/128, 16-byte aligned tensors and enough shared
// memory; anything else takes the plain kernels.
static int use_mma(backend *be, int hd, const void *a, const void *b, const void *c, const void *d) {
    cuda_state *s = cuda_state_of(be);
    if (s->props.major < 8 || (hd != 64 && hd != 128)) return 0;
    if (!aligned16(a) || !aligned16(b) || !aligned16(c) || !aligned16(d)) return 0;
    size_t need = hd == 64 ? attn_cfg<64>::BWD_BYTES : attn_cfg<128>::BWD_BYTES;
    size_t need_f = hd == 64 ? attn_cfg<64>::FWD_BYTES : attn_cfg<128>::FWD_BYTES;
    if (need_f > need) need = need_f;
    return need <= (size_t)s->props.sharedMemPerBlockOptin;
}

template <int HD>
static void forward_mma(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                        const int32_t *doc_start, int B, int Tq, int Tk, int H, int KVH, float scale_log2,
                        int window, const float *sinks) {
    int smem = attn_cfg<HD>::FWD_BYTES;
    CUDA_CHECK(cudaFuncSetAttribute(attention_forward_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 grid((unsigned)((Tq + 63) / 64), (unsigned)H, (unsigned)B);
    attention_forward_kernel<HD><<<grid, attn_cfg<HD>::THREADS, smem, cuda_state_of(be)->stream>>>(
        (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, Tq, Tk, H, KVH, scale_log2,
        window, sinks);
    CUDA_CHECK_LAST();
}

static void cu_attention_forward(backend *be, void *out, float *lse, const void *q, const void *k, const void *v,
                                 const int32_t *doc_start, int packed, int B, int Tq, int Tk, int n_heads, int n_kv_heads, int hd,
                                 float scale, int window, const float *sinks) {
    check_shapes(B, Tq, Tk, n_heads, n_kv_heads, hd);
    if (cuda_attention_cudnn_forward(be, out, lse, q, k, v, doc_start, packed, B, Tq, Tk, n_heads, n_kv_heads, hd,
                                     scale, window, sinks))
        return;
    int version = cuda_attention_kernel();   // QUARRY_ATTN_KERNEL (attention_fa2.h)
    if (version != 1 && cuda_attention_forward_fa2(be, version, out, lse, q, k, v, doc_start, B, Tq, Tk, n_heads,
                                                   n_kv_heads, hd, scale, window, sinks))
        return;
    float scale_log2 = scale * LOG2E_F;
    if (window < 0) window = 0;
    if (use_mma(be, hd, out, q, k, v)) {
        if (hd == 64)
            forward_mma<64>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, n_heads, n_kv_heads, scale_log2, window, sinks);
        else
            forward_mma<128>(be, out, lse, q, k, v, doc_start, B, Tq, Tk, n_heads, n_kv_heads, scale_log2, window,
                             sinks);
        return;
    }
    size_t threads = (size_t)B * Tq * n_heads * 32;
    attention_forward_generic_kernel<<<(unsigned)((threads + 127) / 128), 128, 0, cuda_state_of(be)->stream>>>(
        (bf16 *)out, lse, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, B, Tq, Tk, n_heads,
        n_kv_heads, hd, scale_log2, window, sinks);
    CUDA_CHECK_LAST();
}

template <int HD>
static void backward_mma(backend *be, void *dq, void *dk, void *dv, const void *dout, const float *lse,
                         const float *Dsum, const void *q, const void *k, const void *v, const int32_t *doc_start, int B,
                         int Tq, int Tk, int H, int KVH, float scale, float scale_log2, int window) {
    cudaStream_t st = cuda_state_of(be)->stream;
    int smem = attn_cfg<HD>::BWD_BYTES;
    CUDA_CHECK(cudaFuncSetAttribute(attention_backward_kv_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    CUDA_CHECK(cudaFuncSetAttribute(attention_backward_q_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    dim3 gkv((unsigned)((Tk + 63) / 64), (unsigned)KVH, (unsigned)B);
    attention_backward_kv_kernel<HD><<<gkv, attn_cfg<HD>::THREADS, smem, st>>>(
        (bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, lse, Dsum, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
        doc_start, Tq, Tk, H, KVH, scale, scale_log2, window);
    CUDA_CHECK_LAST();
    dim3 gq((unsigned)((Tq + 63) / 64), (unsigned)H, (unsigned)B);
    attention_backward_q_kernel<HD><<<gq, attn_cfg<HD>::THREADS, smem, st>>>(
        (bf16 *)dq, (const bf16 *)dout, lse, Dsum, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, Tq,
        Tk, H, KVH, scale, scale_log2, window);
    CUDA_CHECK_LAST();
}

static void cu_attention_backward(backend *be, void *dq, void *dk, void *dv, const void *dout, const void *out,
                                  const float *lse, const void *q, const void *k, const void *v,
                                  const int32_t *doc_start, int packed, int B, int Tq, int Tk, int n_heads, int n_kv_heads, int hd,
                                  float scale, int window, const float *sinks, float *dsinks) {
    check_shapes(B, Tq, Tk, n_heads, n_kv_heads, hd);
    if (cuda_attention_cudnn_backward(be, dq, dk, dv, dout, out, lse, q, k, v, doc_start, packed, B, Tq, Tk, n_heads,
                                      n_kv_heads, hd, scale, window, sinks))
        return;
    if (window < 0) window = 0;
    cudaStream_t st = cuda_state_of(be)->stream;
    float scale_log2 = scale * LOG2E_F;
    size_t rows = (size_t)B * Tq * n_heads;
    float *Dsum = (float *)cuda_scratch(be, rows * sizeof(float));
    cuda_attention_dsum(be, Dsum, dout, out, B, Tq, n_heads, hd);
    if (sinks && dsinks) {
        attention_dsinks_kernel<<<(unsigned)n_heads, 256, 0, st>>>(dsinks, sinks, lse, Dsum, B, Tq, n_heads);
        CUDA_CHECK_LAST();
    }
    if (use_mma(be, hd, dq, dk, dv, dout) && aligned16(q) && aligned16(k) && aligned16(v)) {
        if (hd == 64)
            backward_mma<64>(be, dq, dk, dv, dout, lse, Dsum, q, k, v, doc_start, B, Tq, Tk, n_heads, n_kv_heads,
                             scale, scale_log2, window);
        else
            backward_mma<128>(be, dq, dk, dv, dout, lse, Dsum, q, k, v, doc_start, B, Tq, Tk, n_heads, n_kv_heads,
                              scale, scale_log2, window);
        return;
    }
    attention_backward_q_generic_kernel<<<(unsigned)((rows * 32 + 127) / 128), 128, 0, st>>>(
        (bf16 *)dq, (const bf16 *)dout, lse, Dsum, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, doc_start, B, Tq,
        Tk, n_heads, n_kv_heads, hd, scale, scale_log2, window);
    CUDA_CHECK_LAST();
    size_t krows = (size_t)B * Tk * n_kv_heads;
    attention_backward_kv_generic_kernel<<<(unsigned)((krows * 32 + 127) / 128), 128, 0, st>>>(
        (bf16 *)dk, (bf16 *)dv, (const bf16 *)dout, lse, Dsum, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
        doc_start, B, Tq, Tk, n_heads, n_kv_heads, hd, scale, scale_log2, window);
    CUDA_CHECK_LAST();
}

void cuda_attention_install(backend *be) {
    be->attention_forward = cu_attention_forward;
    be->attention_backward = cu_attention_backward;
    cuda_attention_cudnn_install(be);
}
