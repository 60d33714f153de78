// kernels/cpu/dropout.c — inverted dropout; the mask is rng_keep(seed, index), the same on every
// backend, so the backward recomputes it instead of storing it.  The hash costs two 64-bit
// multiplies per element, which vectorise only with AVX-512DQ (vpmullq): on such CPUs the loops
// run in a copy compiled for it (integer math and an exact compare: the same bits as the
// portable copy), about 5× faster.  Each thread takes one contiguous range; an element's result
// does not depend on which thread computes it.
#include "cpu_ops.h"
#include "../rng.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline void fwd_range(float *out, const float *inp, size_t lo, size_t hi, float p, float s,
                             uint64_t seed) {
    for (size_t i = lo; i < hi; i++) out[i] = rng_keep(seed, i, p) ? inp[i] * s : 0.0f;
}

static inline void bwd_range(float *dinp, const float *dout, size_t lo, size_t hi, float p, float s,
                             uint64_t seed) {
    for (size_t i = lo; i < hi; i++) dinp[i] = rng_keep(seed, i, p) ? dinp[i] + dout[i] * s : dinp[i];
}

typedef void (*range_fn)(float *dst, const float *src, size_t lo, size_t hi, float p, float s, uint64_t seed);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DROPOUT_HAVE_AVX512 1
__attribute__((target("avx512f,avx512dq,avx512vl"))) static void fwd_avx512(float *out, const float *inp,
                                                                            size_t lo, size_t hi, float p,
                                                                            float s, uint64_t seed) {
    fwd_range(out, inp, lo, hi, p, s, seed);
}
__attribute__((target("avx512f,avx512dq,avx512vl"))) static void bwd_avx512(float *dinp, const float *dout,
                                                                            size_t lo, size_t hi, float p,
                                                                            float s, uint64_t seed) {
    bwd_range(dinp, dout, lo, hi, p, s, seed);
}
#endif

static void fwd_portable(float *out, const float *inp, size_t lo, size_t hi, float p, float s, uint64_t seed) {
    fwd_range(out, inp, lo, hi, p, s, seed);
}
static void bwd_portable(float *dinp, const float *dout, size_t lo, size_t hi, float p, float s,
                         uint64_t seed) {
    bwd_range(dinp, dout, lo, hi, p, s, seed);
}

static int have_avx512dq(void) {
#ifdef DROPOUT_HAVE_AVX512
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

// fn over [0, n), one contiguous range per thread.
static void run_ranges(range_fn fn, float *dst, const float *src, size_t n, float p, float s, uint64_t seed) {
#pragma omp parallel if (n > 32768)
    {
        size_t t = 0, nt = 1;
#ifdef _OPENMP
        t = (size_t)omp_get_thread_num();
        nt = (size_t)omp_get_num_threads();
#endif
        size_t chunk = (n + nt - 1) / nt, lo = t * chunk < n ? t * chunk : n, hi = lo + chunk < n ? lo + chunk : n;
        if (lo < hi) fn(dst, src, lo, hi, p, s, seed);
    }
}

void cpu_dropout_forward(backend *be, void *out_, const void *inp_, size_t n, float p,
                         uint64_t seed) {
    (void)be;
    float *out = out_;
    const float *inp = inp_;
    if (p <= 0.0f) {
        if (out != inp) memmove(out, inp, n * sizeof(float));
        return;
    }
    float s = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#ifdef DROPOUT_HAVE_AVX512
    if (have_avx512dq()) { run_ranges(fwd_avx512, out, inp, n, p, s, seed); return; }
#endif
    run_ranges(fwd_portable, out, inp, n, p, s, seed);
}

void cpu_dropout_backward(backend *be, void *dinp_, const void *dout_, size_t n, float p,
                          uint64_t seed) {
    (void)be;
    float *dinp = dinp_;
    const float *dout = dout_;
    if (p <= 0.0f) {
        for (size_t i = 0; i < n; i++) dinp[i] += dout[i];
        return;
    }
    float s = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#ifdef DROPOUT_HAVE_AVX512
    if (have_avx512dq()) { run_ranges(bwd_avx512, dinp, dout, n, p, s, seed); return; }
#endif
    run_ranges(bwd_portable, dinp, dout, n, p, s, seed);
}
