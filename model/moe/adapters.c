// model/moe/adapters.c — see adapters.h.  Each product runs over all the experts as one
// grouped_linear op, fed host arrays of the experts' A, B (and their gradients).
#include "adapters.h"
#include <stddef.h>

static void *rows_at(const backend *be, const void *base, size_t row, size_t width) {
    return (char *)base + row * width * dtype_size(be->act_dtype);
}

static int dropping(const moe_lora *lo) { return lo->train && lo->dropout > 0.0f; }

// The groups' A, B and their gradients as the grouped ops take them: host arrays of G pointers.
typedef struct {
    const void **a, **b;
    float **ga, **gb;
} pair_ptrs;

static pair_ptrs pair_ptrs_make(const moe_lora *lo, const moe_lora_pair *p, int groups) {
    pair_ptrs q;
    void **mem = lo->ptrs;   // MOE_LORA_PTRS(E), groups ≤ E
    q.a = (const void **)mem, q.b = q.a + groups, q.ga = (float **)(mem + 2 * groups), q.gb = q.ga + groups;
    for (int g = 0; g < groups; g++) q.a[g] = p[g].a, q.b[g] = p[g].b, q.ga[g] = p[g].ga, q.gb[g] = p[g].gb;
    return q;
}

// h[slot] = dropout(x)·Aᵀ over the groups.
static void a_forward(backend *be, const moe_lora *lo, int slot, const pair_ptrs *q, const int *offsets, int groups,
                      const void *x, int in) {
    int M = offsets[groups] - offsets[0];
    const void *xin = x;
    if (dropping(lo)) {
        be->dropout_forward(be, rows_at(be, lo->xdrop, offsets[0], in), rows_at(be, x, offsets[0], in),
                            (size_t)M * (size_t)in, lo->dropout, lo->seed[slot]);
        xin = lo->xdrop;
    }
    be->grouped_linear_forward(be, lo->h[slot], xin, q->a, NULL, offsets, groups, in, lo->rank, 1.0f, 0);
}

// From lo->dh = ∂/∂h: h = x̃·Aᵀ (x̃ = dropout(x), the same mask again): dA += dhᵀ·x̃, dx += dropout'(dh·A).
static void a_backward(backend *be, const moe_lora *lo, int slot, const pair_ptrs *q, const int *offsets, int groups,
                       const void *x, void *dx, int in) {
    int r = lo->rank, M = offsets[groups] - offsets[0];
    size_t n = (size_t)M * (size_t)in;
    if (!dropping(lo)) {
        be->grouped_linear_backward(be, dx, q->ga, NULL, lo->dh, x, q->a, offsets, groups, in, r, 1.0f, 1);
        return;
    }
    be->dropout_forward(be, rows_at(be, lo->xdrop, offsets[0], in), rows_at(be, x, offsets[0], in), n, lo->dropout,
                        lo->seed[slot]);
    be->grouped_linear_backward(be, lo->dxdrop, q->ga, NULL, lo->dh, lo->xdrop, q->a, offsets, groups, in, r, 1.0f, 0);
    be->dropout_backward(be, rows_at(be, dx, offsets[0], in), rows_at(be, lo->dxdrop, offsets[0], in), n, lo->dropout,
                         lo->seed[slot]);
}

void moe_lora_forward(backend *be, const moe_lora *lo, int slot, const int *offsets, int groups,
                      const void *x, void *y, int in, int out) {
    const moe_lora_pair *p = lo->pair[slot];
    if (!p) return;
    pair_ptrs q = pair_ptrs_make(lo, p, groups);
    a_forward(be, lo, slot, &q, offsets, groups, x, in);
    be->grouped_linear_forward(be, y, lo->h[slot], q.b, NULL, offsets, groups, lo->rank, out, lo->scale, 1);
}

void moe_lora_backward(backend *be, const moe_lora *lo, int slot, const int *offsets, int groups,
                       const void *x, const void *dy, void *dx, int in, int out) {
    const moe_lora_pair *p = lo->pair[slot];
    if (!p) return;
    pair_ptrs q = pair_ptrs_make(lo, p, groups);
    // y += s·h·Bᵀ: dh = s·dy·B, dB += s·dyᵀ·h.
    be->grouped_linear_backward(be, lo->dh, q.gb, NULL, dy, lo->h[slot], q.b, offsets, groups, lo->rank, out,
                                lo->scale, 0);
    a_backward(be, lo, slot, &q, offsets, groups, x, dx, in);
}

// The up half of each B (2·out, r) and of its gradient: rows out.. of every group's pointers.
static void to_up_half(const backend *be, pair_ptrs *q, int groups, size_t half) {
    for (int g = 0; g < groups; g++) {
        q->b[g] = (const char *)q->b[g] + half * dtype_size(be->act_dtype);
        if (q->gb[g]) q->gb[g] += half;
    }
}

void moe_lora_forward_gate_up(backend *be, const moe_lora *lo, const int *offsets, int groups, const void *x,
                              void *gate, void *up, int in, int out) {
    const moe_lora_pair *p = lo->pair[MOE_LORA_GATE];
    if (!p) return;
    int r = lo->rank;
    pair_ptrs q = pair_ptrs_make(lo, p, groups);
    a_forward(be, lo, MOE_LORA_GATE, &q, offsets, groups, x, in);
    be->grouped_linear_forward(be, gate, lo->h[MOE_LORA_GATE], q.b, NULL, offsets, groups, r, out, lo->scale, 1);
    to_up_half(be, &q, groups, (size_t)out * (size_t)r);
    be->grouped_linear_forward(be, up, lo->h[MOE_LORA_GATE], q.b, NULL, offsets, groups, r, out, lo->scale, 1);
}

void moe_lora_backward_gate_up(backend *be, const moe_lora *lo, const int *offsets, int groups, const void *x,
                               const void *dgate, const void *dup, void *dx, int in, int out) {
    const moe_lora_pair *p = lo->pair[MOE_LORA_GATE];
    if (!p) return;
    int r = lo->rank;
    pair_ptrs q = pair_ptrs_make(lo, p, groups);
    const void *h = lo->h[MOE_LORA_GATE];
    // gate += s·h·B_gateᵀ, up += s·h·B_upᵀ: dh = s·(dgate·B_gate + dup·B_up), dB_* += s·d*ᵀ·h.
    be->grouped_linear_backward(be, lo->dh, q.gb, NULL, dgate, h, q.b, offsets, groups, r, out, lo->scale, 0);
    to_up_half(be, &q, groups, (size_t)out * (size_t)r);
    be->grouped_linear_backward(be, lo->dh, q.gb, NULL, dup, h, q.b, offsets, groups, r, out, lo->scale, 1);
    a_backward(be, lo, MOE_LORA_GATE, &q, offsets, groups, x, dx, in);
}
