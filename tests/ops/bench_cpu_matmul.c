// bench_cpu_matmul — GFLOP/s of the CPU linear products (forward x·Wᵀ, dX = dY·W,
// dW += dYᵀ·X) for a few training-like shapes.  Usage: bench_cpu_matmul [threads]
#include "kernels/backend.h"
#include "kernels/cpu/cpu_ops.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

// Wall time by default; QUARRY_BENCH_CPU_TIME=1 takes process CPU time instead (a fairer
// per-core figure on a shared machine, with one thread).
static double now(void) {
    struct timespec t;
    const char *cpu = getenv("QUARRY_BENCH_CPU_TIME");
    clock_gettime(cpu && *cpu == '1' ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *filled(size_t n) {
    float *x = malloc(n * sizeof(float));
    if (!x) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return x;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    backend *be = backend_cpu(threads);
    if (!be) return 1;
    // (tokens, in, out): a small Llama's projections and MLP, and an odd shape.
    static const int shapes[][3] = {{512, 512, 512}, {1024, 768, 2048}, {1024, 2048, 768},
                                    {2048, 1024, 1024}, {1000, 1001, 999}};
    printf("%-20s %10s %10s %10s\n", "N x IC -> OC", "fwd GF/s", "dX GF/s", "dW GF/s");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], IC = shapes[s][1], OC = shapes[s][2];
        float *x = filled((size_t)N * IC), *w = filled((size_t)OC * IC), *y = filled((size_t)N * OC);
        float *dx = filled((size_t)N * IC), *dw = filled((size_t)OC * IC);
        double flops = 2.0 * N * IC * OC, best[3] = {1e30, 1e30, 1e30};
        for (int rep = 0; rep < 3; rep++) {
            double t0 = now();
            be->linear_forward(be, y, x, w, NULL, N, IC, OC, 1.0f, 0);
            double t1 = now();
            be->linear_backward(be, dx, NULL, NULL, y, x, w, N, IC, OC, 1.0f, 0);
            double t2 = now();
            be->linear_backward(be, NULL, dw, NULL, y, x, w, N, IC, OC, 1.0f, 0);
            double t3 = now();
            double t[3] = {t1 - t0, t2 - t1, t3 - t2};
            for (int k = 0; k < 3; k++) best[k] = t[k] < best[k] ? t[k] : best[k];
        }
        char name[64];
        snprintf(name, sizeof name, "%d x %d -> %d", N, IC, OC);
        printf("%-20s %10.1f %10.1f %10.1f\n", name, flops / best[0] * 1e-9, flops / best[1] * 1e-9,
               flops / best[2] * 1e-9);
        free(x), free(w), free(y), free(dx), free(dw);
    }
    be->destroy(be);
    return 0;
}
