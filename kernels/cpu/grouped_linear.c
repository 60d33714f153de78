// kernels/cpu/grouped_linear.c — the experts' grouped linear (backend.h): the reference, one
// linear op per group with rows, in group order (each a deterministic GEMM of linear.c).
#include "cpu_ops.h"

static float *rows_at(const void *base, int row, int width) { return (float *)base + (size_t)row * width; }

void cpu_grouped_linear_forward(backend *be, void *out, const void *inp, const void *const *w,
                                const void *const *bias, const int *offsets, int G, int IC, int OC,
                                float scale, int accumulate) {
    for (int g = 0; g < G; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0) continue;
        cpu_linear_forward(be, rows_at(out, r0, OC), rows_at(inp, r0, IC), w[g], bias ? bias[g] : NULL, rows, IC,
                           OC, scale, accumulate);
    }
}

void cpu_grouped_linear_backward(backend *be, void *dinp, float *const *dw, float *const *dbias,
                                 const void *dout, const void *inp, const void *const *w,
                                 const int *offsets, int G, int IC, int OC, float scale, int accumulate) {
    for (int g = 0; g < G; g++) {
        int r0 = offsets[g], rows = offsets[g + 1] - r0;
        if (rows == 0) continue;
        cpu_linear_backward(be, dinp ? rows_at(dinp, r0, IC) : NULL, dw ? dw[g] : NULL, dbias ? dbias[g] : NULL,
                            rows_at(dout, r0, OC), rows_at(inp, r0, IC), w[g], rows, IC, OC, scale, accumulate);
    }
}
