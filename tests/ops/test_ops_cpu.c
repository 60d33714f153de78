// The CPU op table against double precision: every forward is compared with a small double
// reference written here (relative error ≤ 1e-5), every backward with central differences of
// that double forward (≤ 1e-4), on random odd shapes; accumulate/overwrite/NULL contracts of
// kernels/backend.h are checked by starting gradients from random values; AdamW against a
// direct double implementation; determinism by running with 1, 2 and 3 threads.
#include "kernels/backend.h"
#include "kernels/cpu/cpu_math.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/rng.h"
#include "test.h"
#include <omp.h>
#include <stdint.h>

#define FWD_TOL 1e-5
#define BWD_TOL 1e-4

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static void *xcalloc(size_t n, size_t size) {
    void *p = xmalloc(n * size);
    memset(p, 0, n * size);
    return p;
}

static float *frand(rng_state *r, size_t n, float lo, float hi) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_next_uniform(r);
    return x;
}

static float *fcopy(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double *to_double(const float *x, size_t n) {
    double *y = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

static int rand_int(rng_state *r, int n) { return (int)(rng_next_u64(r) % (uint64_t)n); }

// ‖a − b‖ / ‖b‖ with b in double.
static double rel_err_d(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// (after − before) in double: what an accumulating op added.
static float *added(const float *after, const float *before, size_t n) {
    float *d = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) d[i] = after[i] - before[i];
    return d;
}

static void check_fwd(const char *what, const float *got, const double *want, size_t n) {
    double e = rel_err_d(got, want, n);
    CHECK(e <= FWD_TOL, "%s: forward relative error %.3g > %g", what, e, FWD_TOL);
}

// A scalar loss of double inputs, L = Σ forward(in) ⊙ R, for central differences.
typedef double (*loss_fn)(void *ctx, double *const *in);

// Compares got (the op's gradient w.r.t. in[which], n elements) with central differences of f
// at up to max_check elements (all of them when n ≤ max_check, else a random sample).
static void check_grad(const char *what, loss_fn f, void *ctx, double **in, int which, size_t n,
                       const float *got, size_t max_check, rng_state *r) {
    size_t m = n < max_check ? n : max_check;
    float *g = xmalloc(m * sizeof(float) + 1);
    double *fd = xmalloc(m * sizeof(double) + 1);
    for (size_t t = 0; t < m; t++) {
        size_t e = m == n ? t : (size_t)(rng_next_u64(r) % n);
        double save = in[which][e], h = 1e-5 * (fabs(save) > 1 ? fabs(save) : 1);
        in[which][e] = save + h;
        double lp = f(ctx, in);
        in[which][e] = save - h;
        double lm = f(ctx, in);
        in[which][e] = save;
        fd[t] = (lp - lm) / (2 * h);
        g[t] = got[e];
    }
    double err = rel_err_d(g, fd, m);
    CHECK(err <= BWD_TOL, "%s: gradient vs finite differences: relative error %.3g > %g (%zu of %zu elements)",
          what, err, BWD_TOL, m, n);
    free(g);
    free(fd);
}

static void check_same_bits(const char *what, const float *a, const float *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    CHECK(bad == 0, "%s: %zu of %zu elements differ between thread counts", what, bad, n);
}

// ---------------------------------------------------------------------------------------------
// Embedding

typedef struct {
    int N, C, V;
    const int32_t *ids;
    const double *R;
} emb_ctx;

static double emb_loss(void *c_, double *const *in) {
    emb_ctx *c = c_;
    double L = 0;
    for (int i = 0; i < c->N; i++)
        for (int k = 0; k < c->C; k++) L += in[0][(size_t)c->ids[i] * c->C + k] * c->R[(size_t)i * c->C + k];
    return L;
}

static void test_embedding(backend *be, rng_state *r) {
    int N = 53, C = 37, V = 11;  // V < N: ids repeat
    int32_t *ids = xmalloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) ids[i] = rand_int(r, V);
    float *table = frand(r, (size_t)V * C, -1, 1), *out = frand(r, (size_t)N * C, -1, 1);
    be->embedding_forward(be, out, ids, table, N, C);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += memcmp(out + (size_t)i * C, table + (size_t)ids[i] * C, C * sizeof(float)) != 0;
    CHECK(bad == 0, "embedding forward: %d rows differ from the table", bad);

    float *R = frand(r, (size_t)N * C, -1, 1), *dt0 = frand(r, (size_t)V * C, -1, 1);
    float *dt = fcopy(dt0, (size_t)V * C);
    be->embedding_backward(be, dt, R, ids, N, C, V);
    float *got = added(dt, dt0, (size_t)V * C);
    double *Rd = to_double(R, (size_t)N * C), *td = to_double(table, (size_t)V * C);
    emb_ctx ctx = {N, C, V, ids, Rd};
    double *in[] = {td};
    check_grad("embedding backward", emb_loss, &ctx, in, 0, (size_t)V * C, got, 100000, r);

    // Determinism: a big batch of few ids, 1 vs 2 vs 3 threads.
    int N2 = 3001, C2 = 67, V2 = 5;
    int32_t *ids2 = xmalloc(N2 * sizeof(int32_t));
    for (int i = 0; i < N2; i++) ids2[i] = rand_int(r, V2);
    float *R2 = frand(r, (size_t)N2 * C2, -1, 1), *ref = NULL;
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        float *d = calloc((size_t)V2 * C2, sizeof(float));
        be->embedding_backward(be, d, R2, ids2, N2, C2, V2);
        if (!ref) ref = d;
        else {
            check_same_bits("embedding backward", d, ref, (size_t)V2 * C2);
            free(d);
        }
    }
    omp_set_num_threads(2);
    free(ids); free(table); free(out); free(R); free(dt0); free(dt); free(got); free(Rd); free(td);
    free(ids2); free(R2); free(ref);
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

typedef struct {
    int N, C;
    double eps;
    const double *R;
    double *out, *rstd;
} rms_ctx;

static double rms_loss(void *c_, double *const *in) {
    rms_ctx *c = c_;
    const double *x = in[0], *w = in[1];
    double L = 0;
    for (int i = 0; i < c->N; i++) {
        double ss = 0;
        for (int k = 0; k < c->C; k++) ss += x[(size_t)i * c->C + k] * x[(size_t)i * c->C + k];
        double rs = 1.0 / sqrt(ss / c->C + c->eps);
        if (c->rstd) c->rstd[i] = rs;
        for (int k = 0; k < c->C; k++) {
            double o = x[(size_t)i * c->C + k] * rs * w[k];
            if (c->out) c->out[(size_t)i * c->C + k] = o;
            L += o * c->R[(size_t)i * c->C + k];
        }
    }
    return L;
}

static void test_rmsnorm(backend *be, rng_state *r) {
    int N = 19, C = 45;
    float eps = 1e-5f;
    size_t nc = (size_t)N * C;
    float *x = frand(r, nc, -2, 2), *w = frand(r, C, 0.5f, 1.5f), *out = xmalloc(nc * 4), *rstd = xmalloc(N * 4);
    float *R = frand(r, nc, -1, 1);
    double *xd = to_double(x, nc), *wd = to_double(w, C), *Rd = to_double(R, nc);
    rms_ctx ctx = {N, C, eps, Rd, xmalloc(nc * 8), xmalloc(N * 8)};
    double *in[] = {xd, wd};
    rms_loss(&ctx, in);
    be->rmsnorm_forward(be, out, rstd, x, w, N, C, eps);
    check_fwd("rmsnorm out", out, ctx.out, nc);
    check_fwd("rmsnorm rstd", rstd, ctx.rstd, N);
    free(ctx.out);
    free(ctx.rstd);
    ctx.out = ctx.rstd = NULL;

    float *dx0 = frand(r, nc, -1, 1), *dw0 = frand(r, C, -1, 1);
    float *dx = fcopy(dx0, nc), *dw = fcopy(dw0, C);
    be->rmsnorm_backward(be, dx, dw, R, x, w, rstd, N, C);
    float *gx = added(dx, dx0, nc), *gw = added(dw, dw0, C);
    check_grad("rmsnorm dx (accumulated)", rms_loss, &ctx, in, 0, nc, gx, 100000, r);
    check_grad("rmsnorm dw (accumulated)", rms_loss, &ctx, in, 1, C, gw, 100000, r);
    // dw NULL: dx is the same.
    float *dx2 = fcopy(dx0, nc);
    be->rmsnorm_backward(be, dx2, NULL, R, x, w, rstd, N, C);
    check_same_bits("rmsnorm dx with dw NULL", dx2, dx, nc);

    // Determinism of dw on a size that runs parallel.
    int N2 = 501, C2 = 130;
    float *x2 = frand(r, (size_t)N2 * C2, -1, 1), *R2 = frand(r, (size_t)N2 * C2, -1, 1), *rs2 = xmalloc(N2 * 4);
    float *o2 = xmalloc((size_t)N2 * C2 * 4), *ref = NULL, *refx = NULL;
    float *w2 = frand(r, C2, 0.5f, 1.5f);
    be->rmsnorm_forward(be, o2, rs2, x2, w2, N2, C2, eps);
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        float *d = calloc(C2, 4), *ddx = calloc((size_t)N2 * C2, 4);
        be->rmsnorm_backward(be, ddx, d, R2, x2, w2, rs2, N2, C2);
        if (!ref) {
            ref = d;
            refx = ddx;
        } else {
            check_same_bits("rmsnorm dw", d, ref, C2);
            check_same_bits("rmsnorm dx", ddx, refx, (size_t)N2 * C2);
            free(d);
            free(ddx);
        }
    }
    omp_set_num_threads(2);
    free(x); free(w); free(out); free(rstd); free(R); free(xd); free(wd); free(Rd);
    free(dx0); free(dw0); free(dx); free(dw); free(gx); free(gw); free(dx2);
    free(x2); free(R2); free(rs2); free(o2); free(ref); free(refx); free(w2);
}

