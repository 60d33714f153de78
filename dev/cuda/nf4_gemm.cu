// dev/cuda/nf4_gemm.cu — the NF4 (QLoRA) frozen-linear lab (llm.c's dev/cuda manner): the forward
// y = x·Wᵀ and the input gradient dx = dy·W over a 4-bit NF4 weight W (OC, IC) in bitsandbytes'
// layout (kernels/nf4_format.h: blocks of 64 over the flat row-major matrix, two codes a byte,
// first in the high nibble; absmax plain or double-quantised), a CPU reference, numbered versions,
// a check of each, and a benchmark.
//
//   nf4_gemm [version] [--N 2048[,N2...]] [--IC 4096] [--OC 4096] [--plain] [--no-bwd]
//            [--splits S] [--repeats 20] [--no-bench]
//
// Several N (comma-separated) reuse one quantised weight (quantising 59M weights on the host is
// the slow part); one table at the end.
// version 0 (default) runs every version.  Llama-3.1-8B's frozen linears: --IC 4096 with --OC 4096
// (q, o), 1024 (k, v), 14336 (gate, up), and --IC 14336 --OC 4096 (down); N = tokens of a
// micro-batch.  --plain: f32 absmax (bnb_4bit_use_double_quant=False) instead of the default
// double quantisation.  Exit status 1 when a checked version fails, 77 without a GPU.
//
// Inputs: W uniform in ±0.05, quantised on the host by nf4_quantize (bit-exact with bitsandbytes'
// quantize_4bit); x and dy uniform bf16 in ±1.  The reference is the CPU backend's
// nf4_linear_forward / nf4_linear_backward (kernels/cpu/nf4.c: dequantise rows to f32, then the
// f32 GEMM) on the same NF4 tensor and the same bf16 inputs, on row slices of x / dy (the first
// and the last 128 rows: every row of the small shapes; a GEMM's row depends only on its own input
// row, so the slices check both edges of the row tiling without an hour of CPU on 4096 × 14336).
// Outputs are poisoned (NaN) before every run.  Bound: ‖Δ‖/‖ref‖ ≤ 5e-3 and no non-finite element.
// Why: both GPU versions multiply bf16 weights (the f32 code·absmax rounded once to bf16, as
// bitsandbytes' dequantize_4bit and kernels/cuda/nf4.cu do) where the reference keeps f32 — a
// relative error ≤ 2^-9 per weight, independent between weights, ≈ 2^-9/√3 ≈ 1.1e-3 rms on each
// output — and round the f32 sum to bf16 once more (≈ 1.1e-3 rms): ≈ 1.6e-3 together (2.1e-3
// measured on the emulator's cases, every one); the fp32 sums' order adds ~1e-6.  5e-3 is 2.4×
// the measured; a wrong scale, nibble or block is ≥ 1e-1 (swapping the nibbles: 1.4).  Versions
// 1 and 2 see the same bf16 weights, so the line also prints v2 against v1 (order of sums only).
//
// Versions
//  1. production (kernels/cuda/nf4.cu through the op table): nf4_linear_forward / _backward, i.e.
//     nf4_dequantize_kernel into a bf16 (OC, IC) workspace, then cuBLASLt (linear.cu) over it.
//  2. fused dequantise-GEMM on mma.sync.m16n8k16 (bf16 → f32) + ldmatrix (kernels/cuda/mma_ptx.cuh):
//     a block of 8 warps computes a BM × BN tile of the output over 64-wide steps of the
//     reduction.  Per step the A tile (x or dy rows, BM × 64 bf16) arrives by cp.async, and the
//     W tile is decoded in shared memory from its packed codes: each thread loads 16 bytes of codes
//     (32 weights of one row, inside one 64-block) and the block's absmax — plain f32, or the u8
//     qabsmax with its nested f32 absmax, decoded as dyn[q]·nested + offset with each step rounded
//     (bitsandbytes' order) — into registers one step ahead (the global loads fly under the
//     current step's MMAs), then writes code·absmax rounded once to bf16: the very bits of v1's
//     workspace.  Forward: W tile BN (OC) × 64 (IC) row-major, the B operand by ldmatrix; dX: W tile
//     64 (OC) × BN (IC), B by ldmatrix.trans.  Two configurations: BM 128 × BN 128 (warps 2 × 4,
//     64 × 32 each) for N > 64, and BM 32 × BN 64 (warps 2 × 4, 16 × 16 each) for N ≤ 64.  Shapes
//     whose IC or OC is not a multiple of 64 take a scalar path of the same kernel (each weight
//     decoded from its own byte and block, A loaded with bounds): the emulator's odd shapes.
//  3. v2 with split-K where its grid is short: the reduction's Kr / 64 steps in S splits (grid z)
//     so that ~2 (128 × 128) or ~4 (32 × 64) blocks run on every SM, each split writing f32 partial
//     sums (S, N, Nout) into the (OC, IC) bf16 workspace production already owns (so S ≤
//     2·OC·IC / (4·N·Nout)), then ng_reduce adds the splits in order and rounds once to bf16
//     (deterministic).  v2's blocks each wait one DRAM latency per step with one step of codes in
//     flight, so at small N its time is ≈ Kr / 64 latencies whatever the width; v3 divides that by
//     S.  --splits S forces S (the emulator has 2 SMs, where the automatic S is 1).
//
// The prediction (design figures from ptxas, occupancy, times) is in docs/BENCHMARKS.md,
// "Prediction (not a measurement): the NF4 workspace path against a fused dequantise-GEMM".
#include "common.cuh"   // first: the emulator's rewrite puts emu.h before it
#include "lab_common.cuh"
#include "kernels/nf4_format.h"
#include "mma_ptx.cuh"
#include <cuda_pipeline_primitives.h>
#include <string>

