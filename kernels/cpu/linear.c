// kernels/cpu/linear.c — linear layers over a blocked, packed f32 matrix product.
//   forward  y  = x·Wᵀ            gemm(N, OC, IC) with W read transposed in place
//   backward dX = dY·W            gemm(N, IC, OC)
//            dW += dYᵀ·X          gemm(OC, IC, N) with dY read transposed in place
// The product follows the BLIS layout: B is packed into KC × NR column panels, A into MR × KC
// row panels, and a register-tile micro-kernel (MR × NR accumulators) runs over them.  Three
// micro-kernels, the best one the CPU has chosen at run time: 6×32 with AVX-512, 6×16 with
// AVX2+FMA (both one FMA per k in k order, so they give the same bits), and 6×8 in portable
// vector C (SSE with -march=x86-64-v2).  OpenMP splits the output into MC × NB blocks; each
// output element is summed by one thread in k order, so results do not depend on the thread
// count.
#include "cpu_ops.h"
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GEMM_HAVE_AVX2 1
#include <immintrin.h>
#endif

enum { KC = 256, NC = 4096, MC_PANELS = 16, NB_PANELS = 16, MS_BLOCKS = 16 };
enum { GEMM_MR = 6, GEMM_MAX_NR = 32 };

typedef void (*gemm_kernel)(int kc, const float *a, const float *b, float *c, long ldc, int m,
                            int n, float alpha, int overwrite);

// Writes an accumulated tile t (GEMM_MR × nr) into C: the m × n valid corner.
static inline void tile_store(const float *t, int nr, float *c, long ldc, int m, int n,
                              float alpha, int overwrite) {
    for (int i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        const float *ti = t + i * nr;
        if (overwrite)
            for (int j = 0; j < n; j++) ci[j] = alpha * ti[j];
        else
            for (int j = 0; j < n; j++) ci[j] += alpha * ti[j];
    }
}

typedef float v4f __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

// Portable 6×8 micro-kernel: 12 four-float accumulators fit the 16 SSE registers.
static void kernel_6x8(int kc, const float *a, const float *b, float *c, long ldc, int m, int n,
                       float alpha, int overwrite) {
    v4f acc[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; i++) acc[i][0] = acc[i][1] = (v4f){0, 0, 0, 0};
    for (int k = 0; k < kc; k++) {
        v4f b0 = v4_load(b), b1 = v4_load(b + 4);
        for (int i = 0; i < GEMM_MR; i++) {
            v4f ai = (v4f){a[i], a[i], a[i], a[i]};
            acc[i][0] += ai * b0;
            acc[i][1] += ai * b1;
        }
        a += GEMM_MR;
        b += 8;
    }
    float t[GEMM_MR * 8];
    for (int i = 0; i < GEMM_MR; i++) {
        memcpy(t + i * 8, &acc[i][0], 16);
        memcpy(t + i * 8 + 4, &acc[i][1], 16);
    }
    tile_store(t, 8, c, ldc, m, n, alpha, overwrite);
}

#ifdef GEMM_HAVE_AVX2
// 6×16 with AVX2+FMA: 12 eight-float accumulators, 2 for B, 1 broadcast of A.
#define ROW6(i)                                          \
    do {                                                 \
        __m256 ai = _mm256_broadcast_ss(a + (i));        \
        c##i##0 = _mm256_fmadd_ps(ai, b0, c##i##0);      \
        c##i##1 = _mm256_fmadd_ps(ai, b1, c##i##1);      \
    } while (0)
__attribute__((target("avx2,fma"))) static void kernel_6x16_avx2(int kc, const float *a,
                                                                  const float *b, float *c,
                                                                  long ldc, int m, int n,
                                                                  float alpha, int overwrite) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        ROW6(0);
        ROW6(1);
        ROW6(2);
        ROW6(3);
        ROW6(4);
        ROW6(5);
        a += GEMM_MR;
        b += 16;
    }
    float t[GEMM_MR * 16];
    _mm256_storeu_ps(t + 0, c00), _mm256_storeu_ps(t + 8, c01);
    _mm256_storeu_ps(t + 16, c10), _mm256_storeu_ps(t + 24, c11);
    _mm256_storeu_ps(t + 32, c20), _mm256_storeu_ps(t + 40, c21);
    _mm256_storeu_ps(t + 48, c30), _mm256_storeu_ps(t + 56, c31);
    _mm256_storeu_ps(t + 64, c40), _mm256_storeu_ps(t + 72, c41);
    _mm256_storeu_ps(t + 80, c50), _mm256_storeu_ps(t + 88, c51);
    tile_store(t, 16, c, ldc, m, n, alpha, overwrite);
}
#undef ROW6