// ---------------------------------------------------------------------------------------------
// Matrix product and linear

// C = A·B in double for the gemm check; A (M, K) and B (K, N) given by strides.
static void gemm_ref(int M, int N, int K, const float *a, long ars, long acs, const float *b,
                     long brs, long bcs, double *c) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)a[i * ars + k * acs] * b[k * brs + j * bcs];
            c[(size_t)i * N + j] = s;
        }
}

static void test_gemm(rng_state *r) {
#if defined(__x86_64__)
    printf("gemm micro-kernels: portable 6x8%s%s\n", __builtin_cpu_supports("avx2") ? ", AVX2 6x16" : " (no AVX2 here)",
           __builtin_cpu_supports("avx512f") ? ", AVX-512 6x32" : " (no AVX-512 here)");
#else
    printf("gemm micro-kernels: portable 6x8 only (not x86-64)\n");
#endif
    // Shapes past every blocking edge: K > KC (256), N > NB and NC (4096), M > the packed row
    // block (1536), and 1-sized ones; transposed operands as the three linear products use.
    static const int shapes[][3] = {{1, 1, 1},     {7, 9, 5},   {37, 45, 29}, {100, 270, 300},
                                    {7, 4200, 5},  {1600, 9, 3}, {13, 17, 1},  {6, 16, 256},
                                    {61, 130, 257}};
    for (int kc = 1; kc <= 3; kc++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int trans = 0; trans < 4; trans++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float *a = frand(r, (size_t)M * K, -1, 1), *b = frand(r, (size_t)K * N, -1, 1);
                long ars = trans & 1 ? 1 : K, acs = trans & 1 ? M : 1;
                long brs = trans & 2 ? 1 : N, bcs = trans & 2 ? K : 1;
                double *want = xmalloc((size_t)M * N * 8);
                gemm_ref(M, N, K, a, ars, acs, b, brs, bcs, want);
                float *c = frand(r, (size_t)M * N, -1, 1), *c0 = fcopy(c, (size_t)M * N);
                double *start = to_double(c0, (size_t)M * N);
                // overwrite with alpha 0.5 (C holds garbage that must not leak in)
                cpu_gemm_with(kc, M, N, K, 0.5f, a, ars, acs, b, brs, bcs, 0.0f, c, N);
                for (size_t i = 0; i < (size_t)M * N; i++) want[i] *= 0.5;
                char what[128];
                snprintf(what, sizeof what, "gemm kernel %d %dx%dx%d trans %d", kc, M, N, K, trans);
                check_fwd(what, c, want, (size_t)M * N);
                // accumulate onto random values
                cpu_gemm_with(kc, M, N, K, 0.5f, a, ars, acs, b, brs, bcs, 1.0f, c0, N);
                for (size_t i = 0; i < (size_t)M * N; i++) want[i] += start[i];
                snprintf(what, sizeof what, "gemm kernel %d %dx%dx%d trans %d accumulate", kc, M, N, K, trans);
                check_fwd(what, c0, want, (size_t)M * N);
                free(start);
#if defined(__x86_64__)
                if (kc == 3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
                    __builtin_cpu_supports("fma")) {  // AVX2 and AVX-512 kernels: the same bits
                    float *c2 = xmalloc((size_t)M * N * 4);
                    cpu_gemm_with(2, M, N, K, 0.5f, a, ars, acs, b, brs, bcs, 0.0f, c2, N);
                    snprintf(what, sizeof what, "gemm %dx%dx%d trans %d: AVX2 vs AVX-512", M, N, K, trans);
                    check_same_bits(what, c2, c, (size_t)M * N);
                    free(c2);
                }
#endif
                free(a); free(b); free(want); free(c); free(c0);
            }
}

typedef struct {
    int N, IC, OC, has_bias;
    double scale;
    const double *R;
    double *out;
} lin_ctx;

static double lin_loss(void *c_, double *const *in) {
    lin_ctx *c = c_;
    const double *x = in[0], *w = in[1], *bias = in[2];
    double L = 0;
    for (int i = 0; i < c->N; i++)
        for (int j = 0; j < c->OC; j++) {
            double s = c->has_bias ? bias[j] : 0;
            for (int k = 0; k < c->IC; k++) s += x[(size_t)i * c->IC + k] * w[(size_t)j * c->IC + k];
            s *= c->scale;
            if (c->out) c->out[(size_t)i * c->OC + j] = s;
            L += s * c->R[(size_t)i * c->OC + j];
        }
    return L;
}

static void test_linear(backend *be, rng_state *r) {
    static const int shapes[][3] = {{37, 45, 29}, {1, 7, 3}, {20, 33, 70}, {5, 300, 11}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int variant = 0; variant < 4; variant++) {
            int N = shapes[s][0], IC = shapes[s][1], OC = shapes[s][2];
            int has_bias = variant & 1, accumulate = variant >> 1;
            float scale = variant == 3 ? 0.75f : 1.0f + 0.5f * (float)variant;
            size_t nx = (size_t)N * IC, nw = (size_t)OC * IC, ny = (size_t)N * OC;
            float *x = frand(r, nx, -1, 1), *w = frand(r, nw, -1, 1), *bias = frand(r, OC, -1, 1);
            float *y0 = frand(r, ny, -1, 1), *y = fcopy(y0, ny), *R = frand(r, ny, -1, 1);
            double *xd = to_double(x, nx), *wd = to_double(w, nw), *bd = to_double(bias, OC), *Rd = to_double(R, ny);
            lin_ctx ctx = {N, IC, OC, has_bias, scale, Rd, xmalloc(ny * 8)};
            double *in[] = {xd, wd, bd};
            lin_loss(&ctx, in);
            if (accumulate)
                for (size_t i = 0; i < ny; i++) ctx.out[i] += y0[i];
            be->linear_forward(be, y, x, w, has_bias ? bias : NULL, N, IC, OC, scale, accumulate);
            char what[160];
            snprintf(what, sizeof what, "linear %dx%d->%d bias %d accumulate %d scale %g", N, IC, OC,
                     has_bias, accumulate, scale);
            check_fwd(what, y, ctx.out, ny);
            free(ctx.out);
            ctx.out = NULL;

            float *dx0 = frand(r, nx, -1, 1), *dw0 = frand(r, nw, -1, 1), *db0 = frand(r, OC, -1, 1);
            float *dx = fcopy(dx0, nx), *dw = fcopy(dw0, nw), *db = fcopy(db0, OC);
            be->linear_backward(be, dx, dw, has_bias ? db : NULL, R, x, w, N, IC, OC, scale, accumulate);
            float *gx = accumulate ? added(dx, dx0, nx) : fcopy(dx, nx), *gw = added(dw, dw0, nw);
            char w2[200];
            snprintf(w2, sizeof w2, "%s: dinp", what);
            check_grad(w2, lin_loss, &ctx, in, 0, nx, gx, 100, r);
            snprintf(w2, sizeof w2, "%s: dw (accumulated)", what);
            check_grad(w2, lin_loss, &ctx, in, 1, nw, gw, 100, r);
            if (has_bias) {
                float *gb = added(db, db0, OC);
                snprintf(w2, sizeof w2, "%s: dbias (accumulated)", what);
                check_grad(w2, lin_loss, &ctx, in, 2, OC, gb, 300, r);
                free(gb);
            } else {
                CHECK(!memcmp(db, db0, OC * 4), "%s: dbias NULL but dbias changed", what);
            }
            // NULL gradients are skipped; the others are unchanged by that.
            float *dx3 = fcopy(dx0, nx), *dw3 = fcopy(dw0, nw);
            be->linear_backward(be, NULL, dw3, NULL, R, x, w, N, IC, OC, scale, accumulate);
            check_same_bits("linear dw with dinp NULL", dw3, dw, nw);
            be->linear_backward(be, dx3, NULL, NULL, R, x, w, N, IC, OC, scale, accumulate);
            check_same_bits("linear dinp with dw NULL", dx3, dx, nx);
            free(x); free(w); free(bias); free(y0); free(y); free(R); free(xd); free(wd); free(bd); free(Rd);
            free(dx0); free(dw0); free(db0); free(dx); free(dw); free(db); free(gx); free(gw); free(dx3); free(dw3);
        }

    // Thread-count independence of all three products.
    int N = 97, IC = 301, OC = 129;
    float *x = frand(r, (size_t)N * IC, -1, 1), *w = frand(r, (size_t)OC * IC, -1, 1), *R = frand(r, (size_t)N * OC, -1, 1);
    float *ry = NULL, *rdx = NULL, *rdw = NULL;
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        float *y = xmalloc((size_t)N * OC * 4), *dx = xmalloc((size_t)N * IC * 4), *dw = calloc((size_t)OC * IC, 4);
        be->linear_forward(be, y, x, w, NULL, N, IC, OC, 1.0f, 0);
        be->linear_backward(be, dx, dw, NULL, R, x, w, N, IC, OC, 1.0f, 0);
        if (!ry) {
            ry = y, rdx = dx, rdw = dw;
        } else {
            check_same_bits("linear forward", y, ry, (size_t)N * OC);
            check_same_bits("linear dinp", dx, rdx, (size_t)N * IC);
            check_same_bits("linear dw", dw, rdw, (size_t)OC * IC);
            free(y); free(dx); free(dw);
        }
    }
    omp_set_num_threads(2);
    free(x); free(w); free(R); free(ry); free(rdx); free(rdw);
}

