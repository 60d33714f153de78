// model/moe/adapters.c — see adapters.h.
#include "adapters.h"

static void *rows_at(const backend *be, const void *base, size_t row, size_t width) {
    return (char *)base + row * width * dtype_size(be->act_dtype);
}

static int dropping(const moe_lora *lo) { return lo->train && lo->dropout > 0.0f; }

void moe_lora_forward(backend *be, const moe_lora *lo, int slot, const int *offsets, int groups,
                      const void *x, void *y, int in, int out) {
    const moe_lora_pair *p = lo->pair[slot];
    if (!p) return;
    int r = lo->rank, M = offsets[groups] - offsets[0];
    const void *xin = x;
    if (dropping(lo)) {
        be->dropout_forward(be, rows_at(be, lo->xdrop, offsets[0], in), rows_at(be, x, offsets[0], in),
                            (size_t)M * (size_t)in, lo->dropout, lo->seed[slot]);
        xin = lo->xdrop;
    }
    for (int g = 0; g < groups; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0) continue;
        void *h = rows_at(be, lo->h[slot], r0, r);
        be->linear_forward(be, h, rows_at(be, xin, r0, in), p[g].a, NULL, rows, in, r, 1.0f, 0);
        be->linear_forward(be, rows_at(be, y, r0, out), h, p[g].b, NULL, rows, r, out, lo->scale, 1);
    }
}

void moe_lora_backward(backend *be, const moe_lora *lo, int slot, const int *offsets, int groups,
                       const void *x, const void *dy, void *dx, int in, int out) {
    const moe_lora_pair *p = lo->pair[slot];
    if (!p) return;
    int r = lo->rank, M = offsets[groups] - offsets[0], drop = dropping(lo);
    // y += s·h·Bᵀ: dh = s·dy·B, dB += s·dyᵀ·h.
    for (int g = 0; g < groups; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0) continue;
        be->linear_backward(be, rows_at(be, lo->dh, r0, r), p[g].gb, NULL, rows_at(be, dy, r0, out),
                            rows_at(be, lo->h[slot], r0, r), p[g].b, rows, r, out, lo->scale, 0);
    }
    // h = x̃·Aᵀ (x̃ = dropout(x), the same mask again): dA += dhᵀ·x̃, dx += dropout'(dh·A).
    size_t n = (size_t)M * (size_t)in;
    if (drop)
        be->dropout_forward(be, rows_at(be, lo->xdrop, offsets[0], in), rows_at(be, x, offsets[0], in), n,
                            lo->dropout, lo->seed[slot]);
    for (int g = 0; g < groups; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0) continue;
        const void *dh = rows_at(be, lo->dh, r0, r);
        if (drop)
            be->linear_backward(be, rows_at(be, lo->dxdrop, r0, in), p[g].ga, NULL, dh,
                                rows_at(be, lo->xdrop, r0, in), p[g].a, rows, in, r, 1.0f, 0);
        else
            be->linear_backward(be, rows_at(be, dx, r0, in), p[g].ga, NULL, dh, rows_at(be, x, r0, in), p[g].a,
                                rows, in, r, 1.0f, 1);
    }
    if (drop)
        be->dropout_backward(be, rows_at(be, dx, offsets[0], in), rows_at(be, lo->dxdrop, offsets[0], in), n,
                             lo->dropout, lo->seed[slot]);
}