struct ng_shape {
    int only = 0, IC = 4096, OC = 4096, plain = 0, bwd = 1, repeats = 20, bench = 1, splits = 0;
    std::vector<int> Ns = {2048};
};

// "16,256,2048": the N values, each ≥ 1.
static std::vector<int> ng_list(const char *opt, const char *val) {
    std::vector<int> v;
    std::string all = val ? val : "";
    size_t p = 0;
    do {
        size_t q = all.find(',', p);
        std::string one = all.substr(p, q == std::string::npos ? std::string::npos : q - p);
        v.push_back(lab_int(opt, one.c_str(), 1));
        p = q == std::string::npos ? q : q + 1;
    } while (p != std::string::npos);
    return v;
}

static ng_shape ng_parse(int argc, char **argv, int n_versions) {
    ng_shape s;
    for (int a = 1; a < argc; a++) {
        const char *o = argv[a], *val = a + 1 < argc ? argv[a + 1] : NULL;
        if (!strcmp(o, "--N")) s.Ns = ng_list(o, val), a++;
        else if (!strcmp(o, "--IC")) s.IC = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--OC")) s.OC = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--repeats")) s.repeats = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--splits")) s.splits = lab_int(o, val, 1), a++;
        else if (!strcmp(o, "--plain")) s.plain = 1;
        else if (!strcmp(o, "--no-bwd")) s.bwd = 0;
        else if (!strcmp(o, "--no-bench")) s.bench = 0;
        else if (o[0] >= '0' && o[0] <= '9') s.only = lab_int("version", o, 0);
        else {
            fprintf(stderr, "usage: nf4_gemm [version] [--N 2048[,N2...]] [--IC 4096] [--OC 4096] [--plain] [--no-bwd] "
                    "[--splits S] [--repeats 20] [--no-bench]\n");
            exit(2);
        }
    }
    if (s.only > n_versions) {
        fprintf(stderr, "nf4_gemm: version <= %d\n", n_versions);
        exit(2);
    }
#ifdef QUARRY_EMU
    s.bench = 0;  // the emulator checks logic only
#endif
    return s;
}

// Versions 2 and 3: the fused dequantise-GEMM.

enum { NG_THREADS = 256, NG_BK = 64, NG_LDA = NG_BK + 8 };  // rows padded by 16 bytes: ldmatrix without bank conflicts

// The code maps: a kernel parameter (1088 bytes, as kernels/cuda/nf4.cu passes them), copied to
// shared memory (divergent look-ups would serialise in the constant bank).
struct ng_maps {
    float nf4[16];
    float dyn[256];
};
static ng_maps ng_maps_make() {
    ng_maps m;
    for (int i = 0; i < 16; i++) m.nf4[i] = nf4_code(i);
    for (int i = 0; i < 256; i++) m.dyn[i] = nf4_dynamic_code(i);
    return m;
}

// The W tile of one reduction step: R rows (OC) × C columns (IC) of W, row-major in shared memory
// with pitch C + 8.  Forward: R = BN, C = 64; dX: R = 64, C = BN.  FAST (IC, OC multiples of 64):
// each thread holds one chunk of 32 weights (16 bytes of codes, one 64-block) in registers.
template <int R, int C> struct ng_wtile {
    static constexpr int LD = C + 8, CHUNKS = R * C / 32;
    static_assert(CHUNKS <= NG_THREADS, "one chunk per thread at most");
    uint4 codes;
    float s1;    // plain: the absmax; double quant: the nested absmax
    int q;       // double quant: the u8 qabsmax; -1: chunk out of range (zeros)
};

template <int R, int C>
__device__ __forceinline__ void ng_load_w(ng_wtile<R, C> &t, const uint8_t *packed, const float *absmax,
                                          const uint8_t *qabsmax, const float *nested, int oc0, int ic0, int IC,
                                          int OC) {
    t.q = -1;
    if (threadIdx.x >= ng_wtile<R, C>::CHUNKS) return;
    const int r = threadIdx.x / (C / 32), c = threadIdx.x % (C / 32) * 32;
    const int oc = oc0 + r, ic = ic0 + c;
    if (oc >= OC || ic >= IC) return;
    const size_t i = (size_t)oc * IC + ic, b = i / NF4_BLOCK;   // i % 32 == 0: 16-byte aligned codes
    t.codes = *reinterpret_cast<const uint4 *>(packed + i / 2);
    if (qabsmax) t.q = qabsmax[b], t.s1 = nested[b / NF4_NESTED_BLOCK];
    else t.q = 0, t.s1 = absmax[b];
}