// Residual add + RMSNorm against add then rmsnorm_forward (each checked against double
// references): the same bits, with out written over a (as model/llama.c calls it).
static void test_add_rmsnorm(backend *be, rng_state *r) {
    static const int shapes[][2] = {{37, 45}, {1, 7}, {64, 256}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], C = shapes[s][1];
        size_t n = (size_t)N * C;
        float *a = frand(r, n, -2, 2), *b = frand(r, n, -2, 2), *w = frand(r, (size_t)C, 0.5f, 1.5f);
        float *sum = xmalloc(n * 4), *out = fcopy(a, n), *rstd = xmalloc((size_t)N * 4);
        float *sum_r = xmalloc(n * 4), *out_r = xmalloc(n * 4), *rstd_r = xmalloc((size_t)N * 4);
        be->add_rmsnorm_forward(be, sum, out, rstd, out, b, w, N, C, 1e-5f);   // out aliases a
        be->add(be, sum_r, a, b, n);
        be->rmsnorm_forward(be, out_r, rstd_r, sum_r, w, N, C, 1e-5f);
        check_same_bits("add_rmsnorm sum", sum, sum_r, n);
        check_same_bits("add_rmsnorm out", out, out_r, n);
        check_same_bits("add_rmsnorm rstd", rstd, rstd_r, (size_t)N);
        free(a); free(b); free(w); free(sum); free(out); free(rstd); free(sum_r); free(out_r); free(rstd_r);
    }
}

// The grouped LoRA op against G separate LoRA linears (each checked above against double
// references): the same bits, forward and backward, accumulating and NULL contracts included.
static void test_lora_group(backend *be, rng_state *r) {
    static const int shapes[][6] = {{37, 45, 3, 29, 11, 11}, {5, 70, 4, 33, 33, 0}, {1, 16, 2, 7, 3, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], IC = shapes[s][1], rk = shapes[s][2], G = shapes[s][5] ? 3 : 2;
        int out[3] = {shapes[s][3], shapes[s][4], shapes[s][5]};
        float scale = 1.75f;
        size_t nx = (size_t)N * IC, na = (size_t)G * rk * IC, nh = (size_t)N * G * rk;
        float *x = frand(r, nx, -1, 1), *a = frand(r, na, -1, 1), *h = xmalloc(nh * 4), *dh = xmalloc(nh * 4);
        float *hr = xmalloc((size_t)N * rk * 4), *dhr = xmalloc((size_t)N * rk * 4);
        float *dx0 = frand(r, nx, -1, 1), *dx = fcopy(dx0, nx), *dxr = fcopy(dx0, nx);
        float *da0 = frand(r, na, -1, 1), *da = fcopy(da0, na), *dar = fcopy(da0, na);
        float *b[3] = {0}, *y[3] = {0}, *yr[3] = {0}, *dy[3] = {0}, *db[3] = {0}, *dbr[3] = {0};
        for (int g = 0; g < G; g++) {
            size_t ny = (size_t)N * out[g], nb = (size_t)out[g] * rk;
            b[g] = frand(r, nb, -1, 1);
            y[g] = frand(r, ny, -1, 1);
            yr[g] = fcopy(y[g], ny);
            dy[g] = frand(r, ny, -1, 1);
            db[g] = frand(r, nb, -1, 1);
            dbr[g] = fcopy(db[g], nb);
        }
        be->lora_group_forward(be, (void *const *)y, h, x, a, (const void *const *)b, out, G, N, IC, rk, scale);
        be->lora_group_backward(be, dx, da, db, dh, (const void *const *)dy, x, h, a, (const void *const *)b, out, G,
                                N, IC, rk, scale);
        char what[120];
        for (int g = 0; g < G; g++) {   // the unfused LoRA linear g, as model/llama.c runs it
            be->linear_forward(be, hr, x, a + (size_t)g * rk * IC, NULL, N, IC, rk, 1.0f, 0);
            be->linear_forward(be, yr[g], hr, b[g], NULL, N, rk, out[g], scale, 1);
            for (int i = 0; i < N; i++)
                CHECK(!memcmp(h + (size_t)i * G * rk + (size_t)g * rk, hr + (size_t)i * rk, (size_t)rk * 4),
                      "lora_group shape %zu: h row %d block %d differs from x·A_gᵀ", s, i, g);
            snprintf(what, sizeof what, "lora_group shape %zu: y[%d]", s, g);
            check_same_bits(what, y[g], yr[g], (size_t)N * out[g]);
            be->linear_backward(be, dhr, dbr[g], NULL, dy[g], hr, b[g], N, rk, out[g], scale, 0);
            be->linear_backward(be, dxr, dar + (size_t)g * rk * IC, NULL, dhr, x, a + (size_t)g * rk * IC, N, IC, rk,
                                1.0f, 1);
            snprintf(what, sizeof what, "lora_group shape %zu: db[%d]", s, g);
            check_same_bits(what, db[g], dbr[g], (size_t)out[g] * rk);
        }
        snprintf(what, sizeof what, "lora_group shape %zu: da", s);
        check_same_bits(what, da, dar, na);
        snprintf(what, sizeof what, "lora_group shape %zu: dx", s);
        check_same_bits(what, dx, dxr, nx);
        // NULL gradients are skipped and change nothing else.
        float *dx2 = fcopy(dx0, nx), *db2 = fcopy(dbr[0], (size_t)out[0] * rk);
        float *db_null[3] = {db2, NULL, NULL};
        be->lora_group_backward(be, dx2, NULL, db_null, dh, (const void *const *)dy, x, h, a, (const void *const *)b,
                                out, G, N, IC, rk, scale);
        check_same_bits("lora_group dx with da, db NULL", dx2, dx, nx);
        be->lora_group_backward(be, NULL, NULL, NULL, dh, (const void *const *)dy, x, h, a, (const void *const *)b,
                                out, G, N, IC, rk, scale);
        for (int g = 0; g < G; g++) free(b[g]), free(y[g]), free(yr[g]), free(dy[g]), free(db[g]), free(dbr[g]);
        free(x); free(a); free(h); free(dh); free(hr); free(dhr); free(dx0); free(dx); free(dxr);
        free(da0); free(da); free(dar); free(dx2); free(db2);
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE

typedef struct {
    int N, H, hd;
    const int32_t *pos;
    const float *inv_freq;
    float scaling;
    const double *R;
    double *out;
} rope_ctx;

static double rope_loss(void *c_, double *const *in) {
    rope_ctx *c = c_;
    int half = c->hd / 2;
    double L = 0;
    for (int i = 0; i < c->N; i++)
        for (int d = 0; d < half; d++) {
            float f = (float)c->pos[i] * c->inv_freq[d];  // HF computes the angle in f32
            double cs = cos((double)f) * c->scaling, sn = sin((double)f) * c->scaling;
            for (int h = 0; h < c->H; h++) {
                size_t o = ((size_t)i * c->H + h) * c->hd;
                double a = in[0][o + d], b = in[0][o + d + half];
                double y0 = a * cs - b * sn, y1 = b * cs + a * sn;
                if (c->out) c->out[o + d] = y0, c->out[o + d + half] = y1;
                L += y0 * c->R[o + d] + y1 * c->R[o + d + half];
            }
        }
    return L;
}

static void test_rope(backend *be, rng_state *r) {
    int N = 41, H = 3, hd = 14;
    size_t n = (size_t)N * H * hd;
    float inv_freq[7];
    for (int d = 0; d < hd / 2; d++) inv_freq[d] = 1.0f / powf(10000.0f, (float)(2 * d) / hd);
    int32_t *pos = xmalloc(N * 4);
    for (int i = 0, p = 0; i < N; i++, p++) {  // positions restart per document
        if (i > 0 && rand_int(r, 6) == 0) p = 0;
        pos[i] = p * 37;                           // large angles too
    }
    for (int sc = 0; sc < 2; sc++) {
        rope_table rt = {inv_freq, hd, sc ? 1.2f : 1.0f};
        float *x = frand(r, n, -1, 1), *y = fcopy(x, n), *R = frand(r, n, -1, 1);
        double *xd = to_double(x, n), *Rd = to_double(R, n);
        rope_ctx ctx = {N, H, hd, pos, inv_freq, rt.attention_scaling, Rd, xmalloc(n * 8)};
        double *in[] = {xd};
        rope_loss(&ctx, in);
        be->rope_forward(be, y, pos, &rt, N, H);
        check_fwd(sc ? "rope forward (scaling 1.2)" : "rope forward", y, ctx.out, n);
        free(ctx.out);
        ctx.out = NULL;
        float *g = fcopy(R, n);
        be->rope_backward(be, g, pos, &rt, N, H);
        check_grad(sc ? "rope backward (scaling 1.2)" : "rope backward", rope_loss, &ctx, in, 0, n, g, 100000, r);
        free(x); free(y); free(R); free(xd); free(Rd); free(g);
    }
    free(pos);
}

// The fused RoPE of q and k (with and without the per-head norms) against rmsnorm_forward +
// rope_forward and rope_backward + rmsnorm_backward onto zeros (each checked above against
// double references): the same bits, in place and with the norm weights' gradients on and off.
static void test_rope_qk(backend *be, rng_state *r) {
    static const int shapes[][4] = {{41, 3, 1, 14}, {33, 4, 2, 128}, {1, 2, 2, 64}};   // N, Hq, Hk, hd
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], Hq = shapes[s][1], Hk = shapes[s][2], hd = shapes[s][3];
        size_t nq = (size_t)N * Hq * hd, nk = (size_t)N * Hk * hd;
        float *inv_freq = xmalloc((size_t)hd / 2 * 4);
        for (int d = 0; d < hd / 2; d++) inv_freq[d] = 1.0f / powf(10000.0f, (float)(2 * d) / hd);
        rope_table rt = {inv_freq, hd, s == 1 ? 1.2f : 1.0f};
        int32_t *pos = xmalloc((size_t)N * 4);
        for (int i = 0; i < N; i++) pos[i] = (i % 17) * 29;
        for (int norm = 0; norm < 2; norm++)
            for (int dw_on = 0; dw_on < 2; dw_on++) {
                float *qi = frand(r, nq, -2, 2), *ki = frand(r, nk, -2, 2);
                float *wq = frand(r, (size_t)hd, 0.5f, 1.5f), *wk = frand(r, (size_t)hd, 0.5f, 1.5f);
                float *gq = frand(r, nq, -1, 1), *gk = frand(r, nk, -1, 1);
                // fused: q, k written over q_in, k_in copies when not normed (in place, as the model)
                float *q = norm ? xmalloc(nq * 4) : fcopy(qi, nq), *k = norm ? xmalloc(nk * 4) : fcopy(ki, nk);
                float *rq = xmalloc((size_t)N * Hq * 4), *rk = xmalloc((size_t)N * Hk * 4);
                float *dwq = xcalloc((size_t)hd, 4), *dwk = xcalloc((size_t)hd, 4);
                be->rope_qk_forward(be, q, k, rq, rk, norm ? qi : q, norm ? ki : k, norm ? wq : NULL, norm ? wk : NULL,
                                    pos, &rt, N, Hq, Hk, 1e-6f);
                float *dq = fcopy(gq, nq), *dk = fcopy(gk, nk);
                be->rope_qk_backward(be, dq, dk, norm && dw_on ? dwq : NULL, norm && dw_on ? dwk : NULL, qi, ki,
                                     norm ? wq : NULL, norm ? wk : NULL, rq, rk, pos, &rt, N, Hq, Hk);
                // unfused, as model/llama.c runs it with no_fusion & MODEL_FUSE_ROPE_QK
                float *q_r = fcopy(qi, nq), *k_r = fcopy(ki, nk);
                float *rq_r = xmalloc((size_t)N * Hq * 4), *rk_r = xmalloc((size_t)N * Hk * 4);
                float *dwq_r = xcalloc((size_t)hd, 4), *dwk_r = xcalloc((size_t)hd, 4);
                if (norm) {
                    be->rmsnorm_forward(be, q_r, rq_r, qi, wq, N * Hq, hd, 1e-6f);
                    be->rmsnorm_forward(be, k_r, rk_r, ki, wk, N * Hk, hd, 1e-6f);
                }
                be->rope_forward(be, q_r, pos, &rt, N, Hq);
                be->rope_forward(be, k_r, pos, &rt, N, Hk);
                float *dq_r = fcopy(gq, nq), *dk_r = fcopy(gk, nk);
                be->rope_backward(be, dq_r, pos, &rt, N, Hq);
                be->rope_backward(be, dk_r, pos, &rt, N, Hk);
                if (norm) {
                    float *zq = xcalloc(nq, 4), *zk = xcalloc(nk, 4);
                    be->rmsnorm_backward(be, zq, dw_on ? dwq_r : NULL, dq_r, qi, wq, rq_r, N * Hq, hd);
                    be->rmsnorm_backward(be, zk, dw_on ? dwk_r : NULL, dk_r, ki, wk, rk_r, N * Hk, hd);
                    memcpy(dq_r, zq, nq * 4);
                    memcpy(dk_r, zk, nk * 4);
                    free(zq); free(zk);
                }
                char what[96];
#define SAME(name, a, b, n) snprintf(what, sizeof what, "rope_qk %s (N %d, hd %d, norm %d, dw %d)", name, N, hd, \
                                     norm, dw_on), check_same_bits(what, a, b, n)
                SAME("q", q, q_r, nq);
                SAME("k", k, k_r, nk);
                if (norm) {
                    SAME("rstd_q", rq, rq_r, (size_t)N * Hq);
                    SAME("rstd_k", rk, rk_r, (size_t)N * Hk);
                }
                SAME("dq", dq, dq_r, nq);
                SAME("dk", dk, dk_r, nk);
                SAME("dwq", dwq, dwq_r, (size_t)hd);
                SAME("dwk", dwk, dwk_r, (size_t)hd);
#undef SAME
                free(qi); free(ki); free(wq); free(wk); free(gq); free(gk); free(q); free(k); free(rq); free(rk);
                free(dwq); free(dwk); free(dq); free(dk); free(q_r); free(k_r); free(rq_r); free(rk_r);
                free(dwq_r); free(dwk_r); free(dq_r); free(dk_r);
            }
        free(inv_freq);
        free(pos);
    }
}