// 6×32 with AVX-512: 12 sixteen-float accumulators (of 32 registers).
#define ROW6(i)                                          \
    do {                                                 \
        __m512 ai = _mm512_set1_ps(a[i]);                \
        c##i##0 = _mm512_fmadd_ps(ai, b0, c##i##0);      \
        c##i##1 = _mm512_fmadd_ps(ai, b1, c##i##1);      \
    } while (0)
__attribute__((target("avx512f"))) static void kernel_6x32_avx512(int kc, const float *a,
                                                                   const float *b, float *c,
                                                                   long ldc, int m, int n,
                                                                   float alpha, int overwrite) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        ROW6(0);
        ROW6(1);
        ROW6(2);
        ROW6(3);
        ROW6(4);
        ROW6(5);
        a += GEMM_MR;
        b += 32;
    }
    float t[GEMM_MR * 32];
    _mm512_storeu_ps(t + 0, c00), _mm512_storeu_ps(t + 16, c01);
    _mm512_storeu_ps(t + 32, c10), _mm512_storeu_ps(t + 48, c11);
    _mm512_storeu_ps(t + 64, c20), _mm512_storeu_ps(t + 80, c21);
    _mm512_storeu_ps(t + 96, c30), _mm512_storeu_ps(t + 112, c31);
    _mm512_storeu_ps(t + 128, c40), _mm512_storeu_ps(t + 144, c41);
    _mm512_storeu_ps(t + 160, c50), _mm512_storeu_ps(t + 176, c51);
    tile_store(t, 32, c, ldc, m, n, alpha, overwrite);
}
#undef ROW6
#endif

// Packs rows [0, mc) × k [0, kc) of A (origin a) into MR-row panels: dst[(p·kc + k)·MR + i].
// Rows past mc are zero so the micro-kernel never branches.
static void pack_a_panel(const float *a, long rs, long cs, int rows, int kc, float *dst) {
    if (cs == 1) {
        for (int i = 0; i < GEMM_MR; i++) {
            if (i < rows) {
                const float *src = a + i * rs;
                for (int k = 0; k < kc; k++) dst[k * GEMM_MR + i] = src[k];
            } else {
                for (int k = 0; k < kc; k++) dst[k * GEMM_MR + i] = 0.0f;
            }
        }
    } else {
        for (int k = 0; k < kc; k++) {
            const float *src = a + k * cs;
            for (int i = 0; i < GEMM_MR; i++) dst[k * GEMM_MR + i] = i < rows ? src[i * rs] : 0.0f;
        }
    }
}

// Packs columns [0, cols) × k [0, kc) of B into one NR-wide panel: dst[k·nr + j].
static void pack_b_panel(const float *b, long rs, long cs, int cols, int kc, int nr,
                         float *dst) {
    if (cs == 1 && cols == nr) {
        for (int k = 0; k < kc; k++) memcpy(dst + k * nr, b + k * rs, (size_t)nr * sizeof(float));
    } else if (cs == 1) {
        for (int k = 0; k < kc; k++)
            for (int j = 0; j < nr; j++) dst[k * nr + j] = j < cols ? b[k * rs + j] : 0.0f;
    } else {
        // B read transposed (W of x·Wᵀ): k runs along memory.  Blocks of 16 k keep the lines
        // being written few enough to stay in L1.
        for (int k0 = 0; k0 < kc; k0 += 16) {
            int k1 = k0 + 16 < kc ? k0 + 16 : kc;
            for (int j = 0; j < nr; j++) {
                if (j < cols) {
                    const float *src = b + j * cs;
                    for (int k = k0; k < k1; k++) dst[k * nr + j] = src[k * rs];
                } else {
                    for (int k = k0; k < k1; k++) dst[k * nr + j] = 0.0f;
                }
            }
        }
    }
}

// Used only when the packing buffers cannot be allocated: slow but correct.
static void gemm_unpacked(int M, int N, int K, float alpha, const float *a, long a_rs,
                          long a_cs, const float *b, long b_rs, long b_cs, float beta, float *c,
                          long ldc) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0;
            for (int k = 0; k < K; k++) s += a[i * a_rs + k * a_cs] * b[k * b_rs + j * b_cs];
            c[i * ldc + j] = (beta != 0.0f ? c[i * ldc + j] : 0.0f) + alpha * s;
        }
}

