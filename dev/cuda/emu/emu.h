// dev/cuda/emu/emu.h — a CPU emulation of the CUDA constructs the kernels of kernels/cuda use, so
// their index math, masks, tiling and synchronisation can be checked on a machine without a GPU:
// one std::thread per CUDA thread, barriers for __syncthreads/__syncwarp, shuffles and ballots
// through a per-warp exchange, WMMA fragments held whole by every lane (each lane does the full
// 16x16x16 product; the collective ops synchronise the warp before and after, as the hardware's
// warp-wide instructions do).  Shared memory starts as 0xff bytes (NaN) to expose unwritten reads.
// It checks logic, not speed, memory-model subtleties or the tensor-core fragment layouts.
#pragma once
#include <barrier>
#include <thread>
#include <vector>
#include <atomic>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#undef __launch_bounds__
#define __launch_bounds__(...)
using std::min;
using std::max;

struct emu_dim {
    unsigned x = 1, y = 1, z = 1;
    emu_dim() {}
    emu_dim(unsigned a) : x(a) {}
    emu_dim(dim3 d) : x(d.x), y(d.y), z(d.z) {}
};
struct emu_block {
    std::barrier<> *bar;
    std::vector<std::barrier<> *> wbar;
    float shfl[64][32];
    unsigned ballot[64][32];
    std::atomic<int> orflag{0};
    unsigned char *smem;
    std::mutex mu;
    std::map<int, std::vector<unsigned char>> statics;
    uint32_t xch[32][32][6];    // per warp and lane: the registers of a warp-wide mma / ldmatrix
    const void *xptr[32][32];
};
extern thread_local emu_dim threadIdx, blockIdx;
extern emu_dim blockDim, gridDim;
extern thread_local emu_block *emu_ctx;

static inline void __syncthreads() { emu_ctx->bar->arrive_and_wait(); }
static inline void __syncwarp(unsigned = 0xffffffffu) { emu_ctx->wbar[threadIdx.x / 32]->arrive_and_wait(); }
static inline int __syncthreads_or(int p) {
    emu_ctx->bar->arrive_and_wait();
    if (p) emu_ctx->orflag = 1;
    emu_ctx->bar->arrive_and_wait();
    int r = emu_ctx->orflag;
    emu_ctx->bar->arrive_and_wait();
    if (threadIdx.x == 0) emu_ctx->orflag = 0;
    emu_ctx->bar->arrive_and_wait();
    return r;
}
static inline float __shfl_xor_sync(unsigned, float v, int o) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    emu_ctx->shfl[w][l] = v;
    __syncwarp();
    float r = emu_ctx->shfl[w][l ^ o];
    __syncwarp();
    return r;
}
static inline unsigned __ballot_sync(unsigned, int p) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    emu_ctx->ballot[w][l] = p ? 1u : 0u;
    __syncwarp();
    unsigned m = 0;
    for (int i = 0; i < 32; i++) m |= emu_ctx->ballot[w][i] << i;
    __syncwarp();
    return m;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
// Separately rounded f32 steps (never fused): the host compiles without FMA contraction.
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline void __trap() { abort(); }
static inline float __int_as_float(int x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}
// A `__shared__ T name[N]` of the kernel source: the same bytes for every thread of the block.
static inline void *emu_static_shared(int id, size_t bytes) {
    std::lock_guard<std::mutex> g(emu_ctx->mu);
    auto &v = emu_ctx->statics[id];
    if (v.empty()) v.assign(bytes + 16, 0xff);
    return v.data();
}
static inline unsigned char *emu_smem() { return emu_ctx->smem; }

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
// Every lane holds the whole 16x16 tile: element e is (row e / 16, col e % 16) for every lane, so
// element-wise code over x[0 .. num_elements) is right here exactly when it does not assume the
// hardware's element -> (row, col) mapping (calibrate it with a loaded fragment instead).
template <class Use, int M, int N, int K, class T, class L = void> struct fragment {
    enum { num_elements = 256 };
    float x[256];
};
template <class Use, class T, class L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    __syncwarp();
    struct after { ~after() { __syncwarp(); } } a_;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) {
            // matrix_a: (row m, col k); matrix_b: (row k, col n).  row_major: p[r*ldm+c].
            size_t idx = std::is_same<L, row_major>::value ? (size_t)r * ldm + c : (size_t)c * ldm + r;
            f.x[r * 16 + c] = __bfloat162float(p[idx]);
        }
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm, layout_t l) {
    __syncwarp();
    struct after { ~after() { __syncwarp(); } } a_;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = l == mem_row_major ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
}
inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm, layout_t l) {
    __syncwarp();
    struct after { ~after() { __syncwarp(); } } a_;
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) {
            float *d = l == mem_row_major ? p + (size_t)r * ldm + c : p + (size_t)c * ldm + r;
            *d = f.x[r * 16 + c];
        }
}
template <class F> inline void fill_fragment(F &f, float v) {
    for (int e = 0; e < 256; e++) f.x[e] = v;
}
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d,
                     const fragment<matrix_a, 16, 16, 16, __nv_bfloat16, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, __nv_bfloat16, LB> &b,
                     const fragment<accumulator, 16, 16, 16, float> &c) {
    float t[16][16];
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float s = c.x[m * 16 + n];
            for (int k = 0; k < 16; k++) s += a.x[m * 16 + k] * b.x[k * 16 + n];
            t[m][n] = s;
        }
    memcpy(d.x, t, sizeof t);
}
}  // namespace wmma
}  // namespace nvcuda

