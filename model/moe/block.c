// model/moe/block.c — see block.h.
#include "block.h"
#include <stdio.h>

// Bump allocator over planned memory: with base NULL it only counts.
typedef struct {
    char *base;
    size_t used;
} carver;

static void *carve(carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->used : NULL;
    c->used += (bytes + 255) / 256 * 256;
    return p;
}

static void layout_saved(const moe_dims *d, int N, dtype act, carver *dev, carver *host,
                         moe_saved *s) {
    size_t a = dtype_size(act), M = (size_t)N * d->top_k, C = d->hidden, I = d->intermediate;
    s->route.probs = carve(dev, (size_t)N * d->n_experts * 4);
    s->route.idx = carve(dev, M * 4);
    s->route.weights = carve(dev, M * 4);
    s->routing.src = carve(dev, M * 4);
    s->routing.pos = carve(dev, M * 4);
    s->xp = carve(dev, M * C * a);
    s->gate = carve(dev, M * I * a);
    s->up = carve(dev, M * I * a);
    s->eo = carve(dev, M * C * a);
    s->routing.offsets = carve(host, (size_t)(d->n_experts + 1) * sizeof(int));
}

static void layout_scratch(const moe_dims *d, int N, dtype act, carver *dev, carver *host,
                           moe_scratch *t) {
    size_t a = dtype_size(act), M = (size_t)N * d->top_k, C = d->hidden, I = d->intermediate;
    t->logits = carve(dev, (size_t)N * d->n_experts * a);
    t->dlogits = carve(dev, (size_t)N * d->n_experts * a);
    t->dweights = carve(dev, M * 4);
    t->h = carve(dev, M * I * a);
    t->dh = carve(dev, M * I * a);
    t->dup = carve(dev, M * I * a);
    t->deo = carve(dev, M * C * a);
    t->host.idx = carve(host, M * 4);
    t->host.src = carve(host, M * 4);
    t->host.pos = carve(host, M * 4);
}

void moe_block_sizes(const moe_dims *d, int N, dtype act, moe_sizes *out) {
    carver dev = {0}, host = {0};
    moe_saved s;
    moe_scratch t;
    layout_saved(d, N, act, &dev, &host, &s);
    out->saved_device = dev.used;
    out->saved_host = host.used;
    dev.used = host.used = 0;
    layout_scratch(d, N, act, &dev, &host, &t);
    out->scratch_device = dev.used;
    out->scratch_host = host.used;
}

void moe_saved_carve(const moe_dims *d, int N, dtype act, void *device, void *host, moe_saved *s) {
    carver dev = {device, 0}, h = {host, 0};
    layout_saved(d, N, act, &dev, &h, s);
}

void moe_scratch_carve(const moe_dims *d, int N, dtype act, void *device, void *host,
                       moe_scratch *t) {
    carver dev = {device, 0}, h = {host, 0};
    layout_scratch(d, N, act, &dev, &h, t);
}

int moe_block_forward(backend *be, const moe_dims *d, const moe_weights *w, moe_saved *s,
                      moe_scratch *t, const void *x, void *y, const int32_t *mask,
                      float *prob_sum, float *count, int N, char *err, size_t errlen) {
    int k = d->top_k, C = d->hidden;
    moe_route_forward(be, d, &s->route, t->logits, x, w->router, w->router_bias, mask, prob_sum, count, N,
                      w->experts.lora);
    if (moe_dispatch_route(be, &s->routing, &t->host, s->route.idx, N, k, d->n_experts)) {
        snprintf(err, errlen, "MoE router chose an expert outside [0, %d)", d->n_experts);
        return -1;
    }
    moe_dispatch_forward(be, &s->routing, s->xp, x, N, k, C);
    moe_experts_forward(be, d, s->routing.offsets, &w->experts, s->xp, s->gate, s->up, t->h,
                        s->eo);
    moe_combine_forward(be, &s->routing, y, s->eo, s->route.weights, N, k, C);
    return 0;
}

void moe_block_backward(backend *be, const moe_dims *d, const moe_weights *w, moe_grads *g,
                        const moe_saved *s, moe_scratch *t, const void *x, const void *dy,
                        void *dx, const float *dprob, const int32_t *mask, int N, int accumulate) {
    int k = d->top_k, C = d->hidden;
    moe_combine_backward(be, &s->routing, t->deo, t->dweights, dy, s->eo, s->route.weights, N, k,
                         C);
    // dxp overwrites deo in place (moe_experts_backward allows it).
    moe_experts_backward(be, d, s->routing.offsets, &w->experts, &g->experts, s->xp, s->gate,
                         s->up, t->deo, t->deo, t->h, t->dh, t->dup);
    moe_dispatch_backward(be, &s->routing, dx, t->deo, N, k, C, accumulate);
    moe_route_backward(be, d, &s->route, t->dlogits, t->dweights, dprob, mask, x, w->router,
                       g->router, g->router_bias, dx, N, w->experts.lora);
}