static gemm_kernel pick_kernel(int kernel_choice, int *nr) {
#ifdef GEMM_HAVE_AVX2
    if ((kernel_choice == 0 || kernel_choice == 3) && __builtin_cpu_supports("avx512f")) {
        *nr = 32;
        return kernel_6x32_avx512;
    }
    if (kernel_choice != 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *nr = 16;
        return kernel_6x16_avx2;
    }
#else
    (void)kernel_choice;
#endif
    *nr = 8;
    return kernel_6x8;
}

size_t cpu_gemm_serial_scratch(int M, int N, int K) {
    int kc = K < KC ? K : KC;
    if (kc < 1) kc = 1;
    return ((size_t)(M + GEMM_MR - 1) / GEMM_MR * GEMM_MR + (size_t)(N + GEMM_MAX_NR - 1) / GEMM_MAX_NR * GEMM_MAX_NR) * kc;
}

void cpu_gemm_serial(int M, int N, int K, float alpha, const float *a, long a_rs, long a_cs,
                     const float *b, long b_rs, long b_cs, float beta, float *c, long ldc,
                     float *scratch) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(c + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    int nr;
    gemm_kernel kern = pick_kernel(0, &nr);
    const int mr = GEMM_MR, mpanels = (M + mr - 1) / mr, npanels = (N + nr - 1) / nr;
    for (int pc = 0; pc < K; pc += KC) {
        int kc = K - pc < KC ? K - pc : KC;
        float *apack = scratch, *bpack = scratch + (size_t)mpanels * mr * kc;
        for (int p = 0; p < mpanels; p++)
            pack_a_panel(a + (long)p * mr * a_rs + pc * a_cs, a_rs, a_cs, M - p * mr < mr ? M - p * mr : mr,
                         kc, apack + (size_t)p * mr * kc);
        for (int p = 0; p < npanels; p++)
            pack_b_panel(b + pc * b_rs + (long)p * nr * b_cs, b_rs, b_cs, N - p * nr < nr ? N - p * nr : nr,
                         kc, nr, bpack + (size_t)p * nr * kc);
        int overwrite = pc == 0 && beta == 0.0f;
        for (int pj = 0; pj < npanels; pj++)
            for (int qi = 0; qi < mpanels; qi++)
                kern(kc, apack + (size_t)qi * mr * kc, bpack + (size_t)pj * nr * kc,
                     c + (long)qi * mr * ldc + pj * nr, ldc, M - qi * mr < mr ? M - qi * mr : mr,
                     N - pj * nr < nr ? N - pj * nr : nr, alpha, overwrite);
    }
}

