// kernels/cpu/attention.c — causal attention with GQA and document masks, flash-style: each
// query row runs an online softmax over its visible keys in blocks, so no (T × T) matrix
// exists.  The backward recomputes the probabilities from the saved logsumexp.
// Layout: q, out (B*Tq, H, hd); k, v (B*Tk, KVH, hd); lse (B, H, Tq).  Query row i of a batch
// sits at key position p = i + Tk − Tq and sees keys j with doc_start[p] ≤ j ≤ p.
#include "cpu_ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { ATT_MAX_HD = 1024, ATT_KEY_BLOCK = 64 };

// Eight partial sums so the compiler can vectorize without reassociating (no -ffast-math).
static inline float dot(const float *a, const float *b, int n) {
    float s[8] = {0};
    int d = 0;
    for (; d + 8 <= n; d += 8)
        for (int t = 0; t < 8; t++) s[t] += a[d + t] * b[d + t];
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; d < n; d++) r += a[d] * b[d];
    return r;
}

// The visible key range [*j0, *j1] of the query at position p of batch b; empty when j0 > j1.
static inline void key_range(const int32_t *doc_start, int b, int Tk, int p, int *j0, int *j1) {
    int s = doc_start[(size_t)b * Tk + p];
    *j0 = s < 0 ? 0 : s;
    *j1 = p;
}

void cpu_attention_forward(backend *be, void *out_, float *lse, const void *q_, const void *k_,
                           const void *v_, const int32_t *doc_start, int B, int Tq, int Tk,
                           int n_heads, int n_kv_heads, int hd, float scale) {
    (void)be;
    float *out = out_;
    const float *q = q_, *k = k_, *v = v_;
    if (hd > ATT_MAX_HD || hd <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads) return;
    const int H = n_heads, KVH = n_kv_heads, group = H / KVH, off = Tk - Tq;
    const long qstride = (long)H * hd, kstride = (long)KVH * hd;
#pragma omp parallel for collapse(3) schedule(dynamic, 4)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                const float *qi = q + ((long)b * Tq + i) * qstride + (long)h * hd;
                float *oi = out + ((long)b * Tq + i) * qstride + (long)h * hd;
                const float *kb = k + (long)b * Tk * kstride + (long)(h / group) * hd;
                const float *vb = v + (long)b * Tk * kstride + (long)(h / group) * hd;
                int j0, j1;
                key_range(doc_start, b, Tk, i + off, &j0, &j1);
                float acc[ATT_MAX_HD], s[ATT_KEY_BLOCK];
                float m = -INFINITY, l = 0.0f;
                memset(acc, 0, (size_t)hd * sizeof(float));
                for (int jb = j0; jb <= j1; jb += ATT_KEY_BLOCK) {
                    int n = j1 - jb + 1 < ATT_KEY_BLOCK ? j1 - jb + 1 : ATT_KEY_BLOCK;
                    float bm = -INFINITY;
                    for (int t = 0; t < n; t++) {
                        s[t] = scale * dot(qi, kb + (long)(jb + t) * kstride, hd);
                        bm = s[t] > bm ? s[t] : bm;
                    }
                    if (bm > m) {  // rescale what was summed against the old maximum
                        float corr = expf(m - bm);
                        l *= corr;
                        for (int d = 0; d < hd; d++) acc[d] *= corr;
                        m = bm;
                    }
                    for (int t = 0; t < n; t++) {
                        float e = expf(s[t] - m);
                        const float *vj = vb + (long)(jb + t) * kstride;
                        l += e;
                        for (int d = 0; d < hd; d++) acc[d] += e * vj[d];
                    }
                }
                float *lse_i = lse + ((long)b * H + h) * Tq + i;
                if (l > 0.0f) {
                    float inv = 1.0f / l;
                    for (int d = 0; d < hd; d++) oi[d] = acc[d] * inv;
                    *lse_i = m + logf(l);
                } else {  // no visible key (a malformed doc_start): zero output
                    memset(oi, 0, (size_t)hd * sizeof(float));
                    *lse_i = -INFINITY;
                }
            }
}

