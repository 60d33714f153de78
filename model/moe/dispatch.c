// model/moe/dispatch.c — see dispatch.h.
#include "dispatch.h"

int moe_dispatch_sort(const int32_t *idx, int N, int k, int E, int *offsets, int32_t *src,
                      int32_t *pos) {
    int M = N * k;
    for (int e = 0; e <= E; e++) offsets[e] = 0;
    for (int a = 0; a < M; a++) {
        if (idx[a] < 0 || idx[a] >= E) return -1;
        offsets[idx[a] + 1]++;
    }
    for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    // Walking a upward keeps each expert's rows in increasing a: the sort is stable.  offsets[e]
    // serves as expert e's cursor and ends at the old offsets[e + 1]; shift back afterwards.
    for (int a = 0; a < M; a++) {
        int i = offsets[idx[a]]++;
        src[i] = a;
        pos[a] = i;
    }
    for (int e = E; e > 0; e--) offsets[e] = offsets[e - 1];
    offsets[0] = 0;
    return 0;
}

int moe_dispatch_route(backend *be, moe_routing *rt, moe_dispatch_host *h, const int32_t *idx,
                       int N, int k, int E) {
    size_t bytes = (size_t)N * k * sizeof(int32_t);
    be->copy_to_host(be, h->idx, idx, bytes);
    if (moe_dispatch_sort(h->idx, N, k, E, rt->offsets, h->src, h->pos)) return -1;
    be->copy_to_device(be, rt->src, h->src, bytes);
    be->copy_to_device(be, rt->pos, h->pos, bytes);
    return 0;
}

void moe_dispatch_forward(backend *be, const moe_routing *rt, void *xp, const void *x, int N,
                          int k, int C) {
    be->moe_permute(be, xp, x, rt->src, N * k, k, C);
}

void moe_dispatch_backward(backend *be, const moe_routing *rt, void *dx, const void *dxp, int N,
                           int k, int C, int accumulate) {
    be->moe_permute_backward(be, dx, dxp, rt->pos, N, k, C, accumulate);
}

void moe_combine_forward(backend *be, const moe_routing *rt, void *y, const void *eo,
                         const float *weights, int N, int k, int C) {
    be->moe_unpermute(be, y, eo, weights, rt->pos, N, k, C);
}

void moe_combine_backward(backend *be, const moe_routing *rt, void *deo, float *dweights,
                          const void *dy, const void *eo, const float *weights, int N, int k,
                          int C) {
    be->moe_unpermute_backward(be, deo, dweights, dy, eo, weights, rt->pos, N, k, C);
}