// cp.async through the pipeline primitives (cuda_pipeline_primitives.h): each thread's copies are
// queued and land only when __pipeline_wait_prior lets their batch complete (the latest moment
// the hardware may complete them), so a read before the wait or a missing barrier sees the
// 0xff poison or stale data instead of passing by luck.  With EMU_CP_EAGER=1 they land at issue
// instead (the earliest moment), which exposes the other hazard: a copy into a buffer that other
// warps may still be reading.  zfill: trailing bytes written as 0.
struct emu_async_copy {
    void *dst;
    const void *src;
    size_t n, zfill;
};
inline thread_local std::vector<std::vector<emu_async_copy>> emu_cp_batches;  // committed, oldest first
inline thread_local std::vector<emu_async_copy> emu_cp_open;                  // not yet committed
static inline void __pipeline_memcpy_async(void *dst, const void *src, size_t n, size_t zfill = 0) {
    if (n != 4 && n != 8 && n != 16) { fprintf(stderr, "emu: cp.async of %zu bytes\n", n); abort(); }
    if (((uintptr_t)dst | (uintptr_t)src) % n) { fprintf(stderr, "emu: misaligned cp.async\n"); abort(); }
    static const bool eager = getenv("EMU_CP_EAGER") && getenv("EMU_CP_EAGER")[0] == '1';
    if (eager) {
        memcpy(dst, src, n - zfill);
        memset((char *)dst + (n - zfill), 0, zfill);
        return;
    }
    emu_cp_open.push_back({dst, src, n, zfill});
}
static inline void __pipeline_commit() {
    emu_cp_batches.push_back(emu_cp_open);
    emu_cp_open.clear();
}
static inline void __pipeline_wait_prior(size_t prior) {
    while (emu_cp_batches.size() > prior) {
        for (auto &c : emu_cp_batches.front()) {
            memcpy(c.dst, c.src, c.n - c.zfill);
            memset((char *)c.dst + (c.n - c.zfill), 0, c.zfill);
        }
        emu_cp_batches.erase(emu_cp_batches.begin());
    }
}

// The warp-wide matrix instructions as PTX documents their register layouts (lane l: group
// g = l / 4, thread-in-group t = l % 4; the lower-indexed element of a .b16 pair in the low half).
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i+7 give the row addresses of
// matrix i; r[i] gets row g, columns 2t, 2t+1 of matrix i (with .trans: rows 2t, 2t+1 of column g).
static inline void emu_ldmatrix_x4(uint32_t r[4], const void *row, bool trans) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32, g = l / 4, t = l % 4;
    if ((uintptr_t)row % 16) { fprintf(stderr, "emu: ldmatrix row address not 16-byte aligned\n"); abort(); }
    emu_ctx->xptr[w][l] = row;
    __syncwarp();
    for (int i = 0; i < 4; i++) {
        uint16_t lo, hi;
        if (!trans) {
            const uint16_t *p = (const uint16_t *)emu_ctx->xptr[w][8 * i + g];
            lo = p[2 * t];
            hi = p[2 * t + 1];
        } else {
            lo = ((const uint16_t *)emu_ctx->xptr[w][8 * i + 2 * t])[g];
            hi = ((const uint16_t *)emu_ctx->xptr[w][8 * i + 2 * t + 1])[g];
        }
        r[i] = (uint32_t)lo | (uint32_t)hi << 16;
    }
    __syncwarp();
}
static inline float emu_bf16_half(uint32_t u, int half) {
    uint32_t bits = (half ? u >> 16 : u & 0xffffu) << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, d += A·B: A (16×16) a0 (g, 2t..2t+1),
// a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); B (16×8) b0 (rows 2t..2t+1, col g), b1 (rows
// 2t+8..2t+9, col g); C/D (16×8) d0, d1 (g, 2t..2t+1), d2, d3 (g+8, 2t..2t+1).
static inline void emu_mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    int w = threadIdx.x / 32, l = threadIdx.x % 32, g = l / 4, t = l % 4;
    for (int i = 0; i < 4; i++) emu_ctx->xch[w][l][i] = a[i];
    emu_ctx->xch[w][l][4] = b[0];
    emu_ctx->xch[w][l][5] = b[1];
    __syncwarp();
    float out[4];
    for (int e = 0; e < 4; e++) {
        int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
        float s = d[e];
        for (int k = 0; k < 16; k++) {
            float av = emu_bf16_half(emu_ctx->xch[w][(row % 8) * 4 + (k % 8) / 2][(row >= 8) + 2 * (k >= 8)], k & 1);
            float bv = emu_bf16_half(emu_ctx->xch[w][col * 4 + (k % 8) / 2][4 + (k >= 8)], k & 1);
            s += av * bv;
        }
        out[e] = s;
    }
    __syncwarp();
    for (int e = 0; e < 4; e++) d[e] = out[e];
}

// Runs kernel body f for every thread of every block.  smem is filled with 0xff (NaN) first.
void emu_launch(emu_dim grid, emu_dim block, size_t smem_bytes, const std::function<void()> &f);

// cuda_runtime.h gives this template only to nvcc.
template <class T> inline cudaError_t cudaFuncSetAttribute(T *f, enum cudaFuncAttribute a, int v) {
    return cudaFuncSetAttribute(reinterpret_cast<const void *>(f), a, v);
}
