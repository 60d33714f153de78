// kernels/cpu/adamw.c — AdamW step, written as torch.optim.AdamW's single-tensor path does it:
//   param *= 1 − lr·wd;  m = lerp(m, g, 1 − β1);  v = β2 v + (1 − β2) g²
//   param += −(lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
// with the scalars computed in double (Python floats) and the element math in f32.  The plain
// loop does not vectorise (sqrtf may set errno), so on CPUs with AVX-512 a copy written with
// intrinsics does the same operations in the same order, 16 lanes at a time (each correctly
// rounded, no fused multiply-add: the same bits), about 4× faster.
#include "cpu_ops.h"
#include <math.h>
#include <string.h>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ADAMW_HAVE_AVX512 1
#include <immintrin.h>
#endif

typedef struct {
    float grad_scale, decay, w1, b2, w2, step_size, bc2_sqrt, eps;
} adamw_coef;

static inline void adamw_range(float *param, const float *grad, float *m, float *v, size_t lo, size_t hi,
                               adamw_coef c) {
    for (size_t i = lo; i < hi; i++) {
        float g = grad[i] * c.grad_scale;
        float p = param[i] * c.decay;
        float mi = m[i] + c.w1 * (g - m[i]);
        float vi = v[i] * c.b2 + c.w2 * g * g;
        float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;
        m[i] = mi;
        v[i] = vi;
        param[i] = p + (-c.step_size) * mi / denom;
    }
}

typedef void (*adamw_fn)(float *param, const float *grad, float *m, float *v, size_t lo, size_t hi, adamw_coef c);

static void adamw_portable(float *param, const float *grad, float *m, float *v, size_t lo, size_t hi,
                           adamw_coef c) {
    adamw_range(param, grad, m, v, lo, hi, c);
}

#ifdef ADAMW_HAVE_AVX512
__attribute__((target("avx512f"))) static void adamw_avx512(float *param, const float *grad, float *m, float *v,
                                                            size_t lo, size_t hi, adamw_coef c) {
    const __m512 gs = _mm512_set1_ps(c.grad_scale), decay = _mm512_set1_ps(c.decay), w1 = _mm512_set1_ps(c.w1),
                 b2 = _mm512_set1_ps(c.b2), w2 = _mm512_set1_ps(c.w2), nstep = _mm512_set1_ps(-c.step_size),
                 bc2 = _mm512_set1_ps(c.bc2_sqrt), eps = _mm512_set1_ps(c.eps);
    size_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        __m512 g = _mm512_mul_ps(_mm512_loadu_ps(grad + i), gs);
        __m512 p = _mm512_mul_ps(_mm512_loadu_ps(param + i), decay);
        __m512 m0 = _mm512_loadu_ps(m + i);
        __m512 mi = _mm512_add_ps(m0, _mm512_mul_ps(w1, _mm512_sub_ps(g, m0)));
        __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2), _mm512_mul_ps(_mm512_mul_ps(w2, g), g));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        _mm512_storeu_ps(param + i, _mm512_add_ps(p, _mm512_div_ps(_mm512_mul_ps(nstep, mi), denom)));
    }
    adamw_range(param, grad, m, v, i, hi, c);
}
#endif

void cpu_adamw_update(backend *be, float *param, void *param_act, const float *grad, float *m,
                      float *v, size_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, int step, float grad_scale) {
    (void)be;
    double bc1 = 1.0 - pow((double)beta1, step);
    double bc2 = 1.0 - pow((double)beta2, step);
    adamw_coef c;
    c.grad_scale = grad_scale;
    c.decay = (float)(1.0 - (double)lr * weight_decay);
    c.w1 = (float)(1.0 - (double)beta1);
    c.b2 = beta2;
    c.w2 = (float)(1.0 - (double)beta2);
    c.step_size = (float)((double)lr / bc1);
    c.bc2_sqrt = (float)sqrt(bc2);
    c.eps = eps;
    adamw_fn fn = adamw_portable;
#ifdef ADAMW_HAVE_AVX512
    if (__builtin_cpu_supports("avx512f")) fn = adamw_avx512;
#endif
    // Blocks of 64K elements: each element's update is independent, so the split never
    // changes the bits.
    enum { BLOCK = 65536 };
    size_t nblocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (nblocks > 1)
    for (size_t b = 0; b < nblocks; b++) {
        size_t lo = b * BLOCK, hi = lo + BLOCK < n ? lo + BLOCK : n;
        fn(param, grad, m, v, lo, hi, c);
    }
    if (param_act && param_act != (void *)param) memcpy(param_act, param, n * sizeof(float));
}