template <int R, int C>
__device__ __forceinline__ void ng_store_w(bf16 *ws, const ng_wtile<R, C> &t, const ng_maps *maps, int dq,
                                           float offset) {
    if (threadIdx.x >= ng_wtile<R, C>::CHUNKS) return;
    const int r = threadIdx.x / (C / 32), c = threadIdx.x % (C / 32) * 32;
    uint4 *dst = reinterpret_cast<uint4 *>(ws + r * ng_wtile<R, C>::LD + c);
    if (t.q < 0) {
        for (int j = 0; j < 4; j++) dst[j] = make_uint4(0, 0, 0, 0);
        return;
    }
    // nf4.cu's scale: dyn·nested + offset, each step rounded (no FMA), as bitsandbytes computes it.
    const float s = dq ? __fadd_rn(__fmul_rn(maps->dyn[t.q], t.s1), offset) : t.s1;
    const uint32_t w[4] = {t.codes.x, t.codes.y, t.codes.z, t.codes.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        uint32_t p[4];
#pragma unroll
        for (int h = 0; h < 4; h++) {   // byte h of the word: weights 2h (high nibble), 2h + 1 (low)
            const uint32_t byte = (w[j] >> (8 * h)) & 0xffu;
            p[h] = v3_pack(__fmul_rn(maps->nf4[byte >> 4], s), __fmul_rn(maps->nf4[byte & 15], s));
        }
        dst[j] = make_uint4(p[0], p[1], p[2], p[3]);
    }
}

// The scalar path (IC or OC not a multiple of 64): each weight from its own byte and block.
template <int R, int C>
__device__ void ng_decode_w_scalar(bf16 *ws, const uint8_t *packed, const float *absmax, const uint8_t *qabsmax,
                                   const float *nested, float offset, const ng_maps *maps, int oc0, int ic0, int IC,
                                   int OC) {
    for (int e = threadIdx.x; e < R * C; e += NG_THREADS) {
        const int r = e / C, c = e % C, oc = oc0 + r, ic = ic0 + c;
        float v = 0.0f;
        if (oc < OC && ic < IC) {
            const size_t i = (size_t)oc * IC + ic, b = i / NF4_BLOCK;
            const float s = qabsmax ? __fadd_rn(__fmul_rn(maps->dyn[qabsmax[b]], nested[b / NF4_NESTED_BLOCK]), offset)
                                    : absmax[b];
            const uint8_t byte = packed[i / 2];
            v = __fmul_rn(maps->nf4[i % 2 ? byte & 15 : byte >> 4], s);
        }
        ws[r * ng_wtile<R, C>::LD + c] = __float2bfloat16_rn(v);
    }
}

// A tile (BM × 64) of a (M, Kr) row-major bf16 matrix at (m0, k0); rows ≥ M and columns ≥ Kr are
// zero.  FAST: 16-byte cp.async copies (one batch); else scalar loads.
template <int BM, bool FAST>
__device__ __forceinline__ void ng_load_a(bf16 *as, const bf16 *a, int m0, int k0, int M, int Kr) {
    if (FAST) {
        for (int idx = threadIdx.x; idx < BM * NG_BK / 8; idx += NG_THREADS) {
            const int r = idx / (NG_BK / 8), c = idx % (NG_BK / 8) * 8;
            bf16 *d = as + r * NG_LDA + c;
            if (m0 + r < M) __pipeline_memcpy_async(d, a + (size_t)(m0 + r) * Kr + k0 + c, 16);
            else *reinterpret_cast<uint4 *>(d) = make_uint4(0, 0, 0, 0);
        }
        __pipeline_commit();
    } else {
        for (int idx = threadIdx.x; idx < BM * NG_BK; idx += NG_THREADS) {
            const int r = idx / NG_BK, c = idx % NG_BK;
            const bool in = m0 + r < M && k0 + c < Kr;
            as[r * NG_LDA + c] = in ? a[(size_t)(m0 + r) * Kr + k0 + c] : __float2bfloat16_rn(0.0f);
        }
    }
}