void cpu_gemm_with(int kernel_choice, int M, int N, int K, float alpha, const float *a,
                   long a_rs, long a_cs, const float *b, long b_rs, long b_cs, float beta,
                   float *c, long ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (beta == 0.0f)
            for (int i = 0; i < M; i++) memset(c + i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    int nr;
    gemm_kernel kern = pick_kernel(kernel_choice, &nr);
    const int mr = GEMM_MR, mc = MC_PANELS * GEMM_MR;
    const int ms = MS_BLOCKS * mc;  // rows of A packed at once
    int nc_max = N < NC ? N : NC, kc_max = K < KC ? K : KC, ms_max = M < ms ? M : ms;
    // Column blocks narrow enough that there are about 4 tiles per thread when M is short;
    // which thread sums a tile never changes the arithmetic, so results stay the same bits.
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    int iblk = (ms_max + mc - 1) / mc, want_j = (4 * threads + iblk - 1) / iblk;
    int npan_max = (nc_max + nr - 1) / nr, per_block = (npan_max + want_j - 1) / want_j;
    const int nb = (per_block < 1 ? 1 : per_block > NB_PANELS ? NB_PANELS : per_block) * nr;
    size_t a_floats = (size_t)((ms_max + mr - 1) / mr) * mr * kc_max;
    size_t b_floats = (size_t)((nc_max + nr - 1) / nr) * nr * kc_max;
    float *apack = NULL, *bpack = NULL;
    if (posix_memalign((void **)&apack, 64, a_floats * sizeof(float)) != 0) apack = NULL;
    if (posix_memalign((void **)&bpack, 64, b_floats * sizeof(float)) != 0) bpack = NULL;
    if (!apack || !bpack) {
        free(apack);
        free(bpack);
        gemm_unpacked(M, N, K, alpha, a, a_rs, a_cs, b, b_rs, b_cs, beta, c, ldc);
        return;
    }
    double work = (double)M * N * K;
#pragma omp parallel if (work > 262144.0)
    for (int jc = 0; jc < N; jc += NC) {
        int ncur = N - jc < NC ? N - jc : NC;
        int npanels = (ncur + nr - 1) / nr;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            int overwrite = pc == 0 && beta == 0.0f;
#pragma omp for schedule(static)
            for (int p = 0; p < npanels; p++) {
                int cols = ncur - p * nr < nr ? ncur - p * nr : nr;
                pack_b_panel(b + pc * b_rs + (long)(jc + p * nr) * b_cs, b_rs, b_cs, cols, kc,
                             nr, bpack + (size_t)p * nr * kc);
            }
            for (int is = 0; is < M; is += ms) {
                int mcur = M - is < ms ? M - is : ms;
                int mpanels = (mcur + mr - 1) / mr;
#pragma omp for schedule(static)
                for (int p = 0; p < mpanels; p++) {
                    int rows = mcur - p * mr < mr ? mcur - p * mr : mr;
                    pack_a_panel(a + (long)(is + p * mr) * a_rs + pc * a_cs, a_rs, a_cs, rows,
                                 kc, apack + (size_t)p * mr * kc);
                }
                int iblocks = (mcur + mc - 1) / mc, jblocks = (ncur + nb - 1) / nb;
#pragma omp for collapse(2) schedule(static)
                for (int ib = 0; ib < iblocks; ib++)
                    for (int jb = 0; jb < jblocks; jb++) {
                        int p1 = (jb * nb + nb) / nr < npanels ? (jb * nb + nb) / nr : npanels;
                        int q1 = (ib * mc + mc) / mr < mpanels ? (ib * mc + mc) / mr : mpanels;
                        for (int pj = jb * nb / nr; pj < p1; pj++) {
                            int n = ncur - pj * nr < nr ? ncur - pj * nr : nr;
                            const float *bp = bpack + (size_t)pj * nr * kc;
                            for (int qi = ib * mc / mr; qi < q1; qi++) {
                                int m = mcur - qi * mr < mr ? mcur - qi * mr : mr;
                                float *ct = c + (long)(is + qi * mr) * ldc + jc + pj * nr;
                                kern(kc, apack + (size_t)qi * mr * kc, bp, ct, ldc, m, n, alpha,
                                     overwrite);
                            }
                        }
                    }
            }
        }
    }
    free(apack);
    free(bpack);
}

void cpu_gemm(int M, int N, int K, float alpha, const float *a, long a_rs, long a_cs,
              const float *b, long b_rs, long b_cs, float beta, float *c, long ldc) {
    cpu_gemm_with(0, M, N, K, alpha, a, a_rs, a_cs, b, b_rs, b_cs, beta, c, ldc);
}

void cpu_linear_forward(backend *be, void *out_, const void *inp_, const void *w_,
                        const void *bias_, int N, int IC, int OC, float scale, int accumulate) {
    (void)be;
    float *out = out_;
    const float *inp = inp_, *w = w_, *bias = bias_;
    cpu_gemm(N, OC, IC, scale, inp, IC, 1, w, 1, IC, accumulate ? 1.0f : 0.0f, out, OC);
    if (bias) {
#pragma omp parallel for schedule(static) if ((long)N * OC > 65536)
        for (int i = 0; i < N; i++)
            for (int j = 0; j < OC; j++) out[(size_t)i * OC + j] += scale * bias[j];
    }
}

void cpu_linear_backward(backend *be, void *dinp_, float *dw, float *dbias, const void *dout_,
                         const void *inp_, const void *w_, int N, int IC, int OC, float scale,
                         int accumulate) {
    (void)be;
    float *dinp = dinp_;
    const float *dout = dout_, *inp = inp_, *w = w_;
    if (dinp) cpu_gemm(N, IC, OC, scale, dout, OC, 1, w, IC, 1, accumulate ? 1.0f : 0.0f, dinp, IC);
    if (dw) cpu_gemm(OC, IC, N, scale, dout, 1, OC, inp, IC, 1, 1.0f, dw, IC);
    if (dbias) {
        enum { CB = 64 };
        int nblocks = (OC + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((long)N * OC > 65536)
        for (int cb = 0; cb < nblocks; cb++) {
            int c0 = cb * CB, c1 = c0 + CB < OC ? c0 + CB : OC;
            float acc[CB] = {0};
            for (int i = 0; i < N; i++)
                for (int j = c0; j < c1; j++) acc[j - c0] += dout[(size_t)i * OC + j];
            for (int j = c0; j < c1; j++) dbias[j] += scale * acc[j - c0];
        }
    }
}
