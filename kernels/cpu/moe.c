// kernels/cpu/moe.c — the mixture-of-experts ops of backend.h on the CPU: router softmax/top-k
// and its backward, the load-balancing statistics, and the permute (dispatch) / unpermute
// (weighted combine) gathers with their backwards.  Every output element is computed by one
// thread in a fixed order (rows, or experts, split between threads; sums over j, n or c walked in
// index order), so results have the same bits for any thread count.
#include "cpu_ops.h"
#include <math.h>
#include <string.h>

// Rows of work below which a loop stays on one thread (thread start-up costs more).
#define MOE_PAR_MIN 16384

// probs = softmax(logits) over E in f32; idx = the k largest probs, descending, ties to the lower
// index (strict > while scanning upward); weights = their probs, over their sum when renorm.
void cpu_moe_router_forward(backend *be, int32_t *idx, float *weights, float *probs,
                            const void *logits_, int N, int E, int k, int renorm) {
    (void)be;
    const float *logits = logits_;
#pragma omp parallel for schedule(static) if ((long)N * E > MOE_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * E;
        float *p = probs + (size_t)n * E;
        float mx = l[0];
        for (int e = 1; e < E; e++) mx = l[e] > mx ? l[e] : mx;
        float sum = 0;
        for (int e = 0; e < E; e++) {
            p[e] = expf(l[e] - mx);
            sum += p[e];
        }
        float inv = 1.0f / sum;
        for (int e = 0; e < E; e++) p[e] *= inv;
        int32_t *ix = idx + (size_t)n * k;
        float *w = weights + (size_t)n * k;
        float wsum = 0;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int t = 0; t < j; t++) taken |= ix[t] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            ix[j] = best;
            w[j] = p[best];
            wsum += w[j];
        }
        if (renorm)
            for (int j = 0; j < k; j++) w[j] /= wsum;
    }
}

// g[e] = ∂L/∂probs[n,e] = dprob[e] (rows in the mask) + (renorm ? (dw_j − Σ_l dw_l w_l) / S : dw_j) at e = idx_j,
// S = Σ_j probs[idx_j] (so w_j = probs[idx_j] / S); then the softmax backward
// dlogits[e] = p[e] (g[e] − Σ_f p[f] g[f]).  The dot products run in double.
void cpu_moe_router_backward(backend *be, void *dlogits_, const float *dweights,
                             const float *dprob, const int32_t *mask, const float *probs,
                             const int32_t *idx, const float *weights, int N, int E, int k,
                             int renorm) {
    (void)be;
    float *dlogits = dlogits_;
#pragma omp parallel for schedule(static) if ((long)N * E > MOE_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * E;
        const int32_t *ix = idx + (size_t)n * k;
        const float *w = weights + (size_t)n * k, *dw = dweights + (size_t)n * k;
        float *g = dlogits + (size_t)n * E;  // holds ∂L/∂probs first, then ∂L/∂logits
        int with_prob = dprob && (!mask || mask[n]);
        for (int e = 0; e < E; e++) g[e] = with_prob ? dprob[e] : 0.0f;
        if (renorm) {
            double s = 0, wdw = 0;
            for (int j = 0; j < k; j++) {
                s += p[ix[j]];
                wdw += (double)w[j] * dw[j];
            }
            for (int j = 0; j < k; j++) g[ix[j]] += (float)((dw[j] - wdw) / s);
        } else {
            for (int j = 0; j < k; j++) g[ix[j]] += dw[j];
        }
        double pg = 0;
        for (int e = 0; e < E; e++) pg += (double)p[e] * g[e];
        for (int e = 0; e < E; e++) g[e] = (float)(p[e] * (g[e] - pg));
    }
}

// Threads own experts and walk the rows in order.
void cpu_moe_router_stats(backend *be, float *prob_sum, float *count, const float *probs,
                          const int32_t *idx, const int32_t *mask, int N, int E, int k) {
    (void)be;
#pragma omp parallel for schedule(static) if ((long)N * E > MOE_PAR_MIN)
    for (int e = 0; e < E; e++) {
        float ps = prob_sum[e];
        long cnt = 0;
        for (int n = 0; n < N; n++) {
            if (mask && !mask[n]) continue;
            ps += probs[(size_t)n * E + e];
            for (int j = 0; j < k; j++) cnt += idx[(size_t)n * k + j] == e;
        }
        prob_sum[e] = ps;
        count[e] += (float)cnt;
    }
}

void cpu_moe_permute(backend *be, void *out_, const void *x_, const int32_t *src, int M, int k,
                     int C) {
    (void)be;
    float *out = out_;
    const float *x = x_;
#pragma omp parallel for schedule(static) if ((long)M * C > MOE_PAR_MIN)
    for (int i = 0; i < M; i++)
        memcpy(out + (size_t)i * C, x + (size_t)(src[i] / k) * C, (size_t)C * sizeof(float));
}

void cpu_moe_permute_backward(backend *be, void *dx_, const void *dout_, const int32_t *pos,
                              int N, int k, int C, int accumulate) {
    (void)be;
    float *dx = dx_;
    const float *dout = dout_;
#pragma omp parallel for schedule(static) if ((long)N * k * C > MOE_PAR_MIN)
    for (int n = 0; n < N; n++) {
        float *d = dx + (size_t)n * C;
        if (!accumulate) memset(d, 0, (size_t)C * sizeof(float));
        for (int j = 0; j < k; j++) {
            const float *s = dout + (size_t)pos[(size_t)n * k + j] * C;
            for (int c = 0; c < C; c++) d[c] += s[c];
        }
    }
}

void cpu_moe_unpermute(backend *be, void *y_, const void *eo_, const float *weights,
                       const int32_t *pos, int N, int k, int C) {
    (void)be;
    float *y = y_;
    const float *eo = eo_;
#pragma omp parallel for schedule(static) if ((long)N * k * C > MOE_PAR_MIN)
    for (int n = 0; n < N; n++) {
        float *d = y + (size_t)n * C;
        memset(d, 0, (size_t)C * sizeof(float));
        for (int j = 0; j < k; j++) {
            size_t a = (size_t)n * k + j;
            const float *s = eo + (size_t)pos[a] * C;
            float w = weights[a];
            for (int c = 0; c < C; c++) d[c] += w * s[c];
        }
    }
}

// The dot product of dweights runs in double (C is the hidden size: thousands of terms).
void cpu_moe_unpermute_backward(backend *be, void *deo_, float *dweights, const void *dy_,
                                const void *eo_, const float *weights, const int32_t *pos,
                                int N, int k, int C) {
    (void)be;
    float *deo = deo_;
    const float *dy = dy_, *eo = eo_;
#pragma omp parallel for schedule(static) if ((long)N * k * C > MOE_PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *g = dy + (size_t)n * C;
        for (int j = 0; j < k; j++) {
            size_t a = (size_t)n * k + j;
            const float *e = eo + (size_t)pos[a] * C;
            float *d = deo + (size_t)pos[a] * C;
            float w = weights[a];
            double dot = 0;
            // Read eo before writing deo: the caller may let them share storage.
            for (int c = 0; c < C; c++) dot += (double)g[c] * e[c];
            for (int c = 0; c < C; c++) d[c] = w * g[c];
            dweights[a] = (float)dot;
        }
    }
}
