// model/moe/dispatch.h — the token dispatch of one MoE layer (Megatron-Core's "token
// dispatcher"), dropless: the M = N·k assignments (a = n·k + j, row n's j-th choice) grouped by
// expert with a stable counting sort on the host, so that expert e's rows are the contiguous
// permuted rows [offsets[e], offsets[e+1]) in increasing a (deterministic, no atomics); then
// the gather into that order (moe_permute) and the weighted combine back (moe_unpermute), and
// their backwards, through the op table.
#pragma once
#include "../../kernels/backend.h"
#include <stdint.h>

// Where one layer's assignments went (kept for the backward).
typedef struct {
    int *offsets;       // host (E + 1): expert e's permuted rows are [offsets[e], offsets[e+1])
    int32_t *src;       // device i32 (M): the assignment each permuted row carries
    int32_t *pos;       // device i32 (M): the permuted row of each assignment (src's inverse)
} moe_routing;

// Host scratch for the sort, shared by all layers: three i32 (M) arrays.
typedef struct {
    int32_t *idx, *src, *pos;
} moe_dispatch_host;

// The stable counting sort on the host: from idx (host i32 (N·k), every value in [0, E)) fills
// offsets (E + 1), src and pos (host i32 (M)).  Returns 0, or -1 when an index is out of range.
int moe_dispatch_sort(const int32_t *idx, int N, int k, int E, int *offsets, int32_t *src,
                      int32_t *pos);

// idx (device) → host → sort → rt->offsets, rt->src and rt->pos (device).  -1 when idx holds an
// expert out of range (a NaN router would still give valid indices: it cannot happen).
int moe_dispatch_route(backend *be, moe_routing *rt, moe_dispatch_host *h, const int32_t *idx,
                       int N, int k, int E);

// xp (act (M, C)) = x's rows in the routed order.
void moe_dispatch_forward(backend *be, const moe_routing *rt, void *xp, const void *x, int N,
                          int k, int C);
// dx = (accumulate ? dx : 0) + Σ_j dxp[pos[n·k + j]].
void moe_dispatch_backward(backend *be, const moe_routing *rt, void *dx, const void *dxp, int N,
                           int k, int C, int accumulate);
// y (act (N, C), overwritten) = Σ_j weights[n,j] · eo[pos[n·k + j]].
void moe_combine_forward(backend *be, const moe_routing *rt, void *y, const void *eo,
                         const float *weights, int N, int k, int C);
// deo (act (M, C), overwritten) and dweights (f32 (N, k), overwritten) from dy.
void moe_combine_backward(backend *be, const moe_routing *rt, void *deo, float *dweights,
                          const void *dy, const void *eo, const float *weights, int N, int k,
                          int C);