// out (M, Nout) = a (M, Kr) · op(W), bf16 in and out, f32 accumulation.  Forward (BWD false):
// a = x (N, IC), Kr = IC, Nout = OC, op(W) = Wᵀ.  dX (BWD true): a = dy (N, OC), Kr = OC, Nout = IC,
// op(W) = W.  Grid (ceil(Nout / BN), ceil(M / BM)); 256 threads; warps WM (rows) × 8/WM (columns).
// Shared memory: two stages of the A and W tiles, and the code maps.
template <int BM, int BN, int WM> struct ng_cfg {
    static constexpr int WN = 8 / WM, MT = BM / WM / 16, NT = BN / WN / 8;
    static_assert(MT >= 1 && NT % 2 == 0, "warp tile: whole m16 tiles, n8 tiles in pairs");
    static constexpr int A_TILE = BM * NG_LDA;
    static constexpr int W_TILE = BN * NG_LDA > NG_BK * (BN + 8) ? BN * NG_LDA : NG_BK * (BN + 8);
    static constexpr int SMEM = 2 * (A_TILE + W_TILE) * 2 + (int)sizeof(ng_maps);
};

template <int BM, int BN, int WM, bool BWD, bool FAST>
__global__ void __launch_bounds__(NG_THREADS, BM >= 128 ? 2 : 4)
nf4_gemm_v2(bf16 *out, const bf16 *a, const uint8_t *packed, const float *absmax, const uint8_t *qabsmax,
            const float *nested, float offset, int M, int IC, int OC, ng_maps mp, int kps, float *partial) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
    __trap();
#else
    typedef ng_cfg<BM, BN, WM> cfg;
    constexpr int WR = BWD ? NG_BK : BN, WC = BWD ? BN : NG_BK;   // the W tile: rows (OC) × columns (IC)
    typedef ng_wtile<WR, WC> wt;
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *as = (bf16 *)smem, *ws = as + 2 * cfg::A_TILE;
    ng_maps *maps = (ng_maps *)(ws + 2 * cfg::W_TILE);
    const int Kr = BWD ? OC : IC, Nout = BWD ? IC : OC;
    const int n0 = blockIdx.x * BN, m0 = blockIdx.y * BM, KT = (Kr + NG_BK - 1) / NG_BK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int mi = lane >> 3, r8 = lane & 7;   // ldmatrix: this lane's matrix and row
    const int wm0 = warp / cfg::WN * (BM / WM), wn0 = warp % cfg::WN * (BN / cfg::WN);
    const int dq = qabsmax != NULL;
    for (int i = threadIdx.x; i < 16 + 256; i += NG_THREADS) {
        if (i < 16) maps->nf4[i] = mp.nf4[i];
        else maps->dyn[i - 16] = mp.dyn[i - 16];
    }
    // Where step kt's W tile starts in W: forward rows n0.., columns 64kt..; dX rows 64kt.., columns n0...
    auto w_oc0 = [&](int kt) { return BWD ? kt * NG_BK : n0; };
    auto w_ic0 = [&](int kt) { return BWD ? n0 : kt * NG_BK; };

    float acc[cfg::MT][cfg::NT][4];
#pragma unroll
    for (int i = 0; i < cfg::MT; i++)
