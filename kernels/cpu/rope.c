// kernels/cpu/rope.c — rotary position embedding, HF rotate-half layout: element i of a head
// pairs with i + hd/2.  Angles as HF computes them: freq = (float)pos · inv_freq in f32, then
// cos and sin of that f32 value, times attention_scaling.
#include "cpu_ops.h"
#include <math.h>

void cpu_rope_angles(float *cs, float *sn, int32_t pos, const rope_table *rope, float sign) {
    int half = rope->head_dim / 2;
    float p = (float)pos;
    for (int d = 0; d < half; d++) {
        float f = p * rope->inv_freq[d];
        cs[d] = (float)cos((double)f) * rope->attention_scaling;
        sn[d] = sign * ((float)sin((double)f) * rope->attention_scaling);
    }
}

void cpu_rope_head(float *xh, const float *cs, const float *sn, int half) {
    for (int d = 0; d < half; d++) {
        float a = xh[d], b = xh[d + half];
        xh[d] = a * cs[d] - b * sn[d];
        xh[d + half] = b * cs[d] + a * sn[d];
    }
}

// sign +1 rotates by +θ (forward), −1 by −θ (the transpose, for gradients).
static void rope_apply(float *x, const int32_t *pos, const rope_table *rope, int N, int n_heads,
                       float sign) {
    int hd = rope->head_dim, half = hd / 2;
    if (half > CPU_ROPE_MAX_HALF || half <= 0) return;
#pragma omp parallel for schedule(static) if ((long)N * n_heads * hd > 16384)
    for (int i = 0; i < N; i++) {
        float cs[CPU_ROPE_MAX_HALF], sn[CPU_ROPE_MAX_HALF];
        cpu_rope_angles(cs, sn, pos[i], rope, sign);
        for (int h = 0; h < n_heads; h++) cpu_rope_head(x + ((size_t)i * n_heads + h) * hd, cs, sn, half);
    }
}

void cpu_rope_forward(backend *be, void *x, const int32_t *pos, const rope_table *rope, int N,
                      int n_heads) {
    (void)be;
    rope_apply(x, pos, rope, N, n_heads, 1.0f);
}

void cpu_rope_backward(backend *be, void *dx, const int32_t *pos, const rope_table *rope, int N,
                       int n_heads) {
    (void)be;
    rope_apply(dx, pos, rope, N, n_heads, -1.0f);
}
