// model/moe/router.c — see router.h.
#include "router.h"
#include <stdio.h>

int moe_dims_check(const moe_dims *d, char *err, size_t errlen) {
    if (d->hidden < 1 || d->intermediate < 1) {
        snprintf(err, errlen, "hidden size %d and expert intermediate size %d must be ≥ 1",
                 d->hidden, d->intermediate);
        return -1;
    }
    if (d->n_experts < 1 || d->top_k < 1 || d->top_k > d->n_experts) {
        snprintf(err, errlen, "num_experts_per_tok %d must be between 1 and the number of experts %d",
                 d->top_k, d->n_experts);
        return -1;
    }
    return 0;
}

int moe_check_router_jitter(double jitter, const char *config_file, char *err, size_t errlen) {
    if (jitter == 0) return 0;
    snprintf(err, errlen,
             "%s: error: router_jitter_noise = %g is not supported (quarry routes without jitter)\n"
             "hint: set \"router_jitter_noise\": 0.0 in %s (the published Mixtral configs have 0)",
             config_file, jitter, config_file);
    return -1;
}

void moe_route_forward(backend *be, const moe_dims *d, moe_route *r, void *logits,
                       const void *x, const void *gate, const void *bias, const int32_t *mask,
                       float *prob_sum, float *count, int N, const moe_lora *lora) {
    int E = d->n_experts, k = d->top_k;
    be->linear_forward(be, logits, x, gate, bias, N, d->hidden, E, 1.0f, 0);
    int rows[2] = {0, N};
    if (lora) moe_lora_forward(be, lora, MOE_LORA_ROUTER, rows, 1, x, logits, d->hidden, E);
    be->moe_router_forward(be, r->idx, r->weights, r->probs, logits, N, E, k, d->renorm);
    if (prob_sum && count) be->moe_router_stats(be, prob_sum, count, r->probs, r->idx, mask, N, E, k);
}

void moe_route_backward(backend *be, const moe_dims *d, const moe_route *r, void *dlogits,
                        const float *dweights, const float *dprob, const int32_t *mask,
                        const void *x, const void *gate, float *dgate, float *dbias, void *dx, int N,
                        const moe_lora *lora) {
    int E = d->n_experts, k = d->top_k;
    be->moe_router_backward(be, dlogits, dweights, dprob, mask, r->probs, r->idx, r->weights, N, E,
                            k, d->renorm);
    int rows[2] = {0, N};
    if (lora) moe_lora_backward(be, lora, MOE_LORA_ROUTER, rows, 1, x, dlogits, dx, d->hidden, E);
    be->linear_backward(be, dx, dgate, dbias, dlogits, x, gate, N, d->hidden, E, 1.0f, 1);
}

double moe_aux_loss(const float *prob_sum, const float *count, int E, double rows, double coef,
                    double grad_scale, float *dprob) {
    if (rows <= 0) {
        for (int e = 0; dprob && e < E; e++) dprob[e] = 0;
        return 0;
    }
    double aux = 0;
    for (int e = 0; e < E; e++) aux += (double)count[e] * prob_sum[e];
    aux *= E / (rows * rows);
    for (int e = 0; dprob && e < E; e++)
        dprob[e] = (float)(grad_scale * coef * E * count[e] / (rows * rows));
    return aux;
}