#pragma unroll
        for (int j = 0; j < cfg::NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    // This block's steps of the reduction: all (v2), or split z of gridDim.z (v3).
    const int kt0 = blockIdx.z * kps, kt1 = min(KT, kt0 + kps);
    wt wreg;
    ng_load_a<BM, FAST>(as, a, m0, kt0 * NG_BK, M, Kr);
    if (FAST) ng_load_w<WR, WC>(wreg, packed, absmax, qabsmax, nested, w_oc0(kt0), w_ic0(kt0), IC, OC);
    __syncthreads();   // the maps
    for (int kt = kt0; kt < kt1; kt++) {
        const int st = (kt - kt0) & 1;
        bf16 *Ast = as + st * cfg::A_TILE, *Wst = ws + st * cfg::W_TILE;
        // Step kt's W tile into stage st: its last readers (step kt − 2) passed step kt − 1's barrier.
        if (FAST) ng_store_w<WR, WC>(Wst, wreg, maps, dq, offset);
        else ng_decode_w_scalar<WR, WC>(Wst, packed, absmax, qabsmax, nested, offset, maps, w_oc0(kt), w_ic0(kt), IC,
                                        OC);
        if (FAST) __pipeline_wait_prior(0);   // this thread's copies of step kt's A tile
        __syncthreads();   // every thread's A and W of step kt are in; step kt − 1's readers are done
        if (kt + 1 < kt1) {   // step kt + 1 into the other stage (free since the barrier), in flight under the MMAs
            ng_load_a<BM, FAST>(as + (st ^ 1) * cfg::A_TILE, a, m0, (kt + 1) * NG_BK, M, Kr);
            if (FAST) ng_load_w<WR, WC>(wreg, packed, absmax, qabsmax, nested, w_oc0(kt + 1), w_ic0(kt + 1), IC, OC);
        }
#pragma unroll
        for (int kk = 0; kk < NG_BK / 16; kk++) {
            uint32_t af[cfg::MT][4];
#pragma unroll
            for (int i = 0; i < cfg::MT; i++)   // matrices: rows 0-7 | 8-15 (mi % 2) × k 0-7 | 8-15 (mi / 2)
                v3_ldsm_x4(af[i], Ast + (wm0 + i * 16 + (mi & 1) * 8 + r8) * NG_LDA + kk * 16 + (mi >> 1) * 8);
#pragma unroll
            for (int np = 0; np < cfg::NT / 2; np++) {
                uint32_t bf[4];
                if (!BWD)   // W rows are output columns: matrices n 0-7 | 8-15 (mi / 2) × k 0-7 | 8-15 (mi % 2)
                    v3_ldsm_x4(bf, Wst + (wn0 + np * 16 + (mi >> 1) * 8 + r8) * wt::LD + kk * 16 + (mi & 1) * 8);
                else        // W rows are the reduction: k 0-7 | 8-15 (mi % 2) × n 0-7 | 8-15 (mi / 2), transposed
                    v3_ldsm_x4_t(bf, Wst + (kk * 16 + (mi & 1) * 8 + r8) * wt::LD + wn0 + np * 16 + (mi >> 1) * 8);
#pragma unroll
                for (int i = 0; i < cfg::MT; i++) {
                    v3_mma(acc[i][2 * np], af[i], bf[0], bf[1]);
                    v3_mma(acc[i][2 * np + 1], af[i], bf[2], bf[3]);
                }
            }
        }
    }
    // c0, c1: row g, columns 2t, 2t + 1; c2, c3: row g + 8.
#pragma unroll
    for (int i = 0; i < cfg::MT; i++)
#pragma unroll
        for (int j = 0; j < cfg::NT; j++)
#pragma unroll
            for (int x = 0; x < 2; x++) {
                const int row = m0 + wm0 + i * 16 + g + 8 * x, col = n0 + wn0 + j * 8 + 2 * t;
                if (row >= M || col >= Nout) continue;
                if (partial) {   // v3: this split's f32 sums, (gridDim.z, M, Nout); ng_reduce adds them
                    float *p = partial + ((size_t)blockIdx.z * M + row) * Nout + col;
                    p[0] = acc[i][j][2 * x];
                    if (col + 1 < Nout) p[1] = acc[i][j][2 * x + 1];
                    continue;
                }
                bf16 *o = out + (size_t)row * Nout + col;
                if (col + 1 < Nout && Nout % 2 == 0) {
                    *reinterpret_cast<__nv_bfloat162 *>(o) =
                        __floats2bfloat162_rn(acc[i][j][2 * x], acc[i][j][2 * x + 1]);
                } else {
                    o[0] = __float2bfloat16_rn(acc[i][j][2 * x]);
                    if (col + 1 < Nout) o[1] = __float2bfloat16_rn(acc[i][j][2 * x + 1]);
                }
            }
#endif
}

static int ng_force_splits;   // --splits S: v3's S, whatever the grid (the emulator has 2 SMs)
static int ng_last_splits;    // the S of the last launch, for the check's line

// v3's second kernel: out (n, bf16) = Σ_z partial[z] (n f32 each), z in order (deterministic).
__global__ void ng_reduce(bf16 *out, const float *partial, size_t n, int S) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float sum = partial[i];
        for (int z = 1; z < S; z++) sum += partial[(size_t)z * n + i];
        out[i] = __float2bfloat16_rn(sum);
    }
}

// split: v3 — the reduction in S splits (grid z) when the (Nout, M) grid alone would leave SMs
// idle: S fills ~bps blocks on every SM, capped by the steps and by ws_bytes (S · M · Nout f32
// partials; the production op's bf16 (OC, IC) workspace holds them while M ≤ IC / 2 / S).
template <int BM, int BN, int WM, bool BWD, bool FAST>
static void ng_launch(backend *be, void *out, const void *a, const nf4_tensor *w, int M, int IC, int OC, int split,
                      void *ws, size_t ws_bytes, int bps) {
    typedef ng_cfg<BM, BN, WM> cfg;
    auto kern = nf4_gemm_v2<BM, BN, WM, BWD, FAST>;
    CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, cfg::SMEM));
    const int Nout = BWD ? IC : OC, KT = ((BWD ? OC : IC) + NG_BK - 1) / NG_BK;
    dim3 grid((Nout + BN - 1) / BN, (M + BM - 1) / BM);
    int S = 1;
    if (split) {
        const long blocks = (long)grid.x * grid.y, want = (long)bps * cuda_state_of(be)->props.multiProcessorCount;
        const long s0 = ng_force_splits ? ng_force_splits : (want + blocks - 1) / blocks;
        S = (int)std::max(1L, std::min<long>({s0, (long)KT, (long)(ws_bytes / ((size_t)M * Nout * 4))}));
    }
    const int kps = (KT + S - 1) / S;
    S = (KT + kps - 1) / kps;   // no empty split
    grid.z = S;
    ng_last_splits = S;
    float *partial = S > 1 ? (float *)ws : NULL;
    kern<<<grid, NG_THREADS, cfg::SMEM, cuda_state_of(be)->stream>>>(
        (bf16 *)out, (const bf16 *)a, w->packed, w->absmax, w->qabsmax, w->nested_absmax, w->offset, M, IC, OC,
        ng_maps_make(), kps, partial);
    CUDA_CHECK_LAST();
    if (partial) {
        const size_t n = (size_t)M * Nout;
        ng_reduce<<<grid_for(be, n, 256), 256, 0, cuda_state_of(be)->stream>>>((bf16 *)out, partial, n, S);
        CUDA_CHECK_LAST();
    }
}