// With P = exp(S − lse), dP = dO·Vᵀ, D_i = Σ dO_i·O_i and dS = P ∘ (dP − D):
//   dQ = scale · dS·K,  dK = scale · dSᵀ·Q,  dV = Pᵀ·dO.
// Two passes, so that every output row is summed by one thread in a fixed order (deterministic)
// while keeping B·H·Tq-way parallelism: dQ over query rows, then dK and dV over key rows, each
// recomputing P.
void cpu_attention_backward(backend *be, void *dq_, void *dk_, void *dv_, const void *dout_,
                            const void *out_, const float *lse, const void *q_, const void *k_,
                            const void *v_, const int32_t *doc_start, int B, int Tq, int Tk,
                            int n_heads, int n_kv_heads, int hd, float scale) {
    (void)be;
    float *dq = dq_, *dk = dk_, *dv = dv_;
    const float *dout = dout_, *out = out_, *q = q_, *k = k_, *v = v_;
    if (hd > ATT_MAX_HD || hd <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads) return;
    const int H = n_heads, KVH = n_kv_heads, group = H / KVH, off = Tk - Tq;
    const long qstride = (long)H * hd, kstride = (long)KVH * hd;
    float *D = malloc((size_t)B * H * Tq * sizeof(float) + 1);
    if (!D) return;

#pragma omp parallel
    {
#pragma omp for collapse(3) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < Tq; i++) {
                    long row = ((long)b * Tq + i) * qstride + (long)h * hd;
                    D[((long)b * H + h) * Tq + i] = dot(dout + row, out + row, hd);
                }

#pragma omp for collapse(3) schedule(dynamic, 4)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < Tq; i++) {
                    long row = ((long)b * Tq + i) * qstride + (long)h * hd;
                    const float *qi = q + row, *doi = dout + row;
                    float *dqi = dq + row;
                    const float *kb = k + (long)b * Tk * kstride + (long)(h / group) * hd;
                    const float *vb = v + (long)b * Tk * kstride + (long)(h / group) * hd;
                    float acc[ATT_MAX_HD];
                    memset(acc, 0, (size_t)hd * sizeof(float));
                    float L = lse[((long)b * H + h) * Tq + i], Di = D[((long)b * H + h) * Tq + i];
                    int j0, j1;
                    key_range(doc_start, b, Tk, i + off, &j0, &j1);
                    if (isinf(L)) j1 = j0 - 1;
                    for (int j = j0; j <= j1; j++) {
                        const float *kj = kb + (long)j * kstride, *vj = vb + (long)j * kstride;
                        float p = expf(scale * dot(qi, kj, hd) - L);
                        float ds = p * (dot(doi, vj, hd) - Di);
                        for (int d = 0; d < hd; d++) acc[d] += ds * kj[d];
                    }
                    for (int d = 0; d < hd; d++) dqi[d] = scale * acc[d];
                }

#pragma omp for collapse(3) schedule(dynamic, 4)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < KVH; g++)
                for (int j = 0; j < Tk; j++) {
                    long krow = ((long)b * Tk + j) * kstride + (long)g * hd;
                    const float *kj = k + krow, *vj = v + krow;
                    float dka[ATT_MAX_HD], dva[ATT_MAX_HD];
                    memset(dka, 0, (size_t)hd * sizeof(float));
                    memset(dva, 0, (size_t)hd * sizeof(float));
                    int i0 = j - off > 0 ? j - off : 0;
                    for (int h = g * group; h < (g + 1) * group; h++)
                        for (int i = i0; i < Tq; i++) {
                            if (doc_start[(size_t)b * Tk + i + off] > j) continue;
                            long row = ((long)b * Tq + i) * qstride + (long)h * hd;
                            const float *qi = q + row, *doi = dout + row;
                            float L = lse[((long)b * H + h) * Tq + i];
                            float Di = D[((long)b * H + h) * Tq + i];
                            float p = expf(scale * dot(qi, kj, hd) - L);
                            float ds = p * (dot(doi, vj, hd) - Di);
                            for (int d = 0; d < hd; d++) {
                                dva[d] += p * doi[d];
                                dka[d] += ds * qi[d];
                            }
                        }
                    for (int d = 0; d < hd; d++) {
                        dk[krow + d] = scale * dka[d];
                        dv[krow + d] = dva[d];
                    }
                }
    }
    free(D);
}
