// kernels/cpu/cpu_math.h — exp for the softmax loops (lm_head_loss, attention), vectorized:
// libm's expf is one call per element.  Cephes' range reduction and degree-6 polynomial,
// relative error ≤ 2 ulp; exactly 0 below −87 (and for −inf); NaN gives NaN; inputs above 88
// saturate at e^88 (softmax arguments are ≤ 0).
#pragma once
#include <stdint.h>
#include <string.h>

typedef float cpu_v4f __attribute__((vector_size(16)));
typedef int32_t cpu_v4i __attribute__((vector_size(16)));

// Four lanes at once, no branches: comparisons give lane masks.
static inline cpu_v4f cpu_exp_v4(cpu_v4f x) {
    const cpu_v4f lo = {-87.0f, -87.0f, -87.0f, -87.0f}, hi = {88.0f, 88.0f, 88.0f, 88.0f};
    cpu_v4i below = x < lo, nan = x != x;
    cpu_v4f xc = x;
    cpu_v4i m = xc < lo;
    xc = (cpu_v4f)(((cpu_v4i)xc & ~m) | ((cpu_v4i)lo & m));
    m = xc > hi;
    xc = (cpu_v4f)(((cpu_v4i)xc & ~m) | ((cpu_v4i)hi & m));
    xc = (cpu_v4f)(((cpu_v4i)xc & ~nan) | ((cpu_v4i)lo & nan));
    // n = round(x / ln 2) by the 1.5·2^23 trick (exact for |n| < 2^22).
    const float magic = 12582912.0f;
    cpu_v4f n = (xc * 1.44269504088896341f + magic) - magic;
    cpu_v4f r = xc - n * 0.693359375f + n * 2.12194440e-4f;  // ln 2 in two parts
    cpu_v4f y = r * 1.9875691500e-4f + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    cpu_v4i bits = (__builtin_convertvector(n, cpu_v4i) + 127) << 23;  // 2^n, n in [−126, 127]
    cpu_v4f out = y * (cpu_v4f)bits;
    out = (cpu_v4f)((cpu_v4i)out & ~below);
    return (cpu_v4f)(((cpu_v4i)out & ~nan) | ((cpu_v4i)x & nan));
}

static inline float cpu_expf(float x) {
    cpu_v4f v = {x, x, x, x};
    return cpu_exp_v4(v)[0];
}

// y[i] = e^x[i] for i < n; y may be x.
static inline void cpu_exp_array(float *y, const float *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        cpu_v4f v;
        memcpy(&v, x + i, sizeof v);
        v = cpu_exp_v4(v);
        memcpy(y + i, &v, sizeof v);
    }
    for (; i < n; i++) y[i] = cpu_expf(x[i]);
}