template <bool BWD>
static void ng_v2(backend *be, void *out, const void *a, const nf4_tensor *w, int M, int IC, int OC, int split,
                  void *ws, size_t ws_bytes) {
    const bool fast = IC % 64 == 0 && OC % 64 == 0;
    if (M > 64) {
        if (fast) ng_launch<128, 128, 2, BWD, true>(be, out, a, w, M, IC, OC, split, ws, ws_bytes, 2);
        else ng_launch<128, 128, 2, BWD, false>(be, out, a, w, M, IC, OC, split, ws, ws_bytes, 2);
    } else {
        if (fast) ng_launch<32, 64, 2, BWD, true>(be, out, a, w, M, IC, OC, split, ws, ws_bytes, 4);
        else ng_launch<32, 64, 2, BWD, false>(be, out, a, w, M, IC, OC, split, ws, ws_bytes, 4);
    }
}

// The versions: forward and dX of one shape.

typedef void (*ng_fn)(backend *, void *out, const void *a, const nf4_tensor *w, int N, int IC, int OC, void *ws);
static void v1_fwd(backend *be, void *y, const void *x, const nf4_tensor *w, int N, int IC, int OC, void *ws) {
    be->nf4_linear_forward(be, y, x, w, NULL, N, IC, OC, 1.0f, 0, ws);
}
static void v1_bwd(backend *be, void *dx, const void *dy, const nf4_tensor *w, int N, int IC, int OC, void *ws) {
    be->nf4_linear_backward(be, dx, dy, w, N, IC, OC, 1.0f, 0, ws);
}
static void v2_fwd(backend *be, void *y, const void *x, const nf4_tensor *w, int N, int IC, int OC, void *) {
    ng_v2<false>(be, y, x, w, N, IC, OC, 0, NULL, 0);
}
static void v2_bwd(backend *be, void *dx, const void *dy, const nf4_tensor *w, int N, int IC, int OC, void *) {
    ng_v2<true>(be, dx, dy, w, N, IC, OC, 0, NULL, 0);
}
// v3: the partials in the workspace production already owns (bf16 (OC, IC)).
static void v3_fwd(backend *be, void *y, const void *x, const nf4_tensor *w, int N, int IC, int OC, void *ws) {
    ng_v2<false>(be, y, x, w, N, IC, OC, 1, ws, (size_t)OC * IC * 2);
}
static void v3_bwd(backend *be, void *dx, const void *dy, const nf4_tensor *w, int N, int IC, int OC, void *ws) {
    ng_v2<true>(be, dx, dy, w, N, IC, OC, 1, ws, (size_t)OC * IC * 2);
}
struct version {
    const char *name;
    ng_fn fwd, bwd;
};
static const version versions[] = {
    {"production: dequantise → bf16 workspace → cuBLASLt", v1_fwd, v1_bwd},
    {"fused dequantise-GEMM, mma.sync + ldmatrix", v2_fwd, v2_bwd},
    {"v2 + split-K where the grid is short", v3_fwd, v3_bwd},
};
static const int n_versions = sizeof versions / sizeof versions[0];

// An NF4 tensor's buffers on the host (the CPU backend's memory) and a device copy.
struct ng_host {
    std::vector<uint8_t> packed, qabsmax;
    std::vector<float> absmax, nested;
    nf4_tensor t;
};
static void ng_quantize(ng_host &h, const std::vector<float> &w, int plain) {
    const size_t n = w.size(), nb = nf4_n_blocks(n);
    h.packed.resize(nf4_packed_bytes(n));
    h.t = nf4_tensor{};
    h.t.packed = h.packed.data(), h.t.packed_bytes = h.packed.size();
    if (plain) {
        h.absmax.resize(nb);
        h.t.absmax = h.absmax.data(), h.t.n_absmax = nb;
    } else {
        h.qabsmax.resize(nb), h.nested.resize(nf4_n_nested(n));
        h.t.qabsmax = h.qabsmax.data(), h.t.n_qabsmax = nb;
        h.t.nested_absmax = h.nested.data(), h.t.n_nested = h.nested.size();
    }
    char err[256];
    if (nf4_quantize(&h.t, w.data(), DTYPE_F32, n, err, sizeof err)) {
        fprintf(stderr, "nf4_gemm: %s\n", err);
        exit(1);
    }
}
static void *ng_dev_copy(backend *be, const void *p, size_t bytes) {
    if (!p) return NULL;
    void *d = lab_alloc(be, bytes);
    be->copy_to_device(be, d, p, bytes);
    return d;
}