// ---------------------------------------------------------------------------------------------
// Attention

typedef struct {
    int B, Tq, Tk, H, KVH, hd, window;  // window 0 = none
    int sinks;                          // in[3] holds the sinks (H) when set
    double scale;
    const int32_t *doc;
    const double *R;
    double *out, *lse;
} att_ctx;

static double att_loss(void *c_, double *const *in) {
    att_ctx *c = c_;
    const double *q = in[0], *k = in[1], *v = in[2];
    int H = c->H, KVH = c->KVH, hd = c->hd, off = c->Tk - c->Tq;
    double *s = xmalloc((size_t)c->Tk * sizeof(double)), L = 0;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < c->Tq; i++) {
                int p = i + off, g = h / (H / KVH);
                const double *qi = q + (((size_t)b * c->Tq + i) * H + h) * hd;
                // The sink: one more logit in the softmax, with no value.
                double sink = c->sinks ? in[3][h] : -INFINITY, mx = sink;
                for (int j = 0; j <= p; j++) {
                    s[j] = -INFINITY;
                    if (j < c->doc[(size_t)b * c->Tk + p] || (c->window > 0 && p - j >= c->window)) continue;
                    const double *kj = k + (((size_t)b * c->Tk + j) * KVH + g) * hd;
                    double d = 0;
                    for (int t = 0; t < hd; t++) d += qi[t] * kj[t];
                    s[j] = d * c->scale;
                    if (s[j] > mx) mx = s[j];
                }
                double sum = c->sinks ? exp(sink - mx) : 0;
                for (int j = 0; j <= p; j++) {
                    s[j] = s[j] == -INFINITY ? 0 : exp(s[j] - mx);  // now unnormalised probabilities
                    sum += s[j];
                }
                if (c->lse) c->lse[((size_t)b * H + h) * c->Tq + i] = mx + log(sum);
                for (int t = 0; t < hd; t++) {
                    double o = 0;
                    for (int j = 0; j <= p; j++)
                        if (s[j] != 0) o += s[j] / sum * v[(((size_t)b * c->Tk + j) * KVH + g) * hd + t];
                    size_t oi = (((size_t)b * c->Tq + i) * H + h) * hd + t;
                    if (c->out) c->out[oi] = o;
                    L += o * c->R[oi];
                }
            }
    free(s);
    return L;
}

// Document starts for B rows of T positions: several documents per row, the first at 0.
static int32_t *make_docs(rng_state *r, int B, int T, int mean_len) {
    int32_t *doc = xmalloc((size_t)B * T * 4);
    for (int b = 0; b < B; b++) {
        int start = 0;
        for (int t = 0; t < T; t++) {
            if (t > 0 && rand_int(r, mean_len) == 0) start = t;
            doc[(size_t)b * T + t] = start;
        }
    }
    return doc;
}

static void test_attention_case(backend *be, rng_state *r, int B, int Tq, int Tk, int H, int KVH,
                                int hd, int mean_doc, size_t max_check, int window, int with_sinks) {
    size_t nq = (size_t)B * Tq * H * hd, nk = (size_t)B * Tk * KVH * hd, nl = (size_t)B * H * Tq;
    float scale = 1.0f / sqrtf((float)hd);
    int32_t *doc = make_docs(r, B, Tk, mean_doc);
    float *q = frand(r, nq, -2, 2), *k = frand(r, nk, -2, 2), *v = frand(r, nk, -1, 1), *R = frand(r, nq, -1, 1);
    float *sinks = with_sinks ? frand(r, (size_t)H, -1, 2) : NULL;
    float *out = xmalloc(nq * 4), *lse = xmalloc(nl * 4);
    double *qd = to_double(q, nq), *kd = to_double(k, nk), *vd = to_double(v, nk), *Rd = to_double(R, nq);
    double *sd = with_sinks ? to_double(sinks, (size_t)H) : NULL;
    att_ctx ctx = {B, Tq, Tk, H, KVH, hd, window, with_sinks, scale, doc, Rd, xmalloc(nq * 8), xmalloc(nl * 8)};
    double *in[] = {qd, kd, vd, sd};
    att_loss(&ctx, in);
    be->attention_forward(be, out, lse, q, k, v, doc, attention_rows_packed(doc, (size_t)B * Tk), B, Tq, Tk, H, KVH, hd, scale, window, sinks);
    char what[160];
    snprintf(what, sizeof what, "attention B%d Tq%d Tk%d H%d KVH%d hd%d window%d%s", B, Tq, Tk, H, KVH, hd,
             window, with_sinks ? " sinks" : "");
    char w2[220];
    snprintf(w2, sizeof w2, "%s: out", what);
    check_fwd(w2, out, ctx.out, nq);
    snprintf(w2, sizeof w2, "%s: lse", what);
    check_fwd(w2, lse, ctx.lse, nl);
    free(ctx.out);
    free(ctx.lse);
    ctx.out = ctx.lse = NULL;

    // Garbage in dq, dk, dv: the backward overwrites them; dsinks accumulates onto its start.
    float *dq = frand(r, nq, -9, 9), *dk = frand(r, nk, -9, 9), *dv = frand(r, nk, -9, 9);
    float *ds0 = frand(r, (size_t)H, -9, 9), *ds = fcopy(ds0, (size_t)H);
    be->attention_backward(be, dq, dk, dv, R, out, lse, q, k, v, doc, attention_rows_packed(doc, (size_t)B * Tk), B, Tq, Tk, H, KVH, hd, scale, window, sinks,
                           with_sinks ? ds : NULL);
    snprintf(w2, sizeof w2, "%s: dq", what);
    check_grad(w2, att_loss, &ctx, in, 0, nq, dq, max_check, r);
    snprintf(w2, sizeof w2, "%s: dk", what);
    check_grad(w2, att_loss, &ctx, in, 1, nk, dk, max_check, r);
    snprintf(w2, sizeof w2, "%s: dv", what);
    check_grad(w2, att_loss, &ctx, in, 2, nk, dv, max_check, r);
    if (with_sinks) {
        float *dsg = xmalloc((size_t)H * 4);
        for (int h = 0; h < H; h++) dsg[h] = ds[h] - ds0[h];
        snprintf(w2, sizeof w2, "%s: dsinks", what);
        check_grad(w2, att_loss, &ctx, in, 3, (size_t)H, dsg, max_check, r);
        free(dsg);
    }

    // Same bits with 1 and 3 threads.
    for (int th = 1; th <= 3; th += 2) {
        omp_set_num_threads(th);
        float *o2 = xmalloc(nq * 4), *l2 = xmalloc(nl * 4), *q2 = xmalloc(nq * 4), *k2 = xmalloc(nk * 4), *v2 = xmalloc(nk * 4);
        float *s2 = fcopy(ds0, (size_t)H);
        be->attention_forward(be, o2, l2, q, k, v, doc, attention_rows_packed(doc, (size_t)B * Tk), B, Tq, Tk, H, KVH, hd, scale, window, sinks);
        be->attention_backward(be, q2, k2, v2, R, out, lse, q, k, v, doc, attention_rows_packed(doc, (size_t)B * Tk), B, Tq, Tk, H, KVH, hd, scale, window, sinks,
                               with_sinks ? s2 : NULL);
        snprintf(w2, sizeof w2, "%s: determinism of out", what);
        check_same_bits(w2, o2, out, nq);
        snprintf(w2, sizeof w2, "%s: determinism of dq/dk/dv/dsinks", what);
        check_same_bits(w2, q2, dq, nq);
        check_same_bits(w2, k2, dk, nk);
        check_same_bits(w2, v2, dv, nk);
        check_same_bits(w2, s2, ds, (size_t)H);
        free(o2); free(l2); free(q2); free(k2); free(v2); free(s2);
    }
    omp_set_num_threads(2);
    free(doc); free(q); free(k); free(v); free(R); free(out); free(lse); free(qd); free(kd); free(vd); free(Rd);
    free(dq); free(dk); free(dv); free(sinks); free(sd); free(ds0); free(ds);
}

