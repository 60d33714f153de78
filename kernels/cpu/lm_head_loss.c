// kernels/cpu/lm_head_loss.c — fused lm_head + cross-entropy over chunks of trained rows: at
// most R × V logits exist at once (R chosen so that is ≤ 32 MB), never N × V.
// Per chunk:  logits = h_c·wᵀ;  loss = logsumexp(logits) − logits[target];
//             dlogits = grad_scale · (softmax − onehot);  dh_c = dlogits·w;  dw += dlogitsᵀ·h_c.
#include "cpu_ops.h"
#include "cpu_math.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void cpu_lm_head_loss(backend *be, float *losses, void *dh_, float *dw, const void *h_,
                      const void *w_, const int32_t *targets, int N, int C, int V,
                      float grad_scale) {
    (void)be;
    float *dh = dh_;
    const float *h = h_, *w = w_;
    if (N <= 0) return;
    // Rows not trained (target −1, or out of range) get loss 0 and a zero gradient.
    int *rows = malloc((size_t)N * sizeof(int));
    int nt = 0;
    if (!rows) return;
    for (int i = 0; i < N; i++) {
        losses[i] = 0.0f;
        if (targets[i] >= 0 && targets[i] < V) rows[nt++] = i;
    }
    if (dh) memset(dh, 0, (size_t)N * C * sizeof(float));
    long R = (8L << 20) / (V > 0 ? V : 1);
    R = R < 8 ? 8 : R > 256 ? 256 : R;
    if (R > nt) R = nt;
    float *hc = NULL, *logits = NULL, *dhc = NULL;
    if (nt > 0) {
        hc = malloc((size_t)R * C * sizeof(float));
        logits = malloc((size_t)R * V * sizeof(float));
        dhc = dh ? malloc((size_t)R * C * sizeof(float)) : NULL;
    }
    if (nt > 0 && (!hc || !logits || (dh && !dhc))) nt = 0;  // out of memory: nothing computed
    for (int r0 = 0; r0 < nt; r0 += (int)R) {
        int rc = nt - r0 < R ? nt - r0 : (int)R;
        for (int r = 0; r < rc; r++)
            memcpy(hc + (size_t)r * C, h + (size_t)rows[r0 + r] * C, (size_t)C * sizeof(float));
        cpu_gemm(rc, V, C, 1.0f, hc, C, 1, w, 1, C, 0.0f, logits, V);
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rc; r++) {
            float *lr = logits + (size_t)r * V;
            int t = targets[rows[r0 + r]];
            float mx = -INFINITY, target_logit = lr[t];
            for (int j = 0; j < V; j++) mx = lr[j] > mx ? lr[j] : mx;
            for (int j = 0; j < V; j++) lr[j] -= mx;
            cpu_exp_array(lr, lr, V);  // one exp per logit, reused by the gradient
            double sum = 0;
            for (int j = 0; j < V; j++) sum += lr[j];
            losses[rows[r0 + r]] = (mx + (float)log(sum)) - target_logit;
            if (dh) {
                float g = (float)(grad_scale / sum);
                for (int j = 0; j < V; j++) lr[j] *= g;
                lr[t] -= grad_scale;
            }
        }
        if (!dh) continue;
        cpu_gemm(rc, C, V, 1.0f, logits, V, 1, w, C, 1, 0.0f, dhc, C);
        for (int r = 0; r < rc; r++)
            memcpy(dh + (size_t)rows[r0 + r] * C, dhc + (size_t)r * C, (size_t)C * sizeof(float));
        if (dw) cpu_gemm(V, C, rc, 1.0f, logits, 1, V, hc, C, 1, 1.0f, dw, C);
    }
    free(rows);
    free(hc);
    free(logits);
    free(dhc);
}