// The checked rows: all when N ≤ 256, else the first and the last 128.
static std::vector<std::pair<int, int>> ng_slices(int N) {
    if (N <= 256) return {{0, N}};
    return {{0, 128}, {N - 128, N}};
}

int main(int argc, char **argv) {
    const ng_shape sh = ng_parse(argc, argv, n_versions);
    ng_force_splits = sh.splits;
    const int IC = sh.IC, OC = sh.OC, maxN = *std::max_element(sh.Ns.begin(), sh.Ns.end());
    backend *gpu = lab_gpu(), *cpu = backend_cpu(0);
    const size_t nw = (size_t)OC * IC;
    lab_print_card("nf4_gemm", gpu);
    printf("IC=%d OC=%d, %s absmax%s\n", IC, OC, sh.plain ? "plain f32" : "double-quantised",
           IC % 64 || OC % 64 ? " (v2: the scalar path)" : "");

    ng_host wh;
    ng_quantize(wh, lab_rand_bf(nw, 0.05f, 3), sh.plain);
    nf4_tensor wd = wh.t;   // device pointers, the same lengths
    wd.packed = (uint8_t *)ng_dev_copy(gpu, wh.t.packed, wh.t.packed_bytes);
    wd.absmax = (float *)ng_dev_copy(gpu, wh.t.absmax, wh.t.n_absmax * 4);
    wd.qabsmax = (uint8_t *)ng_dev_copy(gpu, wh.t.qabsmax, wh.t.n_qabsmax);
    wd.nested_absmax = (float *)ng_dev_copy(gpu, wh.t.nested_absmax, wh.t.n_nested * 4);
    // The first N rows of x and dy are the inputs of size N.
    std::vector<float> x = lab_rand_bf((size_t)maxN * IC, 1.0f, 1), dy = lab_rand_bf((size_t)maxN * OC, 1.0f, 2);
    void *xg = lab_put(gpu, x), *dyg = lab_put(gpu, dy), *yg = lab_alloc(gpu, (size_t)maxN * OC * 2),
         *dxg = lab_alloc(gpu, (size_t)maxN * IC * 2), *wsg = lab_alloc(gpu, nw * 2);
    // The card's measured ceilings (docs/BENCHMARKS.md: an H200's bf16 cuBLASLt GEMM and copy);
    // an H100 (or another card) against its datasheet (989 TFLOP/s dense bf16, 3.35 TB/s).
    const bool h200 = strstr(cuda_state_of(gpu)->props.name, "H200") != NULL;
    const double ceil_tf = h200 ? 790e12 : 989e12, ceil_bw = h200 ? 4.3e12 : 3.35e12;
    const char *ceil_src = h200 ? "H200, measured" : "H100 SXM datasheet";
    int failed = 0;
    std::vector<std::string> table;   // the benchmark's rows, every N
    std::vector<int> timed_versions;
    for (const int N : sh.Ns) {
        printf("N=%d\n", N);
        // The reference on the checked rows: the CPU backend's NF4 ops (f32 weights, f32 GEMM).
        const auto slices = ng_slices(N);
        int nref = 0;
        for (auto &s : slices) nref += s.second - s.first;
        std::vector<float> yref((size_t)nref * OC), dxref((size_t)nref * IC);
        {
            int r = 0;
            for (auto &s : slices) {
                const int rows = s.second - s.first;
                cpu->nf4_linear_forward(cpu, yref.data() + (size_t)r * OC, x.data() + (size_t)s.first * IC, &wh.t, NULL,
                                        rows, IC, OC, 1.0f, 0, NULL);
                if (sh.bwd)
                    cpu->nf4_linear_backward(cpu, dxref.data() + (size_t)r * IC, dy.data() + (size_t)s.first * OC,
                                             &wh.t,
                                             rows, IC, OC, 1.0f, 0, NULL);
                r += rows;
            }
            cpu->synchronize(cpu);
        }
        auto rows_of = [&](const std::vector<float> &full, int cols) {
            std::vector<float> o;
            o.reserve((size_t)nref * cols);
            for (auto &s : slices)
                o.insert(o.end(), full.begin() + (size_t)s.first * cols, full.begin() + (size_t)s.second * cols);
            return o;
        };

        std::vector<std::pair<int, double>> res_f, res_b;
        std::vector<float> y1, dx1;   // version 1's outputs, to set version 2 against
        cudaStream_t st = cuda_state_of(gpu)->stream;
        for (int vi = 1; vi <= n_versions; vi++) {
            if (sh.only && vi != sh.only) continue;
            const version &ver = versions[vi - 1];
            for (int b = 0; b <= sh.bwd; b++) {
                void *out = b ? dxg : yg;
                const void *in = b ? dyg : xg;
                const int cols = b ? IC : OC;
                const size_t n_out = (size_t)N * cols;
                CUDA_CHECK(cudaMemsetAsync(out, 0xff, n_out * 2, st));
                (b ? ver.bwd : ver.fwd)(gpu, out, in, &wd, N, IC, OC, wsg);
                gpu->synchronize(gpu);
                std::vector<float> got = lab_get_bf16(gpu, out, n_out);
                size_t unwritten = 0;
                for (float v : got) unwritten += !(fabsf(v) <= 1e30f);
                std::vector<float> sl = rows_of(got, cols);
                lab_err e = lab_compare(sl.data(), (b ? dxref : yref).data(), sl.size());
                char vs1[64] = "";
                std::vector<float> &first = b ? dx1 : y1;
                if (vi == 1) first = got;
                else if (!first.empty()) {
                    lab_err d = lab_compare(got.data(), first.data(), n_out);
                    snprintf(vs1, sizeof vs1, ", vs v1 rel %.2e", d.rel);
                if (vi == 3) snprintf(vs1 + strlen(vs1), sizeof vs1 - strlen(vs1), ", %d splits", ng_last_splits);
                }
                const int ok = e.bad == 0 && unwritten == 0 && e.rel <= 5e-3;
                printf("%d %-4s %-52s check %s: rel %.2e max %.2e on %d rows, %zu non-finite%s\n", vi, b ? "dX" : "fwd",
                       ver.name, ok ? "ok" : "FAILED", e.rel, e.max, nref, unwritten, vs1);
                fflush(stdout);
                if (!ok) {
                    failed = 1;
                    continue;
                }
                lab_bench(b ? res_b : res_f, vi, gpu, sh.bench, sh.repeats,
                          [&] { (b ? ver.bwd : ver.fwd)(gpu, out, in, &wd, N, IC, OC, wsg); });
            }
        }
#ifndef QUARRY_EMU
        // The least bytes a product must move: the NF4 weight once (codes, the absmax), its input and
        // output in bf16.  Version 1 moves 4 B a weight more (the workspace written, then read).
        const double wbytes = (double)wh.t.packed_bytes + (sh.plain ? 4.0 * wh.t.n_absmax
                                                                     : (double)wh.t.n_qabsmax + 4.0 * wh.t.n_nested);
        const double bytes = wbytes + 2.0 * N * ((double)IC + OC), flops = 2.0 * N * (double)IC * OC;
        for (int b = 0; b < 2; b++) {
            const auto &res = b ? res_b : res_f;
            double base = 0;
            for (auto &r : res)
                if (r.first == 1) base = r.second;
            for (auto &r : res) {
                const double sec = r.second * 1e-3;
                char line[256], sp[32] = "";
                if (base > 0) snprintf(sp, sizeof sp, "%.2fx", base / r.second);
                snprintf(line, sizeof line, "| %s N=%d %dx%d | %d | %.4f | %.1f | %.1f%% | %.0f | %.1f%% | %s |",
                         b ? "dX" : "fwd", N, IC, OC, r.first, r.second, flops / sec / 1e12,
                         100.0 * flops / sec / ceil_tf, bytes / sec / 1e9, 100.0 * bytes / sec / ceil_bw, sp);
                table.push_back(line);
            }
        }
#endif
    }   // N
#ifndef QUARRY_EMU
    if (!table.empty()) {
        printf("\nceilings (%s): %.0f TFLOP/s, %.2f TB/s; GB/s over the least bytes (NF4 weight once, input and "
               "output bf16)\n", ceil_src, ceil_tf / 1e12, ceil_bw / 1e12);
        printf("\n| product | version | ms (median of %d) | TFLOP/s | of ceiling | GB/s | of ceiling | vs v1 |\n"
               "|---|---|---|---|---|---|---|---|\n", sh.repeats);
        for (auto &l : table) printf("%s\n", l.c_str());
        cudaFuncAttributes fa;
        const void *kern[4] = {(const void *)nf4_gemm_v2<128, 128, 2, false, true>,
                               (const void *)nf4_gemm_v2<128, 128, 2, true, true>,
                               (const void *)nf4_gemm_v2<32, 64, 2, false, true>,
                               (const void *)nf4_gemm_v2<32, 64, 2, true, true>};
        const char *kname[4] = {"fwd 128x128", "dX 128x128", "fwd 32x64", "dX 32x64"};
        for (int k = 0; k < 4; k++) {
            CUDA_CHECK(cudaFuncGetAttributes(&fa, kern[k]));
            printf("v2 %s: %d registers, %zu bytes local (spills)\n", kname[k], fa.numRegs, (size_t)fa.localSizeBytes);
        }
    }
#endif
    printf("nf4_gemm: %s\n", failed ? "FAILED" : "all checked versions pass");
    for (void *p : {(void *)wd.packed, (void *)wd.absmax, (void *)wd.qabsmax, (void *)wd.nested_absmax, xg, dyg, yg,
                    dxg, wsg})
        if (p) gpu->free(gpu, p);
    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return failed;
}