static void test_attention(backend *be, rng_state *r) {
    test_attention_case(be, r, 2, 13, 13, 4, 4, 12, 5, 100000, 0, 0);   // MHA, several docs per row
    test_attention_case(be, r, 2, 11, 11, 4, 2, 8, 4, 100000, 0, 0);    // GQA 2
    test_attention_case(be, r, 1, 17, 17, 8, 2, 6, 6, 100000, 0, 0);    // GQA 4, odd-ish hd
    test_attention_case(be, r, 2, 5, 13, 4, 2, 8, 5, 100000, 0, 0);     // Tq < Tk (KV-cache offset)
    test_attention_case(be, r, 1, 1, 9, 2, 1, 8, 100, 100000, 0, 0);    // one query row
    test_attention_case(be, r, 1, 150, 150, 2, 1, 16, 60, 60, 0, 0);   // several tiles of queries and keys
    test_attention_case(be, r, 2, 70, 130, 4, 2, 8, 25, 40, 0, 0);     // tiles, Tq < Tk, many documents
    // gpt-oss: sinks and sliding windows shorter than the sequence, with documents and GQA.
    test_attention_case(be, r, 2, 13, 13, 4, 2, 8, 100, 100000, 0, 1);  // sinks only, one document
    test_attention_case(be, r, 2, 17, 17, 4, 2, 8, 100, 100000, 5, 0);  // window only
    test_attention_case(be, r, 2, 19, 19, 4, 2, 8, 8, 100000, 4, 1);    // both, packed documents
    test_attention_case(be, r, 2, 6, 15, 4, 1, 8, 7, 100000, 3, 1);     // Tq < Tk, window 3
    test_attention_case(be, r, 1, 1, 9, 2, 1, 8, 100, 100000, 1, 1);    // window 1: only itself
    test_attention_case(be, r, 1, 150, 150, 2, 1, 16, 90, 60, 37, 1);  // tiles skipped by the window
    test_attention_case(be, r, 2, 70, 130, 4, 2, 8, 40, 40, 50, 1);    // tiles, Tq < Tk, window
}

// ---------------------------------------------------------------------------------------------
// SwiGLU, add, dropout

typedef struct {
    size_t n;
    const double *R;
    double *out;
} sw_ctx;

static double sw_loss(void *c_, double *const *in) {
    sw_ctx *c = c_;
    double L = 0;
    for (size_t i = 0; i < c->n; i++) {
        double g = in[0][i], o = g / (1 + exp(-g)) * in[1][i];
        if (c->out) c->out[i] = o;
        L += o * c->R[i];
    }
    return L;
}

static void test_swiglu(backend *be, rng_state *r) {
    size_t n = 1003;
    float *g = frand(r, n, -6, 6), *u = frand(r, n, -2, 2), *R = frand(r, n, -1, 1), *out = xmalloc(n * 4);
    double *gd = to_double(g, n), *ud = to_double(u, n), *Rd = to_double(R, n);
    sw_ctx ctx = {n, Rd, xmalloc(n * 8)};
    double *in[] = {gd, ud};
    sw_loss(&ctx, in);
    be->swiglu_forward(be, out, g, u, n);
    check_fwd("swiglu forward", out, ctx.out, n);
    free(ctx.out);
    ctx.out = NULL;
    float *dg = frand(r, n, -9, 9), *du = frand(r, n, -9, 9);  // overwritten
    be->swiglu_backward(be, dg, du, R, g, u, n);
    check_grad("swiglu dgate", sw_loss, &ctx, in, 0, n, dg, 100000, r);
    check_grad("swiglu dup", sw_loss, &ctx, in, 1, n, du, 100000, r);
    free(g); free(u); free(R); free(out); free(gd); free(ud); free(Rd); free(dg); free(du);
}

// gpt-oss's clamped SwiGLU in double: (clamp(u, −L, L) + 1) · g σ(α g), g = min(gate, L).
#define SWC_ALPHA 1.702
#define SWC_LIMIT 1.5
static double swc_loss(void *c_, double *const *in) {
    sw_ctx *c = c_;
    double L = 0;
    for (size_t i = 0; i < c->n; i++) {
        double g = fmin(in[0][i], SWC_LIMIT), u = fmin(fmax(in[1][i], -SWC_LIMIT), SWC_LIMIT);
        double o = (u + 1) * g / (1 + exp(-SWC_ALPHA * g));
        if (c->out) c->out[i] = o;
        L += o * c->R[i];
    }
    return L;
}

// Inputs on both sides of the clamps (but not within the difference step of them: the
// derivative jumps there).
static void test_swiglu_clamped(backend *be, rng_state *r) {
    size_t n = 1003;
    float *g = frand(r, n, -4, 4), *u = frand(r, n, -3, 3), *R = frand(r, n, -1, 1), *out = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) {
        if (fabsf(g[i] - (float)SWC_LIMIT) < 1e-3f) g[i] += 0.01f;
        if (fabsf(fabsf(u[i]) - (float)SWC_LIMIT) < 1e-3f) u[i] *= 1.01f;
    }
    double *gd = to_double(g, n), *ud = to_double(u, n), *Rd = to_double(R, n);
    sw_ctx ctx = {n, Rd, xmalloc(n * 8)};
    double *in[] = {gd, ud};
    swc_loss(&ctx, in);
    be->swiglu_clamped_forward(be, out, g, u, n, (float)SWC_ALPHA, (float)SWC_LIMIT);
    check_fwd("swiglu_clamped forward", out, ctx.out, n);
    free(ctx.out);
    ctx.out = NULL;
    float *dg = frand(r, n, -9, 9), *du = frand(r, n, -9, 9);  // overwritten
    be->swiglu_clamped_backward(be, dg, du, R, g, u, n, (float)SWC_ALPHA, (float)SWC_LIMIT);
    check_grad("swiglu_clamped dgate", swc_loss, &ctx, in, 0, n, dg, 100000, r);
    check_grad("swiglu_clamped dup", swc_loss, &ctx, in, 1, n, du, 100000, r);
    int cut = 0;
    for (size_t i = 0; i < n; i++) cut += g[i] > SWC_LIMIT && dg[i] == 0.0f;
    CHECK(cut > 100, "swiglu_clamped: only %d gates above the limit got a zero gradient", cut);
    free(g); free(u); free(R); free(out); free(gd); free(ud); free(Rd); free(dg); free(du);
}

static void test_add(backend *be, rng_state *r) {
    size_t n = 100003;
    float *a = frand(r, n, -1, 1), *b = frand(r, n, -1, 1), *out = xmalloc(n * 4);
    be->add(be, out, a, b, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += out[i] != a[i] + b[i];
    CHECK(bad == 0, "add: %zu elements wrong", bad);
    be->add(be, a, a, b, n);  // aliased
    CHECK(!memcmp(a, out, n * 4), "add with out == a differs");
    free(a); free(b); free(out);
}

static void test_dropout(backend *be, rng_state *r) {
    size_t n = 50001;
    float p = 0.3f, s = 1.0f / (1.0f - p);
    uint64_t seed = 0x1234abcdull;
    float *x = frand(r, n, -1, 1), *y = xmalloc(n * 4), *R = frand(r, n, -1, 1);
    float *d0 = frand(r, n, -1, 1), *d = fcopy(d0, n);
    be->dropout_forward(be, y, x, n, p, seed);
    be->dropout_backward(be, d, R, n, p, seed);
    size_t kept = 0, bad = 0, badg = 0;
    for (size_t i = 0; i < n; i++) {
        int keep = rng_keep(seed, i, p);
        kept += keep;
        bad += y[i] != (keep ? x[i] * s : 0.0f);
        badg += d[i] != d0[i] + (keep ? R[i] * s : 0.0f);
    }
    CHECK(bad == 0, "dropout forward: %zu elements differ from rng_keep's mask", bad);
    CHECK(badg == 0, "dropout backward: %zu elements differ (accumulate into dinp)", badg);
    double frac = (double)kept / n;
    CHECK(fabs(frac - (1 - p)) < 0.01, "dropout keeps %.4f of elements, want %.2f", frac, 1 - p);
    be->dropout_forward(be, y, x, n, 0.0f, seed);
    CHECK(!memcmp(y, x, n * 4), "dropout with p = 0 must copy");
    free(x); free(y); free(R); free(d0); free(d);
}

// ---------------------------------------------------------------------------------------------
// lm_head + cross-entropy

typedef struct {
    int N, C, V;
    const int32_t *targets;
    double grad_scale;
    double *losses;
} lm_ctx;

// L = grad_scale · Σ trained losses: its gradient is what the op returns in dh and dw.
static double lm_loss(void *c_, double *const *in) {
    lm_ctx *c = c_;
    const double *h = in[0], *w = in[1];
    double *logit = xmalloc((size_t)c->V * 8), L = 0;
    for (int i = 0; i < c->N; i++) {
        int t = c->targets[i];
        if (c->losses) c->losses[i] = 0;
        if (t < 0) continue;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < c->V; j++) {
            double s = 0;
            for (int k = 0; k < c->C; k++) s += h[(size_t)i * c->C + k] * w[(size_t)j * c->C + k];
            logit[j] = s;
            if (s > mx) mx = s;
        }
        for (int j = 0; j < c->V; j++) sum += exp(logit[j] - mx);
        double loss = mx + log(sum) - logit[t];
        if (c->losses) c->losses[i] = loss;
        L += c->grad_scale * loss;
    }
    free(logit);
    return L;
}

