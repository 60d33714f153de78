// kernels/cpu/embedding.c — token embedding lookup and its gradient.
#include "cpu_ops.h"
#include <string.h>

void cpu_embedding_forward(backend *be, void *out_, const int32_t *ids, const void *table_, int N,
                           int C) {
    (void)be;
    float *out = out_;
    const float *table = table_;
#pragma omp parallel for schedule(static) if (N > 64)
    for (int i = 0; i < N; i++)
        memcpy(out + (size_t)i * C, table + (size_t)ids[i] * C, (size_t)C * sizeof(float));
}

// Threads own column blocks and walk the rows in order, so a token seen twice is summed in the
// same order whatever the schedule: deterministic without atomics.  Ids outside [0, V) are
// the caller's bug and are ignored rather than written out of bounds.
void cpu_embedding_backward(backend *be, float *dtable, const void *dout_, const int32_t *ids,
                            int N, int C, int V) {
    (void)be;
    const float *dout = dout_;
    enum { CB = 64 };
    int nblocks = (C + CB - 1) / CB;
#pragma omp parallel for schedule(static) if ((long)N * C > 16384)
    for (int cb = 0; cb < nblocks; cb++) {
        int c0 = cb * CB, c1 = c0 + CB < C ? c0 + CB : C;
        for (int i = 0; i < N; i++) {
            int id = ids[i];
            if (id < 0 || id >= V) continue;
            float *dst = dtable + (size_t)id * C;
            const float *src = dout + (size_t)i * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}
