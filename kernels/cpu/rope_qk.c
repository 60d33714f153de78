// kernels/cpu/rope_qk.c — RoPE of q and k in one pass over the token rows, each head RMS-normed
// first for the qk-norm families (Qwen3): the angles of a row are computed once for its q and k
// heads.  Built from rope.c's and rmsnorm.c's own row functions, so the results are the bits of
// rmsnorm_forward + rope_forward (and of rope_backward + rmsnorm_backward onto zeros).
#include "cpu_ops.h"

// q = rope(norm(q_in)) (or rope(q_in) without w) for the n_heads heads of one token row; rstd
// (n_heads) saved when normed.  out may be in.
static void heads_forward(float *out, float *rstd, const float *in, const float *w, int n_heads, int hd,
                          float eps, const float *cs, const float *sn) {
    for (int h = 0; h < n_heads; h++) {
        float *oh = out + (size_t)h * hd;
        const float *ih = in + (size_t)h * hd;
        if (w)
            rstd[h] = cpu_rmsnorm_row(oh, ih, w, hd, eps);
        else if (oh != ih)
            for (int d = 0; d < hd; d++) oh[d] = ih[d];
        cpu_rope_head(oh, cs, sn, hd / 2);
    }
}

void cpu_rope_qk_forward(backend *be, void *q_, void *k_, float *rstd_q, float *rstd_k, const void *q_in_,
                         const void *k_in_, const void *wq_, const void *wk_, const int32_t *pos,
                         const rope_table *rope, int N, int Hq, int Hk, float eps) {
    (void)be;
    float *q = q_, *k = k_;
    const float *q_in = q_in_, *k_in = k_in_, *wq = wq_, *wk = wk_;
    int hd = rope->head_dim, half = hd / 2;
    if (half > CPU_ROPE_MAX_HALF || half <= 0) return;
#pragma omp parallel for schedule(static) if ((long)N * (Hq + Hk) * hd > 16384)
    for (int i = 0; i < N; i++) {
        float cs[CPU_ROPE_MAX_HALF], sn[CPU_ROPE_MAX_HALF];
        cpu_rope_angles(cs, sn, pos[i], rope, 1.0f);
        size_t oq = (size_t)i * Hq * hd, ok = (size_t)i * Hk * hd;
        heads_forward(q + oq, wq ? rstd_q + (size_t)i * Hq : NULL, q_in + oq, wq, Hq, hd, eps, cs, sn);
        heads_forward(k + ok, wk ? rstd_k + (size_t)i * Hk : NULL, k_in + ok, wk, Hk, hd, eps, cs, sn);
    }
}

// Per token row: rotate the gradients back by −θ, and when the norm's dx may follow at once (no
// dw wanted, which reads every row's rotated gradient) take it in place too.
static void heads_backward(float *g, const float *x, const float *w, const float *rstd, int n_heads, int hd,
                           int dx_too, const float *cs, const float *sn) {
    for (int h = 0; h < n_heads; h++) {
        float *gh = g + (size_t)h * hd;
        cpu_rope_head(gh, cs, sn, hd / 2);
        if (dx_too) cpu_rmsnorm_dx_row(gh, gh, x + (size_t)h * hd, w, rstd[h], hd, 0);
    }
}

void cpu_rope_qk_backward(backend *be, void *dq_, void *dk_, float *dwq, float *dwk, const void *q_in_,
                          const void *k_in_, const void *wq_, const void *wk_, const float *rstd_q,
                          const float *rstd_k, const int32_t *pos, const rope_table *rope, int N, int Hq,
                          int Hk) {
    (void)be;
    float *dq = dq_, *dk = dk_;
    const float *q_in = q_in_, *k_in = k_in_, *wq = wq_, *wk = wk_;
    int hd = rope->head_dim, half = hd / 2;
    if (half > CPU_ROPE_MAX_HALF || half <= 0) return;
    int q_later = wq && dwq, k_later = wk && dwk;   // dx after dw's pass over all rows
#pragma omp parallel for schedule(static) if ((long)N * (Hq + Hk) * hd > 16384)
    for (int i = 0; i < N; i++) {
        float cs[CPU_ROPE_MAX_HALF], sn[CPU_ROPE_MAX_HALF];
        cpu_rope_angles(cs, sn, pos[i], rope, -1.0f);
        size_t oq = (size_t)i * Hq * hd, ok = (size_t)i * Hk * hd;
        heads_backward(dq + oq, wq ? q_in + oq : NULL, wq, wq ? rstd_q + (size_t)i * Hq : NULL, Hq, hd,
                       wq && !q_later, cs, sn);
        heads_backward(dk + ok, wk ? k_in + ok : NULL, wk, wk ? rstd_k + (size_t)i * Hk : NULL, Hk, hd,
                       wk && !k_later, cs, sn);
    }
    if (q_later) cpu_rmsnorm_dw(dwq, dq, q_in, rstd_q, N * Hq, hd);
    if (k_later) cpu_rmsnorm_dw(dwk, dk, k_in, rstd_k, N * Hk, hd);
    if (!q_later && !k_later) return;
#pragma omp parallel for schedule(static) if ((long)N * (Hq + Hk) * hd > 16384)
    for (int i = 0; i < N; i++) {
        if (q_later)
            for (int h = 0; h < Hq; h++) {
                size_t o = ((size_t)i * Hq + h) * hd;
                cpu_rmsnorm_dx_row(dq + o, dq + o, q_in + o, wq, rstd_q[(size_t)i * Hq + h], hd, 0);
            }
        if (k_later)
            for (int h = 0; h < Hk; h++) {
                size_t o = ((size_t)i * Hk + h) * hd;
                cpu_rmsnorm_dx_row(dk + o, dk + o, k_in + o, wk, rstd_k[(size_t)i * Hk + h], hd, 0);
            }
    }
}