static void test_lm_head_case(backend *be, rng_state *r, int N, int C, int V, size_t max_check) {
    size_t nh = (size_t)N * C, nw = (size_t)V * C;
    int32_t *targets = xmalloc(N * 4);
    int trained = 0;
    for (int i = 0; i < N; i++) {
        targets[i] = rand_int(r, 4) == 0 ? -1 : rand_int(r, V);
        trained += targets[i] >= 0;
    }
    float grad_scale = 1.0f / (float)(trained + 3);  // as if more tokens sat in other micro-batches
    float *h = frand(r, nh, -1, 1), *w = frand(r, nw, -1, 1), *losses = frand(r, N, -5, 5);
    double *hd = to_double(h, nh), *wd = to_double(w, nw);
    lm_ctx ctx = {N, C, V, targets, grad_scale, xmalloc((size_t)N * 8)};
    double *in[] = {hd, wd};
    lm_loss(&ctx, in);
    float *dh = frand(r, nh, -9, 9), *dw0 = frand(r, nw, -1, 1), *dw = fcopy(dw0, nw);
    be->lm_head_loss(be, losses, dh, dw, h, w, targets, N, C, V, grad_scale);
    char what[128], w2[180];
    snprintf(what, sizeof what, "lm_head_loss N%d C%d V%d", N, C, V);
    snprintf(w2, sizeof w2, "%s: losses", what);
    check_fwd(w2, losses, ctx.losses, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (targets[i] < 0) {
            bad += losses[i] != 0.0f;
            for (int k = 0; k < C; k++) bad += dh[(size_t)i * C + k] != 0.0f;
        }
    CHECK(bad == 0, "%s: %d nonzero losses or dh entries on masked targets", what, bad);
    free(ctx.losses);
    ctx.losses = NULL;
    // dw checked from zero (most of its entries are tiny: softmax of a wide vocabulary), and
    // that starting from dw0 adds to it.
    float *gw = calloc(nw, 4), *scratch = xmalloc(N * 4);
    be->lm_head_loss(be, scratch, NULL, NULL, h, w, targets, N, C, V, grad_scale);
    float *dh_tmp = xmalloc(nh * 4);
    be->lm_head_loss(be, scratch, dh_tmp, gw, h, w, targets, N, C, V, grad_scale);
    double *sum = to_double(dw0, nw);
    for (size_t i = 0; i < nw; i++) sum[i] += gw[i];
    snprintf(w2, sizeof w2, "%s: dw accumulates", what);
    check_fwd(w2, dw, sum, nw);
    free(sum); free(scratch); free(dh_tmp);
    snprintf(w2, sizeof w2, "%s: dh", what);
    check_grad(w2, lm_loss, &ctx, in, 0, nh, dh, max_check, r);
    snprintf(w2, sizeof w2, "%s: dw", what);
    check_grad(w2, lm_loss, &ctx, in, 1, nw, gw, max_check, r);

    // Loss only, and dw NULL: same losses and dh; 1 vs 3 threads: same bits.
    float *l2 = xmalloc(N * 4), *dh2 = xmalloc(nh * 4), *dw2 = fcopy(dw0, nw);
    be->lm_head_loss(be, l2, NULL, NULL, h, w, targets, N, C, V, grad_scale);
    check_same_bits("lm_head_loss losses without gradients", l2, losses, N);
    be->lm_head_loss(be, l2, dh2, NULL, h, w, targets, N, C, V, grad_scale);
    check_same_bits("lm_head_loss dh with dw NULL", dh2, dh, nh);
    for (int th = 1; th <= 3; th += 2) {
        omp_set_num_threads(th);
        memcpy(dw2, dw0, nw * 4);
        be->lm_head_loss(be, l2, dh2, dw2, h, w, targets, N, C, V, grad_scale);
        check_same_bits("lm_head_loss determinism (losses)", l2, losses, N);
        check_same_bits("lm_head_loss determinism (dh)", dh2, dh, nh);
        check_same_bits("lm_head_loss determinism (dw)", dw2, dw, nw);
    }
    omp_set_num_threads(2);
    free(targets); free(h); free(w); free(losses); free(hd); free(wd); free(dh); free(dw0); free(dw); free(gw);
    free(l2); free(dh2); free(dw2);
}

static void test_lm_head(backend *be, rng_state *r) {
    test_lm_head_case(be, r, 23, 13, 37, 100000);
    test_lm_head_case(be, r, 300, 16, 50, 120);   // two chunks of rows
    test_lm_head_case(be, r, 9, 11, 3001, 60);    // wide vocabulary
    // Numerically stable: huge logits give a finite loss.
    int N = 2, C = 4, V = 5;
    float h[8] = {100, 0, 0, 0, -100, 50, 0, 0}, w[20], losses[2], dh[8];
    for (int i = 0; i < 20; i++) w[i] = (float)(i % 7) - 3.0f;
    int32_t t[2] = {1, 4};
    be->lm_head_loss(be, losses, dh, NULL, h, w, t, N, C, V, 1.0f);
    CHECK(isfinite(losses[0]) && isfinite(losses[1]) && losses[0] >= 0 && losses[1] >= 0,
          "lm_head_loss with logits ±300: losses %g %g", losses[0], losses[1]);
}

// ---------------------------------------------------------------------------------------------
// AdamW, reductions, casts

static void test_adamw(backend *be, rng_state *r) {
    size_t n = 70001;
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    float *p = frand(r, n, -1, 1), *m = calloc(n, 4), *v = calloc(n, 4), *pact = xmalloc(n * 4);
    double *pd = to_double(p, n), *md = calloc(n, 8), *vd = calloc(n, 8);
    for (int step = 1; step <= 5; step++) {
        float *g = frand(r, n, -1, 1);
        if (step == 3) g[5] = 0;
        be->adamw_update(be, p, pact, g, m, v, n, lr, b1, b2, eps, wd, step, gs);
        double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
        for (size_t i = 0; i < n; i++) {
            double gi = (double)g[i] * gs;
            md[i] = b1 * md[i] + (1 - (double)b1) * gi;
            vd[i] = b2 * vd[i] + (1 - (double)b2) * gi * gi;
            pd[i] -= lr * ((md[i] / bc1) / (sqrt(vd[i] / bc2) + eps) + wd * pd[i]);
        }
        free(g);
    }
    CHECK(rel_err_d(p, pd, n) < 1e-6, "adamw params after 5 steps: relative error %.3g", rel_err_d(p, pd, n));
    CHECK(rel_err_d(m, md, n) < 1e-6, "adamw m: relative error %.3g", rel_err_d(m, md, n));
    CHECK(rel_err_d(v, vd, n) < 1e-6, "adamw v: relative error %.3g", rel_err_d(v, vd, n));
    CHECK(!memcmp(p, pact, n * 4), "adamw: param_act is not a copy of param");
    // No weight decay and lr 0: nothing moves.
    float *p2 = fcopy(p, n);
    be->adamw_update(be, p2, NULL, p, m, v, n, 0.0f, b1, b2, eps, 0.0f, 6, 1.0f);
    CHECK(!memcmp(p2, p, n * 4), "adamw with lr 0 changed params");
    free(p); free(m); free(v); free(pact); free(pd); free(md); free(vd); free(p2);
}

static void test_reduce(backend *be, rng_state *r) {
    size_t n = 100001;
    float *x = frand(r, n, -1, 1);
    double want = 0.25;
    for (size_t i = 0; i < n; i++) want += (double)x[i] * x[i];
    float ref = 0;
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        float out = 0.25f;  // accumulates
        be->sum_squares(be, &out, x, n);
        CHECK(fabs(out - want) / want < 1e-6, "sum_squares %.9g, want %.9g", out, want);
        if (th == 1) ref = out;
        else CHECK(!memcmp(&out, &ref, 4), "sum_squares differs between 1 and %d threads", th);
    }
    omp_set_num_threads(2);
    float small = 0;
    be->sum_squares(be, &small, x, 3);
    CHECK(fabs(small - (x[0] * x[0] + x[1] * x[1] + x[2] * x[2])) < 1e-6, "sum_squares of 3 elements");

    float *y = fcopy(x, n);
    be->scale_f32(be, y, 0.3f, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += y[i] != x[i] * 0.3f;
    CHECK(bad == 0, "scale_f32: %zu elements wrong", bad);
    float *z = fcopy(x, n);
    be->add_f32(be, z, y, n);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += z[i] != x[i] + y[i];
    CHECK(bad == 0, "add_f32: %zu elements wrong", bad);
    free(z);

    CHECK(!be->has_nonfinite(be, x, n), "has_nonfinite on finite data");
    size_t spots[] = {0, 777, n - 1};
    float bads[] = {NAN, INFINITY, -INFINITY};
    for (int s = 0; s < 3; s++)
        for (int b = 0; b < 3; b++) {
            float keep = x[spots[s]];
            x[spots[s]] = bads[b];
            CHECK(be->has_nonfinite(be, x, n), "has_nonfinite misses %g at %zu", bads[b], spots[s]);
            x[spots[s]] = keep;
        }
    CHECK(!be->has_nonfinite(be, x, 0), "has_nonfinite on no elements");
    free(x); free(y);
}

// ---------------------------------------------------------------------------------------------
// Mixture of experts: router softmax/top-k, load-balancing statistics, permute, unpermute

// Top-k in double by the contract's rule: descending, ties to the lower index.
static void topk_ref(const double *p, int E, int k, int32_t *ix) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= ix[t] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        ix[j] = best;
    }
}

typedef struct {
    int N, E, k, renorm;
    const int32_t *idx;              // the choices held fixed (the forward's), for the loss
    const int32_t *mask;             // rows of the dprob term (NULL: all)
    const double *dw, *dprob;        // L = Σ dw·weights + Σ_{mask} dprob·probs
    double *probs, *weights;         // filled when not NULL
} router_ctx;

static double router_loss(void *c_, double *const *in) {
    router_ctx *c = c_;
    double L = 0, *p = xmalloc((size_t)c->E * sizeof(double));
    for (int n = 0; n < c->N; n++) {
        const double *l = in[0] + (size_t)n * c->E;
        double mx = l[0], s = 0, ws = 0;
        for (int e = 1; e < c->E; e++) mx = l[e] > mx ? l[e] : mx;
        for (int e = 0; e < c->E; e++) s += p[e] = exp(l[e] - mx);
        for (int e = 0; e < c->E; e++) {
            p[e] /= s;
            if (c->probs) c->probs[(size_t)n * c->E + e] = p[e];
            if (c->dprob && (!c->mask || c->mask[n])) L += c->dprob[e] * p[e];
        }
        const int32_t *ix = c->idx + (size_t)n * c->k;
        for (int j = 0; j < c->k; j++) ws += p[ix[j]];
        for (int j = 0; j < c->k; j++) {
            double w = c->renorm ? p[ix[j]] / ws : p[ix[j]];
            if (c->weights) c->weights[(size_t)n * c->k + j] = w;
            L += c->dw[(size_t)n * c->k + j] * w;
        }
    }
    free(p);
    return L;
}

static void test_moe_router(backend *be, rng_state *r) {
    int N = 37, E = 9, k = 3;
    size_t nl = (size_t)N * E, nk = (size_t)N * k;
    for (int renorm = 0; renorm <= 1; renorm++) {
        float *logits = frand(r, nl, -3, 3);
        // Ties: row 0 all equal (choices 0, 1, 2); row 1 with its maximum at 5 and 2 (2 first).
        for (int e = 0; e < E; e++) logits[e] = 0.5f;
        for (int e = 0; e < E; e++) logits[E + e] = -1.0f + 0.1f * (float)e;
        logits[E + 2] = logits[E + 5] = 4.0f;
        float *probs = frand(r, nl, -1, 1), *w = frand(r, nk, -1, 1);
        int32_t *idx = xmalloc(nk * sizeof(int32_t)), *idx_ref = xmalloc(nk * sizeof(int32_t));
        be->moe_router_forward(be, idx, w, probs, logits, N, E, k, renorm);
        double *ld = to_double(logits, nl), *pd = xmalloc(nl * 8), *wd = xmalloc(nk * 8);
        // The reference choices from double probabilities of the same logits.
        router_ctx ctx = {N, E, k, renorm, idx, NULL, NULL, NULL, pd, NULL};
        double *zero = calloc(nk, sizeof(double));
        ctx.dw = zero;
        double *in[] = {ld};
        router_loss(&ctx, in);
        for (int n = 0; n < N; n++) topk_ref(pd + (size_t)n * E, E, k, idx_ref + (size_t)n * k);
        CHECK(!memcmp(idx, idx_ref, nk * sizeof(int32_t)), "moe router renorm %d: top-k choices differ from the reference", renorm);
        CHECK(idx[0] == 0 && idx[1] == 1 && idx[2] == 2, "moe router: equal logits must choose 0 1 2, got %d %d %d", idx[0], idx[1], idx[2]);
        CHECK(idx[k] == 2 && idx[k + 1] == 5, "moe router: tied maximum at 2 and 5 must choose 2 then 5, got %d %d", idx[k], idx[k + 1]);
        ctx.weights = wd;
        router_loss(&ctx, in);
        char what[96];
        snprintf(what, sizeof what, "moe router forward probs (renorm %d)", renorm);
        check_fwd(what, probs, pd, nl);
        snprintf(what, sizeof what, "moe router forward weights (renorm %d)", renorm);
        check_fwd(what, w, wd, nk);

        // Backward, with and without the load-balancing gradient; dlogits is overwritten.
        float *dw = frand(r, nk, -1, 1), *dprob = frand(r, E, -1, 1);
        double *dwd = to_double(dw, nk), *dpd = to_double(dprob, E);
        ctx.probs = ctx.weights = NULL;
        ctx.dw = dwd;
        int32_t *mask = xmalloc((size_t)N * sizeof(int32_t));
        for (int n = 0; n < N; n++) mask[n] = rand_int(r, 4) != 0;
        for (int with_prob = 0; with_prob <= 2; with_prob++) {  // none, every row, masked rows
            ctx.dprob = with_prob ? dpd : NULL;
            ctx.mask = with_prob == 2 ? mask : NULL;
            float *dl = frand(r, nl, -9, 9);
            be->moe_router_backward(be, dl, dw, with_prob ? dprob : NULL, ctx.mask, probs, idx, w, N, E, k, renorm);
            snprintf(what, sizeof what, "moe router backward (renorm %d, dprob %s)", renorm,
                     with_prob == 0 ? "NULL" : with_prob == 1 ? "all rows" : "masked");
            check_grad(what, router_loss, &ctx, in, 0, nl, dl, 100000, r);
            free(dl);
        }
        free(logits); free(probs); free(w); free(idx); free(idx_ref); free(ld); free(pd); free(wd);
        free(zero); free(dw); free(dprob); free(dwd); free(dpd); free(mask);
    }
}

static void test_moe_router_stats(backend *be, rng_state *r) {
    int N = 41, E = 7, k = 2;
    float *probs = frand(r, (size_t)N * E, 0, 1);
    int32_t *idx = xmalloc((size_t)N * k * sizeof(int32_t)), *mask = xmalloc((size_t)N * sizeof(int32_t));
    for (int i = 0; i < N * k; i++) idx[i] = rand_int(r, E);
    for (int n = 0; n < N; n++) mask[n] = rand_int(r, 3) != 0;
    for (int use_mask = 0; use_mask <= 1; use_mask++) {
        float *ps = frand(r, E, 0, 1), *cnt = xmalloc(E * sizeof(float));
        double *want_ps = xmalloc(E * 8), want_cnt[64];
        for (int e = 0; e < E; e++) {
            cnt[e] = (float)e;  // both accumulate
            want_ps[e] = ps[e];
            want_cnt[e] = e;
        }
        for (int n = 0; n < N; n++) {
            if (use_mask && !mask[n]) continue;
            for (int e = 0; e < E; e++) want_ps[e] += probs[(size_t)n * E + e];
            for (int j = 0; j < k; j++) want_cnt[idx[(size_t)n * k + j]] += 1;
        }
        be->moe_router_stats(be, ps, cnt, probs, idx, use_mask ? mask : NULL, N, E, k);
        check_fwd("moe router stats prob_sum", ps, want_ps, E);
        int bad = 0;
        for (int e = 0; e < E; e++) bad += cnt[e] != (float)want_cnt[e];
        CHECK(bad == 0, "moe router stats (mask %d): %d expert counts wrong", use_mask, bad);
        free(ps); free(cnt); free(want_ps);
    }
    free(probs); free(idx); free(mask);
}

// A random dispatch: src a random permutation of the M = N·k assignments, pos its inverse.
static void moe_random_perm(rng_state *r, int M, int32_t *src, int32_t *pos) {
    for (int i = 0; i < M; i++) src[i] = i;
    for (int i = M - 1; i > 0; i--) {
        int j = rand_int(r, i + 1);
        int32_t t = src[i];
        src[i] = src[j];
        src[j] = t;
    }
    for (int i = 0; i < M; i++) pos[src[i]] = i;
}

typedef struct {
    int N, k, C;
    const int32_t *src, *pos;
    const double *R;
    double *out;
} perm_ctx;

// L = Σ permute(x) ⊙ R.
static double perm_loss(void *c_, double *const *in) {
    perm_ctx *c = c_;
    double L = 0;
    for (int i = 0; i < c->N * c->k; i++)
        for (int ch = 0; ch < c->C; ch++) L += in[0][(size_t)(c->src[i] / c->k) * c->C + ch] * c->R[(size_t)i * c->C + ch];
    return L;
}

// L = Σ unpermute(eo, weights) ⊙ R.
static double unperm_loss(void *c_, double *const *in) {
    perm_ctx *c = c_;
    double L = 0;
    for (int n = 0; n < c->N; n++)
        for (int ch = 0; ch < c->C; ch++) {
            double y = 0;
            for (int j = 0; j < c->k; j++) {
                size_t a = (size_t)n * c->k + j;
                y += in[1][a] * in[0][(size_t)c->pos[a] * c->C + ch];
            }
            if (c->out) c->out[(size_t)n * c->C + ch] = y;
            L += y * c->R[(size_t)n * c->C + ch];
        }
    return L;
}

static void test_moe_permute(backend *be, rng_state *r) {
    int N = 29, k = 3, C = 19, M = N * k;
    size_t nx = (size_t)N * C, nm = (size_t)M * C;
    int32_t *src = xmalloc(M * sizeof(int32_t)), *pos = xmalloc(M * sizeof(int32_t));
    moe_random_perm(r, M, src, pos);
    float *x = frand(r, nx, -1, 1), *out = frand(r, nm, -1, 1);
    be->moe_permute(be, out, x, src, M, k, C);
    int bad = 0;
    for (int i = 0; i < M; i++) bad += memcmp(out + (size_t)i * C, x + (size_t)(src[i] / k) * C, C * 4) != 0;
    CHECK(bad == 0, "moe permute: %d rows differ from their source", bad);
    float *R = frand(r, nm, -1, 1);
    double *Rd = to_double(R, nm), *xd = to_double(x, nx);
    perm_ctx ctx = {N, k, C, src, pos, Rd, NULL};
    double *in[] = {xd};
    for (int accumulate = 0; accumulate <= 1; accumulate++) {
        float *dx0 = frand(r, nx, -1, 1), *dx = fcopy(dx0, nx);
        be->moe_permute_backward(be, dx, R, pos, N, k, C, accumulate);
        float *g = accumulate ? added(dx, dx0, nx) : fcopy(dx, nx);
        check_grad(accumulate ? "moe permute backward (accumulate)" : "moe permute backward", perm_loss, &ctx, in, 0, nx, g, 100000, r);
        free(dx0); free(dx); free(g);
    }
    free(R); free(Rd); free(xd);

    // Unpermute and its backward (deo and dweights overwritten).
    float *eo = frand(r, nm, -1, 1), *w = frand(r, M, 0, 1), *y = frand(r, nx, -1, 1);
    float *Ry = frand(r, nx, -1, 1);
    double *eod = to_double(eo, nm), *wd = to_double(w, M), *Ryd = to_double(Ry, nx);
    perm_ctx uc = {N, k, C, src, pos, Ryd, xmalloc(nx * 8)};
    double *uin[] = {eod, wd};
    unperm_loss(&uc, uin);
    be->moe_unpermute(be, y, eo, w, pos, N, k, C);
    check_fwd("moe unpermute", y, uc.out, nx);
    free(uc.out);
    uc.out = NULL;
    float *deo = frand(r, nm, -9, 9), *dw = frand(r, M, -9, 9);
    be->moe_unpermute_backward(be, deo, dw, Ry, eo, w, pos, N, k, C);
    check_grad("moe unpermute backward deo", unperm_loss, &uc, uin, 0, nm, deo, 100000, r);
    check_grad("moe unpermute backward dweights", unperm_loss, &uc, uin, 1, M, dw, 100000, r);
    free(src); free(pos); free(x); free(out); free(eo); free(w); free(y); free(Ry); free(eod); free(wd); free(Ryd);
    free(deo); free(dw);
}

// Same bits for 1, 2 and 3 threads, at sizes where every MoE op runs in parallel.
static void test_moe_determinism(backend *be, rng_state *r) {
    int N = 3001, E = 16, k = 4, C = 67, M = N * k;
    size_t nl = (size_t)N * E, nk = (size_t)M, nx = (size_t)N * C, nm = (size_t)M * C;
    float *logits = frand(r, nl, -4, 4), *dwin = frand(r, nk, -1, 1), *dprob = frand(r, E, -1, 1);
    float *x = frand(r, nx, -1, 1), *eo = frand(r, nm, -1, 1), *dy = frand(r, nx, -1, 1), *dout = frand(r, nm, -1, 1);
    int32_t *src = xmalloc(M * sizeof(int32_t)), *pos = xmalloc(M * sizeof(int32_t));
    moe_random_perm(r, M, src, pos);
    enum { NOUT = 9 };
    float *ref[NOUT] = {0};
    size_t len[NOUT] = {nl, nk, nl, E, E, nm, nx, nx, nm};
    const char *names[NOUT] = {"router probs", "router weights", "router dlogits", "stats prob_sum", "stats count",
                               "permute", "permute backward", "unpermute", "unpermute backward deo"};
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        float *o[NOUT];
        for (int i = 0; i < NOUT; i++) o[i] = calloc(len[i], sizeof(float));
        int32_t *idx = xmalloc(nk * sizeof(int32_t));
        be->moe_router_forward(be, idx, o[1], o[0], logits, N, E, k, 1);
        be->moe_router_backward(be, o[2], dwin, dprob, NULL, o[0], idx, o[1], N, E, k, 1);
        be->moe_router_stats(be, o[3], o[4], o[0], idx, NULL, N, E, k);
        be->moe_permute(be, o[5], x, src, M, k, C);
        be->moe_permute_backward(be, o[6], dout, pos, N, k, C, 0);
        be->moe_unpermute(be, o[7], eo, o[1], pos, N, k, C);
        float *dwts = xmalloc(nk * sizeof(float));
        be->moe_unpermute_backward(be, o[8], dwts, dy, eo, o[1], pos, N, k, C);
        free(idx);
        free(dwts);
        for (int i = 0; i < NOUT; i++) {
            if (th == 1) {
                ref[i] = o[i];
            } else {
                check_same_bits(names[i], o[i], ref[i], len[i]);
                free(o[i]);
            }
        }
    }
    omp_set_num_threads(2);
    for (int i = 0; i < NOUT; i++) free(ref[i]);
    free(logits); free(dwin); free(dprob); free(x); free(eo); free(dy); free(dout); free(src); free(pos);
}

// The vectorized exp of the softmax loops: ≤ 2 ulp over its range, 0 below −87, NaN kept.
static void test_exp(void) {
    double worst = 0;
    float at = 0;
    for (float x = -87.0f; x < 88.0f; x += 1e-3f + fabsf(x) * 1e-4f) {
        float xs[5] = {x, -x * 0.5f, x * 1e-3f, x * 1e-6f, nextafterf(x, 0)}, ys[5];
        cpu_exp_array(ys, xs, 5);  // four vector lanes and one scalar tail
        for (int i = 0; i < 5; i++) {
            double want = exp((double)xs[i]), e = fabs(ys[i] - want) / want;
            if (e > worst) worst = e, at = xs[i];
        }
    }
    CHECK(worst < 1.2e-7, "cpu_expf: relative error %.3g at %g", worst, at);
    float odd[6] = {-INFINITY, -87.5f, -1000.0f, NAN, 0.0f, -0.0f}, y[6];
    cpu_exp_array(y, odd, 6);
    CHECK(y[0] == 0 && y[1] == 0 && y[2] == 0 && isnan(y[3]) && y[4] == 1 && y[5] == 1,
          "cpu_expf special values: %g %g %g %g %g %g", y[0], y[1], y[2], y[3], y[4], y[5]);
}

static void test_cast(backend *be, rng_state *r) {
    size_t n = 1001;
    float *x = frand(r, n, -1, 1), *y = xmalloc(n * 4), *z = xmalloc(n * 4);
    be->cast_f32_to_act(be, y, x, n);
    be->cast_act_to_f32(be, z, y, n);
    CHECK(!memcmp(x, z, n * 4), "f32 -> act -> f32 on the CPU is not the identity");
    be->cast_f32_to_act(be, x, x, n);  // aliased: a no-op
    CHECK(!memcmp(x, z, n * 4), "aliased cast changed data");
    free(x); free(y); free(z);
}

// Each part prints its time, so a slow op or a slow reference shows up in the log.
#define TIMED(call)                                                                     \
    do {                                                                                \
        double t0_ = omp_get_wtime();                                                   \
        call;                                                                           \
        printf("%-28s %6.2f s\n", #call, omp_get_wtime() - t0_);                      \
    } while (0)

int main(void) {
    backend *be = backend_cpu(2);
    if (!be) {
        fprintf(stderr, "backend_cpu failed\n");
        return 1;
    }
    // Every op pointer of the table is set.
    CHECK(be->embedding_forward && be->embedding_backward && be->rmsnorm_forward && be->rmsnorm_backward && be->add_rmsnorm_forward &&
              be->linear_forward && be->linear_backward && be->lora_group_forward && be->lora_group_backward &&
              be->rope_forward && be->rope_backward && be->rope_qk_forward && be->rope_qk_backward &&
              be->attention_forward && be->attention_backward && be->swiglu_forward && be->swiglu_backward &&
              be->add && be->dropout_forward && be->dropout_backward && be->lm_head_loss && be->adamw_update &&
              be->sum_squares && be->scale_f32 && be->add_f32 && be->has_nonfinite && be->cast_f32_to_act && be->cast_act_to_f32 &&
              be->moe_router_forward && be->moe_router_backward && be->moe_router_stats && be->moe_permute &&
              be->moe_permute_backward && be->moe_unpermute && be->moe_unpermute_backward,
          "the CPU backend leaves an op unset");
    rng_state r = {20261126, 0};
    TIMED(test_exp());
    TIMED(test_cast(be, &r));
    TIMED(test_embedding(be, &r));
    TIMED(test_rmsnorm(be, &r));
    TIMED(test_add_rmsnorm(be, &r));
    TIMED(test_gemm(&r));
    TIMED(test_linear(be, &r));
    TIMED(test_lora_group(be, &r));
    TIMED(test_rope(be, &r));
    TIMED(test_rope_qk(be, &r));
    TIMED(test_attention(be, &r));
    TIMED(test_swiglu(be, &r));
    TIMED(test_swiglu_clamped(be, &r));
    TIMED(test_add(be, &r));
    TIMED(test_dropout(be, &r));
    TIMED(test_lm_head(be, &r));
    TIMED(test_adamw(be, &r));
    TIMED(test_reduce(be, &r));
    TIMED(test_moe_router(be, &r));
    TIMED(test_moe_router_stats(be, &r));
    TIMED(test_moe_permute(be, &r));
    TIMED(test_moe_determinism(be, &r));
    be->destroy(be);
    return test_finish("test_ops_cpu");
}
