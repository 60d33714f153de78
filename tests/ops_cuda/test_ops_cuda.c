// tests/ops_cuda/test_ops_cuda.c — every op of the CUDA backend against the CPU backend on fresh
// random inputs (rounded to bf16 first, so both backends see the same numbers):
// ‖cuda − cpu‖/‖cpu‖ ≤ 1e-2 where the result passes through bf16, tighter where it stays f32.
// Outputs are poisoned (all-ones bytes: NaN in bf16 and f32) before each CUDA run and must come
// back fully written; every CUDA op runs twice and must give the same bits.  Sizes are odd on
// purpose: sequence lengths that are not multiples of the 64-row tiles, a vocabulary that is not
// a multiple of anything, lm_head chunks with a ragged last chunk, GQA ratios 1/4/8, head dims
// 64/128 (tensor-core path) and 8/32 (plain path).
#include "kernels/backend.h"
#include "kernels/nf4_format.h"
#include "kernels/mxfp4_format.h"
#include "kernels/rng.h"
#include "test.h"
#include <stdint.h>

#define TOL_BF16 1e-2
#define TOL_F32 1e-5
// f32 results computed from bf16 products (weight gradients, rstd, lse, losses): both sides sum
// the same exact products in fp32, only in another order.
#define TOL_F32_SUM 1e-4

static backend *cpu, *gpu;
static rng_state rng = {0x5eed, 0};
static int verbose;
// argv: run only the groups whose name contains FILTER (e.g. "attention"), or all but those
// when it starts with '!' (e.g. "!large").
static const char *filter;

static int want(const char *group) {
    if (!filter) return 1;
    if (filter[0] == '!') return strstr(group, filter + 1) == NULL;
    return strstr(group, filter) != NULL;
}

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static float round_bf(float f) { return bf2f(f2bf(f)); }

// n values uniform in [-a, a], rounded to bf16.
static float *rnd(size_t n, float a) {
    float *x = malloc(n * sizeof(float) + 1);
    if (!x) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) x[i] = round_bf((rng_next_uniform(&rng) * 2.0f - 1.0f) * a);
    return x;
}

// One tensor on both backends.  act: stored in the backend's activation dtype, else f32.
// init: values to (re)load before each run (NULL: poison instead).
typedef struct {
    const char *name;
    void *c, *g;
    size_t n;
    int act;
    float *init;
    unsigned char *snap;  // the first CUDA run's bytes
} buf;

static size_t esize(backend *be, int act) { return act ? dtype_size(be->act_dtype) : 4; }

static void *must_alloc(backend *be, size_t bytes) {
    void *p = be->alloc(be, bytes ? bytes : 4);
    if (!p) { fprintf(stderr, "%s: %s\n", be->name, be->error); exit(1); }
    return p;
}

static void put(backend *be, void *dst, const float *src, size_t n, int act) {
    if (act && be->act_dtype == DTYPE_BF16) {
        uint16_t *t = malloc(n * 2 + 2);
        for (size_t i = 0; i < n; i++) t[i] = f2bf(src[i]);
        be->copy_to_device(be, dst, t, n * 2);
        free(t);
    } else {
        be->copy_to_device(be, dst, src, n * 4);
    }
}

static void poison_one(backend *be, void *dst, size_t n, int act) {
    size_t bytes = n * esize(be, act);
    unsigned char *t = malloc(bytes + 1);
    memset(t, 0xff, bytes);
    be->copy_to_device(be, dst, t, bytes);
    free(t);
}

static float *get(backend *be, const void *src, size_t n, int act) {
    float *out = malloc(n * sizeof(float) + 4);
    be->synchronize(be);
    if (act && be->act_dtype == DTYPE_BF16) {
        uint16_t *t = malloc(n * 2 + 2);
        be->copy_to_host(be, t, src, n * 2);
        for (size_t i = 0; i < n; i++) out[i] = bf2f(t[i]);
        free(t);
    } else {
        be->copy_to_host(be, out, src, n * 4);
    }
    return out;
}

static buf mk(const char *name, size_t n, int act, float *init) {
    buf b = {name, NULL, NULL, n, act, init, NULL};
    b.c = must_alloc(cpu, n * esize(cpu, act));
    b.g = must_alloc(gpu, n * esize(gpu, act));
    if (init) {
        put(cpu, b.c, init, n, act);
        put(gpu, b.g, init, n, act);
    } else {
        poison_one(cpu, b.c, n, act);
        poison_one(gpu, b.g, n, act);
    }
    return b;
}

static void reset_gpu(buf *b) {
    if (b->init) put(gpu, b->g, b->init, b->n, b->act);
    else poison_one(gpu, b->g, b->n, b->act);
}

static void drop(buf *b) {
    cpu->free(cpu, b->c);
    gpu->free(gpu, b->g);
    free(b->init);
    free(b->snap);
    memset(b, 0, sizeof *b);
}

static void snapshot(buf *b, int rep, const char *op) {
    size_t bytes = b->n * esize(gpu, b->act);
    unsigned char *t = malloc(bytes + 1);
    gpu->synchronize(gpu);
    gpu->copy_to_host(gpu, t, b->g, bytes);
    if (rep == 0) {
        free(b->snap);
        b->snap = t;
        return;
    }
    size_t diff = 0;
    for (size_t i = 0; i < bytes; i++) diff += t[i] != b->snap[i];
    CHECK(diff == 0, "%s: %s differs between two identical CUDA runs in %zu of %zu bytes (not deterministic)", op,
          b->name, diff, bytes);
    free(t);
}

// Runs a CUDA call twice, each time on freshly reset outputs, and checks the bits agree.
#define GPU_TWICE(op, outs, call)                                                   \
    do {                                                                            \
        for (int rep_ = 0; rep_ < 2; rep_++) {                                      \
            for (size_t o_ = 0; o_ < sizeof(outs) / sizeof(outs[0]); o_++) reset_gpu(outs[o_]); \
            call;                                                                   \
            for (size_t o_ = 0; o_ < sizeof(outs) / sizeof(outs[0]); o_++) snapshot(outs[o_], rep_, op); \
        }                                                                           \
    } while (0)

// The CUDA result must be fully written (no poison left) and close to the CPU's.
static void compare(const char *op, const buf *b, double tol) {
    float *c = get(cpu, b->c, b->n, b->act), *g = get(gpu, b->g, b->n, b->act);
    size_t nan_g = 0, nan_c = 0, first = (size_t)-1;
    for (size_t i = 0; i < b->n; i++) {
        if (isnan(g[i])) { nan_g++; if (first == (size_t)-1) first = i; }
        if (isnan(c[i])) nan_c++;
    }
    CHECK(nan_c == 0, "%s: %s: the CPU reference has %zu NaN of %zu", op, b->name, nan_c, b->n);
    CHECK(nan_g == 0, "%s: %s: %zu of %zu CUDA values NaN (not written?), first at %zu", op, b->name, nan_g, b->n, first);
    if (nan_g == 0 && nan_c == 0) {
        double e = rel_error(g, c, b->n);
        if (verbose) printf("  %-28s %-8s rel err %.3e (n=%zu)\n", op, b->name, e, b->n);
        if (!(e <= tol)) {
            size_t worst = 0;
            for (size_t i = 0; i < b->n; i++)
                if (fabsf(g[i] - c[i]) > fabsf(g[worst] - c[worst])) worst = i;
            CHECK(e <= tol, "%s: %s: ‖cuda − cpu‖/‖cpu‖ = %.3e > %.0e (n=%zu; worst at %zu: cuda %g cpu %g)", op,
                  b->name, e, tol, b->n, worst, g[worst], c[worst]);
        }
    }
    free(c);
    free(g);
}

static int32_t *rand_ids(size_t n, int lo, int hi) {
    int32_t *t = malloc(n * sizeof(int32_t) + 4);
    for (size_t i = 0; i < n; i++) t[i] = lo + (int32_t)(rng_next_u64(&rng) % (uint64_t)(hi - lo));
    return t;
}

typedef struct { int32_t *c, *g; } ibuf;

static ibuf mk_ids(const int32_t *host, size_t n) {
    ibuf b;
    b.c = must_alloc(cpu, n * 4);
    b.g = must_alloc(gpu, n * 4);
    cpu->copy_to_device(cpu, b.c, host, n * 4);
    gpu->copy_to_device(gpu, b.g, host, n * 4);
    return b;
}
static void drop_ids(ibuf *b) { cpu->free(cpu, b->c); gpu->free(gpu, b->g); }

static void test_cast(size_t n) {
    float *x = rnd(n, 3.0f);
    for (size_t i = 0; i < n; i++) x[i] *= 1.0f + 1e-3f * (float)(i % 7);  // not bf16-exact: rounding matters
    buf src = mk("src", n, 0, x);
    buf act = mk("act", n, 1, NULL), back = mk("back", n, 0, NULL);
    buf *o1[] = {&act};
    GPU_TWICE("cast_f32_to_act", o1, gpu->cast_f32_to_act(gpu, act.g, src.g, n));
    buf *o2[] = {&back};
    GPU_TWICE("cast_act_to_f32", o2, gpu->cast_act_to_f32(gpu, back.g, act.g, n));
    float *g = get(gpu, back.g, n, 0);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += g[i] != round_bf(src.init[i]);
    CHECK(bad == 0, "cast: %zu of %zu values differ from round-to-nearest-even bf16", bad, n);
    // An unaligned start (scalar path) must round the same way.
    poison_one(gpu, back.g, n, 0);
    gpu->cast_f32_to_act(gpu, (uint16_t *)act.g + 1, (const float *)src.g + 1, n - 1);
    gpu->cast_act_to_f32(gpu, (float *)back.g + 1, (const uint16_t *)act.g + 1, n - 1);
    free(g);
    g = get(gpu, back.g, n, 0);
    bad = 0;
    for (size_t i = 1; i < n; i++) bad += g[i] != round_bf(src.init[i]);
    CHECK(bad == 0, "cast (unaligned): %zu of %zu values differ", bad, n - 1);
    free(g);
    drop(&src);
    drop(&act);
    drop(&back);
}

static void test_embedding(int N, int C, int V) {
    int32_t *ids_h = rand_ids((size_t)N, 0, V < 40 ? V : 40);  // few distinct ids: many repeats
    ids_h[N - 1] = V - 1;
    ibuf ids = mk_ids(ids_h, (size_t)N);
    buf table = mk("table", (size_t)V * C, 1, rnd((size_t)V * C, 1.0f));
    buf out = mk("out", (size_t)N * C, 1, NULL);
    cpu->embedding_forward(cpu, out.c, ids.c, table.c, N, C);
    buf *o1[] = {&out};
    GPU_TWICE("embedding_forward", o1, gpu->embedding_forward(gpu, out.g, ids.g, table.g, N, C));
    compare("embedding_forward", &out, TOL_BF16);
    buf dout = mk("dout", (size_t)N * C, 1, rnd((size_t)N * C, 1.0f));
    buf dtable = mk("dtable", (size_t)V * C, 0, rnd((size_t)V * C, 1.0f));
    cpu->embedding_backward(cpu, dtable.c, dout.c, ids.c, N, C, V);
    buf *o2[] = {&dtable};
    GPU_TWICE("embedding_backward", o2, gpu->embedding_backward(gpu, dtable.g, dout.g, ids.g, N, C, V));
    compare("embedding_backward", &dtable, TOL_F32);
    drop(&table); drop(&out); drop(&dout); drop(&dtable); drop_ids(&ids);
    free(ids_h);
}

static void test_rmsnorm(int N, int C) {
    buf x = mk("x", (size_t)N * C, 1, rnd((size_t)N * C, 2.0f));
    float *wh = rnd((size_t)C, 1.0f);
    for (int i = 0; i < C; i++) wh[i] = round_bf(1.0f + 0.5f * wh[i]);
    buf w = mk("w", (size_t)C, 1, wh);
    buf out = mk("out", (size_t)N * C, 1, NULL), rstd = mk("rstd", (size_t)N, 0, NULL);
    cpu->rmsnorm_forward(cpu, out.c, rstd.c, x.c, w.c, N, C, 1e-5f);
    buf *o1[] = {&out, &rstd};
    GPU_TWICE("rmsnorm_forward", o1, gpu->rmsnorm_forward(gpu, out.g, rstd.g, x.g, w.g, N, C, 1e-5f));
    compare("rmsnorm_forward", &out, TOL_BF16);
    compare("rmsnorm_forward", &rstd, TOL_F32_SUM);
    // The backward gets the CPU's rstd on both sides.
    buf r = mk("rstd_in", (size_t)N, 0, get(cpu, rstd.c, (size_t)N, 0));
    buf dout = mk("dout", (size_t)N * C, 1, rnd((size_t)N * C, 1.0f));
    buf dx = mk("dx", (size_t)N * C, 1, rnd((size_t)N * C, 0.5f));
    buf dw = mk("dw", (size_t)C, 0, rnd((size_t)C, 1.0f));
    cpu->rmsnorm_backward(cpu, dx.c, dw.c, dout.c, x.c, w.c, r.c, N, C);
    buf *o2[] = {&dx, &dw};
    GPU_TWICE("rmsnorm_backward", o2, gpu->rmsnorm_backward(gpu, dx.g, dw.g, dout.g, x.g, w.g, r.g, N, C));
    compare("rmsnorm_backward", &dx, TOL_BF16);
    compare("rmsnorm_backward", &dw, TOL_F32_SUM);
    // dw == NULL (frozen norm weight): dx alone.
    buf dx2 = mk("dx(frozen)", (size_t)N * C, 1, rnd((size_t)N * C, 0.5f));
    cpu->rmsnorm_backward(cpu, dx2.c, NULL, dout.c, x.c, w.c, r.c, N, C);
    buf *o3[] = {&dx2};
    GPU_TWICE("rmsnorm_backward", o3, gpu->rmsnorm_backward(gpu, dx2.g, NULL, dout.g, x.g, w.g, r.g, N, C));
    compare("rmsnorm_backward", &dx2, TOL_BF16);
    // dx == NULL: dw alone.
    buf dw3 = mk("dw(no dx)", (size_t)C, 0, rnd((size_t)C, 1.0f));
    cpu->rmsnorm_backward(cpu, NULL, dw3.c, dout.c, x.c, w.c, r.c, N, C);
    buf *o4[] = {&dw3};
    GPU_TWICE("rmsnorm_backward", o4, gpu->rmsnorm_backward(gpu, NULL, dw3.g, dout.g, x.g, w.g, r.g, N, C));
    compare("rmsnorm_backward", &dw3, TOL_F32_SUM);
    drop(&x); drop(&w); drop(&out); drop(&rstd); drop(&r); drop(&dout); drop(&dx); drop(&dw); drop(&dx2); drop(&dw3);
}

// Residual add + RMSNorm (out written over a, as the model calls it) against the CPU's; and
// its out and rstd bitwise equal to CUDA's own rmsnorm_forward on the stored sum (what selective
// recomputation recomputes in the backward).
static void test_add_rmsnorm(int N, int C) {
    char op[64];
    snprintf(op, sizeof op, "add_rmsnorm(N=%d,C=%d)", N, C);
    float *wh = rnd((size_t)C, 1.0f);
    for (int i = 0; i < C; i++) wh[i] = round_bf(1.0f + 0.5f * wh[i]);
    buf w = mk("w", (size_t)C, 1, wh);
    buf b = mk("b", (size_t)N * C, 1, rnd((size_t)N * C, 2.0f));
    buf out = mk("out", (size_t)N * C, 1, rnd((size_t)N * C, 2.0f));   // a on entry
    buf sum = mk("sum", (size_t)N * C, 1, NULL), rstd = mk("rstd", (size_t)N, 0, NULL);
    cpu->add_rmsnorm_forward(cpu, sum.c, out.c, rstd.c, out.c, b.c, w.c, N, C, 1e-5f);
    buf *o1[] = {&out, &sum, &rstd};
    GPU_TWICE(op, o1, gpu->add_rmsnorm_forward(gpu, sum.g, out.g, rstd.g, out.g, b.g, w.g, N, C, 1e-5f));
    compare(op, &sum, TOL_BF16);
    compare(op, &out, TOL_BF16);
    compare(op, &rstd, TOL_BF16);   // of the sum rounded to bf16 (the CPU's is f32): bf16's bound
    buf out2 = mk("out(rmsnorm)", (size_t)N * C, 1, NULL), rstd2 = mk("rstd(rmsnorm)", (size_t)N, 0, NULL);
    gpu->rmsnorm_forward(gpu, out2.g, rstd2.g, sum.g, w.g, N, C, 1e-5f);
    gpu->synchronize(gpu);
    size_t bytes = (size_t)N * C * 2;
    unsigned char *p = malloc(bytes), *q = malloc(bytes);
    gpu->copy_to_host(gpu, p, out.g, bytes);
    gpu->copy_to_host(gpu, q, out2.g, bytes);
    CHECK(!memcmp(p, q, bytes), "%s: out differs from rmsnorm_forward on the stored sum", op);
    gpu->copy_to_host(gpu, p, rstd.g, (size_t)N * 4);
    gpu->copy_to_host(gpu, q, rstd2.g, (size_t)N * 4);
    CHECK(!memcmp(p, q, (size_t)N * 4), "%s: rstd differs from rmsnorm_forward's on the stored sum", op);
    free(p);
    free(q);
    drop(&w); drop(&b); drop(&out); drop(&sum); drop(&rstd); drop(&out2); drop(&rstd2);
}

static void test_linear(int N, int IC, int OC, int with_bias, float scale, int accumulate) {
    char op[96];
    snprintf(op, sizeof op, "linear(N=%d,IC=%d,OC=%d,bias=%d,scale=%g,acc=%d)", N, IC, OC, with_bias, scale, accumulate);
    buf inp = mk("inp", (size_t)N * IC, 1, rnd((size_t)N * IC, 1.0f));
    buf w = mk("w", (size_t)OC * IC, 1, rnd((size_t)OC * IC, 0.2f));
    buf bias = mk("bias", (size_t)OC, 1, rnd((size_t)OC, 1.0f));
    const void *bc = with_bias ? bias.c : NULL, *bg = with_bias ? bias.g : NULL;
    buf out = mk("out", (size_t)N * OC, 1, accumulate ? rnd((size_t)N * OC, 1.0f) : NULL);
    cpu->linear_forward(cpu, out.c, inp.c, w.c, bc, N, IC, OC, scale, accumulate);
    buf *o1[] = {&out};
    GPU_TWICE(op, o1, gpu->linear_forward(gpu, out.g, inp.g, w.g, bg, N, IC, OC, scale, accumulate));
    compare(op, &out, TOL_BF16);

    buf dout = mk("dout", (size_t)N * OC, 1, rnd((size_t)N * OC, 1.0f));
    buf dinp = mk("dinp", (size_t)N * IC, 1, accumulate ? rnd((size_t)N * IC, 1.0f) : NULL);
    buf dw = mk("dw", (size_t)OC * IC, 0, rnd((size_t)OC * IC, 1.0f));
    buf db = mk("dbias", (size_t)OC, 0, rnd((size_t)OC, 1.0f));
    float *dbc = with_bias ? db.c : NULL, *dbg = with_bias ? db.g : NULL;
    cpu->linear_backward(cpu, dinp.c, dw.c, dbc, dout.c, inp.c, w.c, N, IC, OC, scale, accumulate);
    buf *o2[] = {&dinp, &dw, &db};
    GPU_TWICE(op, o2, gpu->linear_backward(gpu, dinp.g, dw.g, dbg, dout.g, inp.g, w.g, N, IC, OC, scale, accumulate));
    compare(op, &dinp, TOL_BF16);
    compare(op, &dw, TOL_F32_SUM);
    if (with_bias) compare(op, &db, TOL_F32_SUM);
    // Frozen weight: dw == NULL and dbias == NULL, dinp still computed.
    buf dinp2 = mk("dinp(frozen)", (size_t)N * IC, 1, accumulate ? rnd((size_t)N * IC, 1.0f) : NULL);
    cpu->linear_backward(cpu, dinp2.c, NULL, NULL, dout.c, inp.c, w.c, N, IC, OC, scale, accumulate);
    buf *o3[] = {&dinp2};
    GPU_TWICE(op, o3, gpu->linear_backward(gpu, dinp2.g, NULL, NULL, dout.g, inp.g, w.g, N, IC, OC, scale, accumulate));
    compare(op, &dinp2, TOL_BF16);
    // dinp == NULL (first layer of a LoRA stack): dw only.
    buf dw2 = mk("dw(no dinp)", (size_t)OC * IC, 0, rnd((size_t)OC * IC, 1.0f));
    cpu->linear_backward(cpu, NULL, dw2.c, NULL, dout.c, inp.c, w.c, N, IC, OC, scale, accumulate);
    buf *o4[] = {&dw2};
    GPU_TWICE(op, o4, gpu->linear_backward(gpu, NULL, dw2.g, NULL, dout.g, inp.g, w.g, N, IC, OC, scale, accumulate));
    compare(op, &dw2, TOL_F32_SUM);
    drop(&inp); drop(&w); drop(&bias); drop(&out); drop(&dout); drop(&dinp); drop(&dw); drop(&db);
    drop(&dinp2); drop(&dw2);
}

// The experts' grouped linear: G groups of uneven rows (group G/2 empty; rows start at row0 > 0,
// as an adapter's slice may), each with its own weight; biases on every other group when
// with_bias; the backward with dw/dbias for some groups only (frozen entries NULL), and dinp NULL.
static void test_grouped_linear(int G, int max_rows, int row0, int IC, int OC, int with_bias, float scale,
                                int accumulate) {
    char op[112];
    snprintf(op, sizeof op, "grouped_linear(G=%d,IC=%d,OC=%d,bias=%d,scale=%g,acc=%d)", G, IC, OC, with_bias, scale,
             accumulate);
    int *off = malloc((size_t)(G + 1) * sizeof(int));
    off[0] = row0;
    for (int g = 0; g < G; g++)
        off[g + 1] = off[g] + (g == G / 2 ? 0 : 1 + (int)(rng_next_u64(&rng) % (uint64_t)max_rows));
    size_t M = (size_t)off[G], wsz = (size_t)OC * IC;   // rows [0, row0) belong to no group
    buf inp = mk("inp", M * IC, 1, rnd(M * IC, 1.0f));
    buf w = mk("w", (size_t)G * wsz, 1, rnd((size_t)G * wsz, 0.2f));
    buf bias = mk("bias", (size_t)G * OC, 1, rnd((size_t)G * OC, 1.0f));
    // Overwritten outputs start poisoned (every element must be written); rows before row0 belong to
    // no group and must keep their values.
    int keep = accumulate || row0 > 0;
    buf out = mk("out", M * OC, 1, keep ? rnd(M * OC, 1.0f) : NULL);
    const void **wc = malloc((size_t)G * sizeof(void *)), **wg = malloc((size_t)G * sizeof(void *));
    const void **bc = malloc((size_t)G * sizeof(void *)), **bg = malloc((size_t)G * sizeof(void *));
    size_t ec = esize(cpu, 1), eg = esize(gpu, 1);
    for (int g = 0; g < G; g++) {
        wc[g] = (char *)w.c + (size_t)g * wsz * ec, wg[g] = (char *)w.g + (size_t)g * wsz * eg;
        int b = with_bias && g % 2 == 0;
        bc[g] = b ? (char *)bias.c + (size_t)g * OC * ec : NULL;
        bg[g] = b ? (char *)bias.g + (size_t)g * OC * eg : NULL;
    }
    cpu->grouped_linear_forward(cpu, out.c, inp.c, wc, with_bias ? bc : NULL, off, G, IC, OC, scale, accumulate);
    buf *o1[] = {&out};
    GPU_TWICE(op, o1, gpu->grouped_linear_forward(gpu, out.g, inp.g, wg, with_bias ? bg : NULL, off, G, IC, OC, scale,
                                                  accumulate));
    compare(op, &out, TOL_BF16);

    buf dout = mk("dout", M * OC, 1, rnd(M * OC, 1.0f));
    buf dinp = mk("dinp", M * IC, 1, keep ? rnd(M * IC, 1.0f) : NULL);
    buf dw = mk("dw", (size_t)G * wsz, 0, rnd((size_t)G * wsz, 1.0f));
    buf db = mk("dbias", (size_t)G * OC, 0, rnd((size_t)G * OC, 1.0f));
    float **dwc = malloc((size_t)G * sizeof(float *)), **dwg = malloc((size_t)G * sizeof(float *));
    float **dbc = malloc((size_t)G * sizeof(float *)), **dbg = malloc((size_t)G * sizeof(float *));
    for (int g = 0; g < G; g++) {
        int frozen = g % 3 == 1;
        dwc[g] = frozen ? NULL : (float *)dw.c + (size_t)g * wsz, dwg[g] = frozen ? NULL : (float *)dw.g + (size_t)g * wsz;
        dbc[g] = bc[g] ? (float *)db.c + (size_t)g * OC : NULL, dbg[g] = bg[g] ? (float *)db.g + (size_t)g * OC : NULL;
    }
    cpu->grouped_linear_backward(cpu, dinp.c, dwc, with_bias ? dbc : NULL, dout.c, inp.c, wc, off, G, IC, OC, scale,
                                 accumulate);
    buf *o2[] = {&dinp, &dw, &db};
    GPU_TWICE(op, o2, gpu->grouped_linear_backward(gpu, dinp.g, dwg, with_bias ? dbg : NULL, dout.g, inp.g, wg, off, G,
                                                   IC, OC, scale, accumulate));
    compare(op, &dinp, TOL_BF16);
    compare(op, &dw, TOL_F32_SUM);
    compare(op, &db, TOL_F32_SUM);
    // dinp == NULL, every weight trained: the weight gradients alone.
    buf dw2 = mk("dw(no dinp)", (size_t)G * wsz, 0, rnd((size_t)G * wsz, 1.0f));
    for (int g = 0; g < G; g++) dwc[g] = (float *)dw2.c + (size_t)g * wsz, dwg[g] = (float *)dw2.g + (size_t)g * wsz;
    cpu->grouped_linear_backward(cpu, NULL, dwc, NULL, dout.c, inp.c, wc, off, G, IC, OC, scale, accumulate);
    buf *o3[] = {&dw2};
    GPU_TWICE(op, o3, gpu->grouped_linear_backward(gpu, NULL, dwg, NULL, dout.g, inp.g, wg, off, G, IC, OC, scale,
                                                   accumulate));
    compare(op, &dw2, TOL_F32_SUM);
    drop(&inp); drop(&w); drop(&bias); drop(&out); drop(&dout); drop(&dinp); drop(&dw); drop(&db); drop(&dw2);
    free(wc); free(wg); free(bc); free(bg); free(dwc); free(dwg); free(dbc); free(dbg); free(off);
}

// The grouped LoRA op (G projections' A's stacked, one GEMM over the shared x): CUDA against
// the CPU's (which equals G separate LoRA linears bit for bit: test_ops_cpu).  The backward
// gets the CPU's h, rounded to bf16, on both sides.
static void test_lora_group(int N, int IC, int r, int G, const int *outs, float scale) {
    char op[96];
    snprintf(op, sizeof op, "lora_group(N=%d,IC=%d,r=%d,G=%d)", N, IC, r, G);
    size_t nh = (size_t)N * G * r;
    buf x = mk("x", (size_t)N * IC, 1, rnd((size_t)N * IC, 1.0f));
    buf a = mk("a", (size_t)G * r * IC, 1, rnd((size_t)G * r * IC, 0.2f));
    buf h = mk("h", nh, 1, NULL), dh = mk("dh", nh, 1, NULL);
    buf b[3], y[3], dy[3], db[3];
    void *yc[3], *yg[3], *bcs[3], *bgs[3], *dyc[3], *dyg[3];
    float *dbc[3], *dbg[3];
    for (int g = 0; g < G; g++) {
        size_t ny = (size_t)N * outs[g], nb = (size_t)outs[g] * r;
        b[g] = mk("b", nb, 1, rnd(nb, 0.5f));
        y[g] = mk("y", ny, 1, rnd(ny, 1.0f));
        dy[g] = mk("dy", ny, 1, rnd(ny, 1.0f));
        db[g] = mk("db", nb, 0, rnd(nb, 1.0f));
        yc[g] = y[g].c, yg[g] = y[g].g, bcs[g] = b[g].c, bgs[g] = b[g].g;
        dyc[g] = dy[g].c, dyg[g] = dy[g].g, dbc[g] = db[g].c, dbg[g] = db[g].g;
    }
    cpu->lora_group_forward(cpu, yc, h.c, x.c, a.c, (const void *const *)bcs, outs, G, N, IC, r, scale);
    buf *o1[] = {&h, &y[0], &y[1], &y[G - 1]};
    GPU_TWICE(op, o1, gpu->lora_group_forward(gpu, yg, h.g, x.g, a.g, (const void *const *)bgs, outs, G, N, IC, r, scale));
    compare(op, &h, TOL_BF16);
    for (int g = 0; g < G; g++) compare(op, &y[g], TOL_BF16);
    float *hh = get(cpu, h.c, nh, 1);
    for (size_t i = 0; i < nh; i++) hh[i] = round_bf(hh[i]);
    buf hin = mk("h_in", nh, 1, hh);
    buf dx = mk("dx", (size_t)N * IC, 1, rnd((size_t)N * IC, 1.0f));
    buf da = mk("da", (size_t)G * r * IC, 0, rnd((size_t)G * r * IC, 1.0f));
    cpu->lora_group_backward(cpu, dx.c, da.c, dbc, dh.c, (const void *const *)dyc, x.c, hin.c, a.c,
                             (const void *const *)bcs, outs, G, N, IC, r, scale);
    buf *o2[] = {&dx, &da, &dh, &db[0], &db[1], &db[G - 1]};
    GPU_TWICE(op, o2, gpu->lora_group_backward(gpu, dx.g, da.g, dbg, dh.g, (const void *const *)dyg, x.g, hin.g, a.g,
                                               (const void *const *)bgs, outs, G, N, IC, r, scale));
    compare(op, &dh, TOL_BF16);
    compare(op, &dx, TOL_BF16);
    compare(op, &da, TOL_BF16);   // from dh, rounded to bf16 on the device
    for (int g = 0; g < G; g++) compare(op, &db[g], TOL_F32_SUM);
    for (int g = 0; g < G; g++) drop(&b[g]), drop(&y[g]), drop(&dy[g]), drop(&db[g]);
    drop(&x); drop(&a); drop(&h); drop(&dh); drop(&hin); drop(&dx); drop(&da);
}

static void test_rope(int N, int H, int hd, float scaling) {
    char op[64];
    snprintf(op, sizeof op, "rope(N=%d,H=%d,hd=%d)", N, H, hd);
    float *inv = malloc((size_t)hd / 2 * sizeof(float) + 4);
    for (int i = 0; i < hd / 2; i++) inv[i] = powf(500000.0f, -2.0f * (float)i / (float)hd);
    buf invf = mk("inv_freq", (size_t)hd / 2, 0, inv);
    int32_t *pos_h = rand_ids((size_t)N, 0, 8192);
    ibuf pos = mk_ids(pos_h, (size_t)N);
    rope_table tc = {(const float *)invf.c, hd, scaling}, tg = {(const float *)invf.g, hd, scaling};
    float *xh = rnd((size_t)N * H * hd, 1.0f);
    float *xcopy = malloc((size_t)N * H * hd * sizeof(float));
    memcpy(xcopy, xh, (size_t)N * H * hd * sizeof(float));
    buf x = mk("x", (size_t)N * H * hd, 1, xh);
    cpu->rope_forward(cpu, x.c, pos.c, &tc, N, H);
    buf *o1[] = {&x};
    GPU_TWICE(op, o1, gpu->rope_forward(gpu, x.g, pos.g, &tg, N, H));
    compare(op, &x, TOL_BF16);
    buf dx = mk("dx", (size_t)N * H * hd, 1, xcopy);
    cpu->rope_backward(cpu, dx.c, pos.c, &tc, N, H);
    buf *o2[] = {&dx};
    GPU_TWICE(op, o2, gpu->rope_backward(gpu, dx.g, pos.g, &tg, N, H));
    compare(op, &dx, TOL_BF16);
    drop(&invf); drop(&x); drop(&dx); drop_ids(&pos);
    free(pos_h);
}

// RoPE of q and k in one op, with (norm) and without the per-head RMSNorm; the backward with the
// norm weights' gradients (dw) or frozen ones.  Without the norm q, k are rotated in place.
static void test_rope_qk(int N, int Hq, int Hk, int hd, int norm, int dw, float scaling) {
    char op[96];
    snprintf(op, sizeof op, "rope_qk(N=%d,Hq=%d,Hk=%d,hd=%d,norm=%d,dw=%d)", N, Hq, Hk, hd, norm, dw);
    float *inv = malloc((size_t)hd / 2 * sizeof(float) + 4);
    for (int i = 0; i < hd / 2; i++) inv[i] = powf(1000000.0f, -2.0f * (float)i / (float)hd);
    buf invf = mk("inv_freq", (size_t)hd / 2, 0, inv);
    int32_t *pos_h = rand_ids((size_t)N, 0, 8192);
    ibuf pos = mk_ids(pos_h, (size_t)N);
    rope_table tc = {(const float *)invf.c, hd, scaling}, tg = {(const float *)invf.g, hd, scaling};
    size_t nq = (size_t)N * Hq * hd, nk = (size_t)N * Hk * hd;
    float *wqh = rnd((size_t)hd, 1.0f), *wkh = rnd((size_t)hd, 1.0f);
    for (int i = 0; i < hd; i++) wqh[i] = round_bf(1.0f + 0.5f * wqh[i]), wkh[i] = round_bf(1.0f + 0.5f * wkh[i]);
    buf wq = mk("wq", (size_t)hd, 1, wqh), wk = mk("wk", (size_t)hd, 1, wkh);
    buf qi = mk("q_in", nq, 1, rnd(nq, 2.0f)), ki = mk("k_in", nk, 1, rnd(nk, 2.0f));
    // in place without the norm: q, k start as copies of q_in, k_in
    float *q0 = NULL, *k0 = NULL;
    if (!norm) {
        q0 = malloc(nq * sizeof(float) + 4), k0 = malloc(nk * sizeof(float) + 4);
        memcpy(q0, qi.init, nq * sizeof(float));
        memcpy(k0, ki.init, nk * sizeof(float));
    }
    buf q = mk("q", nq, 1, q0), k = mk("k", nk, 1, k0);
    buf rq = mk("rstd_q", (size_t)N * Hq, 0, NULL), rk = mk("rstd_k", (size_t)N * Hk, 0, NULL);
    const void *wqc = norm ? wq.c : NULL, *wkc = norm ? wk.c : NULL, *wqg = norm ? wq.g : NULL, *wkg = norm ? wk.g : NULL;
    cpu->rope_qk_forward(cpu, q.c, k.c, rq.c, rk.c, norm ? qi.c : q.c, norm ? ki.c : k.c, wqc, wkc, pos.c, &tc, N, Hq, Hk,
                         1e-6f);
    if (norm) {
        buf *o1[] = {&q, &k, &rq, &rk};
        GPU_TWICE(op, o1, gpu->rope_qk_forward(gpu, q.g, k.g, rq.g, rk.g, qi.g, ki.g, wqg, wkg, pos.g, &tg, N, Hq, Hk, 1e-6f));
        compare(op, &rq, TOL_F32_SUM);
        compare(op, &rk, TOL_F32_SUM);
    } else {
        buf *o1[] = {&q, &k};
        GPU_TWICE(op, o1, gpu->rope_qk_forward(gpu, q.g, k.g, NULL, NULL, q.g, k.g, NULL, NULL, pos.g, &tg, N, Hq, Hk, 1e-6f));
    }
    compare(op, &q, TOL_BF16);
    compare(op, &k, TOL_BF16);
    // The backward gets the CPU's rstd on both sides.
    buf rqi = mk("rstd_q_in", (size_t)N * Hq, 0, norm ? get(cpu, rq.c, (size_t)N * Hq, 0) : rnd((size_t)N * Hq, 1.0f));
    buf rki = mk("rstd_k_in", (size_t)N * Hk, 0, norm ? get(cpu, rk.c, (size_t)N * Hk, 0) : rnd((size_t)N * Hk, 1.0f));
    buf dq = mk("dq", nq, 1, rnd(nq, 1.0f)), dk = mk("dk", nk, 1, rnd(nk, 1.0f));
    buf dwq = mk("dwq", (size_t)hd, 0, rnd((size_t)hd, 1.0f)), dwk = mk("dwk", (size_t)hd, 0, rnd((size_t)hd, 1.0f));
    int want_dw = norm && dw;
    cpu->rope_qk_backward(cpu, dq.c, dk.c, want_dw ? dwq.c : NULL, want_dw ? dwk.c : NULL, qi.c, ki.c, wqc, wkc, rqi.c,
                          rki.c, pos.c, &tc, N, Hq, Hk);
    if (want_dw) {
        buf *o2[] = {&dq, &dk, &dwq, &dwk};
        GPU_TWICE(op, o2, gpu->rope_qk_backward(gpu, dq.g, dk.g, dwq.g, dwk.g, qi.g, ki.g, wqg, wkg, rqi.g, rki.g, pos.g,
                                                &tg, N, Hq, Hk));
        // Σ g·x·r over the rows with g the rotated gradient, which CUDA holds in bf16 (as
        // rope_backward stores it for the separate rmsnorm_backward) and the CPU in f32: bf16's bound.
        compare(op, &dwq, TOL_BF16);
        compare(op, &dwk, TOL_BF16);
    } else {
        buf *o2[] = {&dq, &dk};
        GPU_TWICE(op, o2, gpu->rope_qk_backward(gpu, dq.g, dk.g, NULL, NULL, qi.g, ki.g, wqg, wkg, rqi.g, rki.g, pos.g, &tg,
                                                N, Hq, Hk));
    }
    compare(op, &dq, TOL_BF16);
    compare(op, &dk, TOL_BF16);
    drop(&invf); drop(&wq); drop(&wk); drop(&qi); drop(&ki); drop(&q); drop(&k); drop(&rq); drop(&rk); drop(&rqi);
    drop(&rki); drop(&dq); drop(&dk); drop(&dwq); drop(&dwk); drop_ids(&pos);
    free(pos_h);
}

// doc_start for B rows of Tk positions: documents of random lengths (1..max_doc) packed.
static int32_t *make_docs(int B, int Tk, int max_doc) {
    int32_t *d = malloc((size_t)B * Tk * sizeof(int32_t) + 4);
    for (int b = 0; b < B; b++) {
        int start = 0, left = 0;
        for (int t = 0; t < Tk; t++) {
            if (left == 0) {
                start = t;
                left = 1 + (int)(rng_next_u64(&rng) % (uint64_t)max_doc);
            }
            d[(size_t)b * Tk + t] = start;
            left--;
        }
    }
    return d;
}

// window 0: none; with_sinks: gpt-oss' learned sinks (f32 (H)), and dsinks accumulated onto
// random starting values.
static void test_attention(int B, int Tq, int Tk, int H, int KVH, int hd, int max_doc, int window, int with_sinks) {
    char op[128];
    snprintf(op, sizeof op, "attention(B=%d,Tq=%d,Tk=%d,H=%d,KVH=%d,hd=%d,doc<=%d,window=%d%s)", B, Tq, Tk, H, KVH, hd,
             max_doc, window, with_sinks ? ",sinks" : "");
    float scale = 1.0f / sqrtf((float)hd);
    size_t nq = (size_t)B * Tq * H * hd, nk = (size_t)B * Tk * KVH * hd, nl = (size_t)B * H * Tq;
    buf q = mk("q", nq, 1, rnd(nq, 1.5f)), k = mk("k", nk, 1, rnd(nk, 1.5f)), v = mk("v", nk, 1, rnd(nk, 1.0f));
    int32_t *docs_h = make_docs(B, Tk, max_doc);
    ibuf docs = mk_ids(docs_h, (size_t)B * Tk);
    int packed = attention_rows_packed(docs_h, (size_t)B * Tk);
    buf out = mk("out", nq, 1, NULL), lse = mk("lse", nl, 0, NULL);
    buf sinks = mk("sinks", (size_t)H, 0, rnd((size_t)H, 2.0f));
    const float *sc = with_sinks ? sinks.c : NULL, *sg = with_sinks ? sinks.g : NULL;
    cpu->attention_forward(cpu, out.c, lse.c, q.c, k.c, v.c, docs.c, packed, B, Tq, Tk, H, KVH, hd, scale, window, sc);
    buf *o1[] = {&out, &lse};
    GPU_TWICE(op, o1, gpu->attention_forward(gpu, out.g, lse.g, q.g, k.g, v.g, docs.g, packed, B, Tq, Tk, H, KVH, hd, scale,
                                             window, sg));
    compare(op, &out, TOL_BF16);
    compare(op, &lse, TOL_F32_SUM);
    // The backward gets the CPU's forward results (rounded to bf16) on both sides.
    buf o_in = mk("out_in", nq, 1, NULL), l_in = mk("lse_in", nl, 0, NULL);
    float *oh = get(cpu, out.c, nq, 1);
    for (size_t i = 0; i < nq; i++) oh[i] = round_bf(oh[i]);
    o_in.init = oh;
    l_in.init = get(cpu, lse.c, nl, 0);
    reset_gpu(&o_in);
    reset_gpu(&l_in);
    put(cpu, o_in.c, o_in.init, nq, 1);
    put(cpu, l_in.c, l_in.init, nl, 0);
    buf dout = mk("dout", nq, 1, rnd(nq, 1.0f));
    buf dq = mk("dq", nq, 1, NULL), dk = mk("dk", nk, 1, NULL), dv = mk("dv", nk, 1, NULL);
    buf dsinks = mk("dsinks", (size_t)H, 0, rnd((size_t)H, 0.05f));  // small: the sum dominates
    float *dsc = with_sinks ? dsinks.c : NULL, *dsg = with_sinks ? dsinks.g : NULL;
    cpu->attention_backward(cpu, dq.c, dk.c, dv.c, dout.c, o_in.c, l_in.c, q.c, k.c, v.c, docs.c, packed, B, Tq, Tk, H, KVH,
                            hd, scale, window, sc, dsc);
    buf *o2[] = {&dq, &dk, &dv, &dsinks};
    GPU_TWICE(op, o2, gpu->attention_backward(gpu, dq.g, dk.g, dv.g, dout.g, o_in.g, l_in.g, q.g, k.g, v.g, docs.g, packed, B, Tq,
                                              Tk, H, KVH, hd, scale, window, sg, dsg));
    compare(op, &dq, TOL_BF16);
    compare(op, &dk, TOL_BF16);
    compare(op, &dv, TOL_BF16);
    if (with_sinks) compare(op, &dsinks, TOL_F32_SUM);
    drop(&q); drop(&k); drop(&v); drop(&out); drop(&lse); drop(&o_in); drop(&l_in); drop(&dout);
    drop(&dq); drop(&dk); drop(&dv); drop(&sinks); drop(&dsinks); drop_ids(&docs);
    free(docs_h);
}

static void test_elementwise(size_t n) {
    buf g = mk("gate", n, 1, rnd(n, 4.0f)), u = mk("up", n, 1, rnd(n, 2.0f));
    buf out = mk("out", n, 1, NULL);
    cpu->swiglu_forward(cpu, out.c, g.c, u.c, n);
    buf *o1[] = {&out};
    GPU_TWICE("swiglu_forward", o1, gpu->swiglu_forward(gpu, out.g, g.g, u.g, n));
    compare("swiglu_forward", &out, TOL_BF16);
    buf d = mk("dout", n, 1, rnd(n, 1.0f)), dg = mk("dgate", n, 1, NULL), du = mk("dup", n, 1, NULL);
    cpu->swiglu_backward(cpu, dg.c, du.c, d.c, g.c, u.c, n);
    buf *o2[] = {&dg, &du};
    GPU_TWICE("swiglu_backward", o2, gpu->swiglu_backward(gpu, dg.g, du.g, d.g, g.g, u.g, n));
    compare("swiglu_backward", &dg, TOL_BF16);
    compare("swiglu_backward", &du, TOL_BF16);
    // gpt-oss's clamped variant, with a limit the inputs cross on both sides.
    cpu->swiglu_clamped_forward(cpu, out.c, g.c, u.c, n, 1.702f, 1.5f);
    GPU_TWICE("swiglu_clamped_forward", o1, gpu->swiglu_clamped_forward(gpu, out.g, g.g, u.g, n, 1.702f, 1.5f));
    compare("swiglu_clamped_forward", &out, TOL_BF16);
    cpu->swiglu_clamped_backward(cpu, dg.c, du.c, d.c, g.c, u.c, n, 1.702f, 1.5f);
    GPU_TWICE("swiglu_clamped_backward", o2,
              gpu->swiglu_clamped_backward(gpu, dg.g, du.g, d.g, g.g, u.g, n, 1.702f, 1.5f));
    compare("swiglu_clamped_backward", &dg, TOL_BF16);
    compare("swiglu_clamped_backward", &du, TOL_BF16);

    buf sum = mk("sum", n, 1, NULL);
    cpu->add(cpu, sum.c, g.c, u.c, n);
    buf *o3[] = {&sum};
    GPU_TWICE("add", o3, gpu->add(gpu, sum.g, g.g, u.g, n));
    compare("add", &sum, TOL_BF16);
    buf acc = mk("a(aliased)", n, 1, rnd(n, 1.0f));
    cpu->add(cpu, acc.c, acc.c, u.c, n);
    buf *o4[] = {&acc};
    GPU_TWICE("add (out == a)", o4, gpu->add(gpu, acc.g, acc.g, u.g, n));
    compare("add (out == a)", &acc, TOL_BF16);

    buf dr = mk("dropped", n, 1, NULL);
    cpu->dropout_forward(cpu, dr.c, g.c, n, 0.1f, 42);
    buf *o5[] = {&dr};
    GPU_TWICE("dropout_forward", o5, gpu->dropout_forward(gpu, dr.g, g.g, n, 0.1f, 42));
    compare("dropout_forward", &dr, TOL_BF16);
    float *drh = get(gpu, dr.g, n, 1);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) zeros += drh[i] == 0.0f;
    CHECK(zeros > n / 20 && zeros < n / 5, "dropout p=0.1 zeroed %zu of %zu", zeros, n);
    free(drh);
    buf di = mk("dinp", n, 1, rnd(n, 1.0f));
    cpu->dropout_backward(cpu, di.c, d.c, n, 0.1f, 42);
    buf *o6[] = {&di};
    GPU_TWICE("dropout_backward", o6, gpu->dropout_backward(gpu, di.g, d.g, n, 0.1f, 42));
    compare("dropout_backward", &di, TOL_BF16);
    drop(&g); drop(&u); drop(&out); drop(&d); drop(&dg); drop(&du); drop(&sum); drop(&acc); drop(&dr); drop(&di);
}

static void test_lm_head(int N, int C, int V, const char *chunk_rows) {
    char op[96];
    snprintf(op, sizeof op, "lm_head_loss(N=%d,C=%d,V=%d,chunk=%s)", N, C, V, chunk_rows ? chunk_rows : "auto");
    if (chunk_rows) setenv("QUARRY_LMHEAD_CHUNK_ROWS", chunk_rows, 1);
    else unsetenv("QUARRY_LMHEAD_CHUNK_ROWS");
    buf h = mk("h", (size_t)N * C, 1, rnd((size_t)N * C, 1.0f));
    buf w = mk("w", (size_t)V * C, 1, rnd((size_t)V * C, 0.3f));
    int32_t *t_h = rand_ids((size_t)N, 0, V);
    int trained = 0;
    for (int i = 0; i < N; i++) {
        if (i % 5 == 2) t_h[i] = -1;
        else trained++;
    }
    t_h[0] = V - 1;
    ibuf t = mk_ids(t_h, (size_t)N);
    float gs = 1.0f / (float)trained;
    buf loss = mk("losses", (size_t)N, 0, NULL), dh = mk("dh", (size_t)N * C, 1, NULL);
    buf dw = mk("dw", (size_t)V * C, 0, rnd((size_t)V * C, 0.01f));
    cpu->lm_head_loss(cpu, loss.c, dh.c, dw.c, h.c, w.c, t.c, N, C, V, gs);
    buf *o1[] = {&loss, &dh, &dw};
    GPU_TWICE(op, o1, gpu->lm_head_loss(gpu, loss.g, dh.g, dw.g, h.g, w.g, t.g, N, C, V, gs));
    compare(op, &loss, TOL_F32_SUM);
    compare(op, &dh, TOL_BF16);
    compare(op, &dw, TOL_BF16);  // dlogits pass through bf16 on the GPU
    // Frozen lm_head (LoRA): dh only.  Evaluation: losses only.
    buf dh2 = mk("dh(frozen)", (size_t)N * C, 1, NULL), loss2 = mk("losses(eval)", (size_t)N, 0, NULL);
    cpu->lm_head_loss(cpu, loss2.c, dh2.c, NULL, h.c, w.c, t.c, N, C, V, gs);
    buf *o2[] = {&loss2, &dh2};
    GPU_TWICE(op, o2, gpu->lm_head_loss(gpu, loss2.g, dh2.g, NULL, h.g, w.g, t.g, N, C, V, gs));
    compare(op, &dh2, TOL_BF16);
    buf *o3[] = {&loss2};
    GPU_TWICE(op, o3, gpu->lm_head_loss(gpu, loss2.g, NULL, NULL, h.g, w.g, t.g, N, C, V, gs));
    compare(op, &loss2, TOL_F32_SUM);
    unsetenv("QUARRY_LMHEAD_CHUNK_ROWS");
    drop(&h); drop(&w); drop(&loss); drop(&dh); drop(&dw); drop(&dh2); drop(&loss2); drop_ids(&t);
    free(t_h);
}

static void test_optim(size_t n) {
    float *ph = rnd(n, 1.0f);
    buf p = mk("param", n, 0, ph), g = mk("grad", n, 0, rnd(n, 2.0f));
    float *vh = rnd(n, 1.0f);
    for (size_t i = 0; i < n; i++) vh[i] = vh[i] * vh[i] * 0.01f;
    buf m = mk("m", n, 0, rnd(n, 0.1f)), v = mk("v", n, 0, vh);
    buf pa = mk("param_act", n, 1, NULL);
    cpu->adamw_update(cpu, p.c, p.c, g.c, m.c, v.c, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.5f);
    buf *o1[] = {&p, &m, &v, &pa};
    GPU_TWICE("adamw_update", o1, gpu->adamw_update(gpu, p.g, pa.g, g.g, m.g, v.g, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3, 0.5f));
    compare("adamw_update", &p, TOL_F32);
    compare("adamw_update", &m, TOL_F32);
    compare("adamw_update", &v, TOL_F32);
    float *pg = get(gpu, pa.g, n, 1), *pc = get(cpu, p.c, n, 0);
    CHECK(rel_error(pg, pc, n) <= TOL_BF16, "adamw_update: bf16 copy far from the f32 param (%.3e)", rel_error(pg, pc, n));
    free(pg);
    free(pc);

    float *one = malloc(sizeof(float));
    one[0] = 1.5f;
    buf ss = mk("sumsq", 1, 0, one);
    cpu->sum_squares(cpu, ss.c, g.c, n);
    buf *o2[] = {&ss};
    GPU_TWICE("sum_squares", o2, gpu->sum_squares(gpu, ss.g, g.g, n));
    compare("sum_squares", &ss, TOL_F32);
    float *one2 = malloc(sizeof(float));
    one2[0] = 0.0f;
    buf ss2 = mk("sumsq(offset)", 1, 0, one2);
    cpu->sum_squares(cpu, ss2.c, (const float *)g.c + 1, n - 1);
    buf *o3[] = {&ss2};
    GPU_TWICE("sum_squares", o3, gpu->sum_squares(gpu, ss2.g, (const float *)g.g + 1, n - 1));
    compare("sum_squares", &ss2, TOL_F32);

    buf sc = mk("scaled", n, 0, rnd(n, 1.0f));
    cpu->scale_f32(cpu, sc.c, 0.37f, n);
    buf *o4[] = {&sc};
    GPU_TWICE("scale_f32", o4, gpu->scale_f32(gpu, sc.g, 0.37f, n));
    compare("scale_f32", &sc, TOL_F32);

    buf ad = mk("added", n, 0, rnd(n, 1.0f));
    cpu->add_f32(cpu, ad.c, g.c, n);
    buf *o5[] = {&ad};
    GPU_TWICE("add_f32", o5, gpu->add_f32(gpu, ad.g, g.g, n));
    compare("add_f32", &ad, TOL_F32);

    CHECK(gpu->has_nonfinite(gpu, g.g, n) == 0, "has_nonfinite: finite data reported non-finite");
    float bad[2] = {INFINITY, NAN};
    for (int j = 0; j < 2; j++) {
        size_t at = n - 1 - (size_t)j * 77;
        gpu->copy_to_device(gpu, (float *)g.g + at, &bad[j], sizeof(float));
        CHECK(gpu->has_nonfinite(gpu, g.g, n) != 0, "has_nonfinite: missed %g at %zu", bad[j], at);
        gpu->copy_to_device(gpu, (float *)g.g + at, &g.init[at], sizeof(float));
    }
    CHECK(gpu->has_nonfinite(gpu, g.g, n) == 0, "has_nonfinite: stale flag after restoring the data");
    drop(&p); drop(&g); drop(&m); drop(&v); drop(&pa); drop(&ss); drop(&ss2); drop(&sc); drop(&ad);
}

// i32 results (the router's idx) must agree exactly, with no poison (-1) left.
static void compare_i32(const char *op, const buf *b) {
    int32_t *c = malloc(b->n * 4 + 4), *g = malloc(b->n * 4 + 4);
    cpu->copy_to_host(cpu, c, b->c, b->n * 4);
    gpu->synchronize(gpu);
    gpu->copy_to_host(gpu, g, b->g, b->n * 4);
    size_t diff = 0, first = 0;
    for (size_t i = b->n; i-- > 0;)
        if (c[i] != g[i]) { diff++; first = i; }
    CHECK(diff == 0, "%s: %s: %zu of %zu differ, first at %zu: cuda %d cpu %d", op, b->name, diff, b->n, first,
          (int)g[first], (int)c[first]);
    free(c);
    free(g);
}

// The grouping by expert the host makes from idx (a counting sort, stable in the assignment a):
// src[i] = the assignment of permuted row i, pos[a] = its inverse.
static void moe_group(const int32_t *idx, int M, int E, int32_t *src, int32_t *pos) {
    int i = 0;
    for (int e = 0; e < E; e++)
        for (int a = 0; a < M; a++)
            if (idx[a] == e) { src[i] = a; pos[a] = i++; }
}

// The seven MoE ops at one shape: the router on logits with planted ties (row 0: all equal;
// row 1: equal pairs, the highest pair at E−2, E−1; row 2: three equal maxima in different lanes
// and slots), then the dispatch ops on the CPU router's grouping.
static void test_moe(int N, int E, int k, int C, int renorm) {
    char op[96];
    snprintf(op, sizeof op, "moe(N=%d,E=%d,k=%d,C=%d,renorm=%d)", N, E, k, C, renorm);
    int M = N * k;
    float *lh = rnd((size_t)N * E, 3.0f);
    for (int e = 0; e < E; e++) {
        lh[e] = 0.5f;
        if (N > 1) lh[E + e] = round_bf(0.25f * (float)(e / 2));
        if (N > 2) lh[2 * E + e] = e == E - 1 || e == (E - 1) / 2 || e == (E - 1) % 32 ? 2.0f : -1.0f;
    }
    buf logits = mk("logits", (size_t)N * E, 1, lh);
    buf idx = mk("idx", (size_t)M, 0, NULL), w = mk("weights", (size_t)M, 0, NULL);
    buf probs = mk("probs", (size_t)N * E, 0, NULL);
    cpu->moe_router_forward(cpu, idx.c, w.c, probs.c, logits.c, N, E, k, renorm);
    buf *o1[] = {&idx, &w, &probs};
    GPU_TWICE(op, o1, gpu->moe_router_forward(gpu, idx.g, w.g, probs.g, logits.g, N, E, k, renorm));
    compare_i32("moe_router_forward", &idx);
    compare("moe_router_forward", &w, TOL_F32_SUM);
    compare("moe_router_forward", &probs, TOL_F32_SUM);
    int32_t *idx_h = malloc((size_t)M * 4 + 4);
    gpu->copy_to_host(gpu, idx_h, idx.g, (size_t)M * 4);
    for (int j = 0; j < k; j++) {
        CHECK(idx_h[j] == j, "moe_router_forward: all-equal row: choice %d is expert %d", j, idx_h[j]);
        int want = (E / 2 - 1 - j / 2) * 2 + (j % 2);  // equal pairs: the lower index of each first
        if (N > 1 && E % 2 == 0)
            CHECK(idx_h[k + j] == want, "moe_router_forward: paired row: choice %d is expert %d, not %d", j,
                  idx_h[k + j], want);
    }

    // The backward and the statistics read the CPU's forward results on both sides.
    buf pr = mk("probs_in", (size_t)N * E, 0, get(cpu, probs.c, (size_t)N * E, 0));
    buf wi = mk("weights_in", (size_t)M, 0, get(cpu, w.c, (size_t)M, 0));
    int32_t *ih = malloc((size_t)M * 4 + 4);
    cpu->copy_to_host(cpu, ih, idx.c, (size_t)M * 4);
    ibuf ix = mk_ids(ih, (size_t)M);
    buf dw = mk("dweights", (size_t)M, 0, rnd((size_t)M, 1.0f)), dprob = mk("dprob", (size_t)E, 0, rnd((size_t)E, 0.1f));
    int32_t *mask_h = rand_ids((size_t)N, 0, 4);  // a quarter of the rows masked out (padding)
    ibuf mask = mk_ids(mask_h, (size_t)N);
    // No dprob; dprob on every row; dprob on the unmasked rows.
    for (int variant = 0; variant < 3; variant++) {
        const float *dpc = variant ? dprob.c : NULL, *dpg = variant ? dprob.g : NULL;
        const int32_t *mc = variant == 2 ? mask.c : NULL, *mg = variant == 2 ? mask.g : NULL;
        buf dl = mk(variant == 0 ? "dlogits" : variant == 1 ? "dlogits(dprob)" : "dlogits(dprob,mask)", (size_t)N * E,
                    1, NULL);
        cpu->moe_router_backward(cpu, dl.c, dw.c, dpc, mc, pr.c, ix.c, wi.c, N, E, k, renorm);
        buf *o2[] = {&dl};
        GPU_TWICE(op, o2, gpu->moe_router_backward(gpu, dl.g, dw.g, dpg, mg, pr.g, ix.g, wi.g, N, E, k, renorm));
        compare("moe_router_backward", &dl, TOL_BF16);
        drop(&dl);
    }
    for (int with_mask = 0; with_mask < 2; with_mask++) {
        float *cnt0 = malloc((size_t)E * sizeof(float) + 4);
        for (int e = 0; e < E; e++) cnt0[e] = (float)(e % 5);
        buf ps = mk("prob_sum", (size_t)E, 0, rnd((size_t)E, 1.0f)), cnt = mk("count", (size_t)E, 0, cnt0);
        const int32_t *mc = with_mask ? mask.c : NULL, *mg = with_mask ? mask.g : NULL;
        cpu->moe_router_stats(cpu, ps.c, cnt.c, pr.c, ix.c, mc, N, E, k);
        buf *o3[] = {&ps, &cnt};
        GPU_TWICE(op, o3, gpu->moe_router_stats(gpu, ps.g, cnt.g, pr.g, ix.g, mg, N, E, k));
        compare("moe_router_stats", &ps, TOL_F32_SUM);
        compare("moe_router_stats", &cnt, 0.0);  // whole numbers: exact
        drop(&ps);
        drop(&cnt);
    }

    int32_t *src_h = malloc((size_t)M * 4 + 4), *pos_h = malloc((size_t)M * 4 + 4);
    moe_group(ih, M, E, src_h, pos_h);
    ibuf src = mk_ids(src_h, (size_t)M), pos = mk_ids(pos_h, (size_t)M);
    buf x = mk("x", (size_t)N * C, 1, rnd((size_t)N * C, 1.0f));
    buf xp = mk("permuted", (size_t)M * C, 1, NULL);
    cpu->moe_permute(cpu, xp.c, x.c, src.c, M, k, C);
    buf *o4[] = {&xp};
    GPU_TWICE(op, o4, gpu->moe_permute(gpu, xp.g, x.g, src.g, M, k, C));
    compare("moe_permute", &xp, 0.0);  // a copy: exact
    buf dout = mk("dpermuted", (size_t)M * C, 1, rnd((size_t)M * C, 1.0f));
    for (int acc = 0; acc < 2; acc++) {
        buf dx = mk(acc ? "dx(accumulate)" : "dx", (size_t)N * C, 1, acc ? rnd((size_t)N * C, 1.0f) : NULL);
        cpu->moe_permute_backward(cpu, dx.c, dout.c, pos.c, N, k, C, acc);
        buf *o5[] = {&dx};
        GPU_TWICE(op, o5, gpu->moe_permute_backward(gpu, dx.g, dout.g, pos.g, N, k, C, acc));
        compare("moe_permute_backward", &dx, TOL_BF16);
        drop(&dx);
    }
    buf eo = mk("eo", (size_t)M * C, 1, rnd((size_t)M * C, 1.0f));
    buf y = mk("y", (size_t)N * C, 1, NULL);
    cpu->moe_unpermute(cpu, y.c, eo.c, wi.c, pos.c, N, k, C);
    buf *o6[] = {&y};
    GPU_TWICE(op, o6, gpu->moe_unpermute(gpu, y.g, eo.g, wi.g, pos.g, N, k, C));
    compare("moe_unpermute", &y, TOL_BF16);
    buf dy = mk("dy", (size_t)N * C, 1, rnd((size_t)N * C, 1.0f));
    buf deo = mk("deo", (size_t)M * C, 1, NULL), dwo = mk("dweights_out", (size_t)M, 0, NULL);
    cpu->moe_unpermute_backward(cpu, deo.c, dwo.c, dy.c, eo.c, wi.c, pos.c, N, k, C);
    buf *o7[] = {&deo, &dwo};
    GPU_TWICE(op, o7, gpu->moe_unpermute_backward(gpu, deo.g, dwo.g, dy.g, eo.g, wi.g, pos.g, N, k, C));
    compare("moe_unpermute_backward", &deo, TOL_BF16);
    compare("moe_unpermute_backward", &dwo, TOL_F32_SUM);
    // In place (deo = eo, as kernels/cpu/moe.c allows): the same results.
    buf eo2 = mk("deo(in place)", (size_t)M * C, 1, get(cpu, eo.c, (size_t)M * C, 1));
    buf *o8[] = {&eo2, &dwo};
    GPU_TWICE(op, o8, gpu->moe_unpermute_backward(gpu, eo2.g, dwo.g, dy.g, eo2.g, wi.g, pos.g, N, k, C));
    cpu->copy(cpu, eo2.c, deo.c, (size_t)M * C * esize(cpu, 1));
    compare("moe_unpermute_backward", &eo2, TOL_BF16);
    compare("moe_unpermute_backward", &dwo, TOL_F32_SUM);

    drop(&logits); drop(&idx); drop(&w); drop(&probs); drop(&pr); drop(&wi); drop(&dw); drop(&dprob);
    drop(&x); drop(&xp); drop(&dout); drop(&eo); drop(&y); drop(&dy); drop(&deo); drop(&dwo); drop(&eo2);
    drop_ids(&ix); drop_ids(&mask); drop_ids(&src); drop_ids(&pos);
    free(idx_h); free(ih); free(mask_h); free(src_h); free(pos_h);
}

// An NF4 weight of n values with random codes and scales (any bytes are a valid weight), on the
// host; double quantised when dq.  Scales stay within [0, 0.2] so the linear's sums stay O(1).
static nf4_tensor nf4_random(size_t n, int dq) {
    nf4_tensor t = {0};
    t.packed_bytes = nf4_packed_bytes(n);
    t.packed = malloc(t.packed_bytes);
    for (size_t i = 0; i < t.packed_bytes; i++) t.packed[i] = (uint8_t)rng_next_u64(&rng);
    size_t nb = nf4_n_blocks(n);
    if (dq) {
        t.n_qabsmax = nb, t.qabsmax = malloc(nb);
        for (size_t i = 0; i < nb; i++) t.qabsmax[i] = (uint8_t)rng_next_u64(&rng);
        t.n_nested = nf4_n_nested(n), t.nested_absmax = malloc(t.n_nested * 4);
        for (size_t i = 0; i < t.n_nested; i++) t.nested_absmax[i] = 0.01f + 0.09f * rng_next_uniform(&rng);
        t.offset = 0.1f;
    } else {
        t.n_absmax = nb, t.absmax = malloc(nb * 4);
        for (size_t i = 0; i < nb; i++) t.absmax[i] = 0.01f + 0.19f * rng_next_uniform(&rng);
    }
    return t;
}

static void *dev_copy(backend *be, const void *src, size_t bytes) {
    if (!src) return NULL;
    void *p = must_alloc(be, bytes);
    be->copy_to_device(be, p, src, bytes);
    return p;
}

// The same tensor with its buffers on be (the struct stays on the host).
static nf4_tensor nf4_on(backend *be, const nf4_tensor *h) {
    nf4_tensor t = *h;
    t.packed = dev_copy(be, h->packed, h->packed_bytes);
    t.absmax = dev_copy(be, h->absmax, h->n_absmax * 4);
    t.qabsmax = dev_copy(be, h->qabsmax, h->n_qabsmax);
    t.nested_absmax = dev_copy(be, h->nested_absmax, h->n_nested * 4);
    return t;
}

static void nf4_drop(backend *be, nf4_tensor *t) {
    void *p[] = {t->packed, t->absmax, t->qabsmax, t->nested_absmax};
    for (int i = 0; i < 4; i++)
        if (p[i]) be ? be->free(be, p[i]) : free(p[i]);
}

// nf4_dequantize: the CUDA bf16 weights are the CPU's f32 ones rounded once (bit-exact); the
// NF4 linear forward/backward against the CPU's, which multiplies the unrounded f32 weights
// (the bf16 rounding of the weight is inside TOL_BF16).  OC·IC odd, IC not a multiple of 64
// (blocks straddle rows), several nested blocks.
static void test_nf4(int N, int IC, int OC, int dq, int with_bias, float scale, int accumulate) {
    char op[112];
    snprintf(op, sizeof op, "nf4(N=%d,IC=%d,OC=%d,dq=%d,bias=%d,scale=%g,acc=%d)", N, IC, OC, dq, with_bias, scale,
             accumulate);
    size_t n = (size_t)OC * IC;
    nf4_tensor h = nf4_random(n, dq), wc = nf4_on(cpu, &h), wg = nf4_on(gpu, &h);
    buf w = mk("w", n, 1, NULL);
    cpu->nf4_dequantize(cpu, w.c, &wc, OC, IC);
    buf *o1[] = {&w};
    GPU_TWICE(op, o1, gpu->nf4_dequantize(gpu, w.g, &wg, OC, IC));
    float *c = get(cpu, w.c, n, 1), *g = get(gpu, w.g, n, 1);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&g[i], &(float){round_bf(c[i])}, 4) && !bad++) first = i;
    CHECK(bad == 0, "%s: nf4_dequantize: %zu of %zu weights are not the CPU's rounded to bf16 (first at %zu: cuda %g, cpu %g)",
          op, bad, n, first, g[first], c[first]);
    free(c);
    free(g);

    buf inp = mk("inp", (size_t)N * IC, 1, rnd((size_t)N * IC, 1.0f));
    buf bias = mk("bias", (size_t)OC, 1, rnd((size_t)OC, 1.0f));
    const void *bc = with_bias ? bias.c : NULL, *bg = with_bias ? bias.g : NULL;
    buf out = mk("out", (size_t)N * OC, 1, accumulate ? rnd((size_t)N * OC, 1.0f) : NULL);
    buf ws = mk("workspace", n, 1, NULL);
    cpu->nf4_linear_forward(cpu, out.c, inp.c, &wc, bc, N, IC, OC, scale, accumulate, NULL);
    buf *o2[] = {&out};
    GPU_TWICE(op, o2, gpu->nf4_linear_forward(gpu, out.g, inp.g, &wg, bg, N, IC, OC, scale, accumulate, ws.g));
    compare(op, &out, TOL_BF16);
    buf dout = mk("dout", (size_t)N * OC, 1, rnd((size_t)N * OC, 1.0f));
    buf dinp = mk("dinp", (size_t)N * IC, 1, accumulate ? rnd((size_t)N * IC, 1.0f) : NULL);
    cpu->nf4_linear_backward(cpu, dinp.c, dout.c, &wc, N, IC, OC, scale, accumulate, NULL);
    buf *o3[] = {&dinp};
    GPU_TWICE(op, o3, gpu->nf4_linear_backward(gpu, dinp.g, dout.g, &wg, N, IC, OC, scale, accumulate, ws.g));
    compare(op, &dinp, TOL_BF16);
    drop(&w); drop(&inp); drop(&bias); drop(&out); drop(&ws); drop(&dout); drop(&dinp);
    nf4_drop(cpu, &wc);
    nf4_drop(gpu, &wg);
    nf4_drop(NULL, &h);
}

// mxfp4_dequantize: the CUDA bf16 weights are the CPU's f32 ones (the host decoder's, bit for bit:
// tests/ops/test_mxfp4_op) rounded once, every E8M0 scale 0..255 included (0: subnormal
// results; 255: 2^128, inf for codes ≥ 1, ±2^127 for ±0.5).
static void test_mxfp4(int OC, int IC) {
    char op[64];
    snprintf(op, sizeof op, "mxfp4_dequantize(OC=%d,IC=%d)", OC, IC);
    size_t n = (size_t)OC * IC, nb = mxfp4_block_bytes(n), ns = mxfp4_scale_bytes(n);
    uint8_t *hb = malloc(nb), *hs = malloc(ns);
    for (size_t i = 0; i < nb; i++) hb[i] = (uint8_t)rng_next_u64(&rng);
    for (size_t i = 0; i < ns; i++) hs[i] = (uint8_t)(i < 256 ? i : rng_next_u64(&rng));
    mxfp4_tensor wc = {dev_copy(cpu, hb, nb), dev_copy(cpu, hs, ns)}, wg = {dev_copy(gpu, hb, nb), dev_copy(gpu, hs, ns)};
    buf w = mk("w", n, 1, NULL);
    cpu->mxfp4_dequantize(cpu, w.c, &wc, OC, IC);
    buf *o1[] = {&w};
    GPU_TWICE(op, o1, gpu->mxfp4_dequantize(gpu, w.g, &wg, OC, IC));
    float *c = get(cpu, w.c, n, 1), *g = get(gpu, w.g, n, 1);
    size_t bad = 0, first = 0, inf = 0;
    for (size_t i = 0; i < n; i++) {
        inf += isinf(g[i]) != 0;
        if (memcmp(&g[i], &(float){round_bf(c[i])}, 4) && !bad++) first = i;
    }
    CHECK(bad == 0, "%s: %zu of %zu weights are not the CPU's rounded to bf16 (first at %zu: cuda %g, cpu %g)", op,
          bad, n, first, g[first], c[first]);
    CHECK(ns < 256 || inf > 0, "%s: scale 255 gives infinities", op);
    if (verbose) printf("  %-28s %zu weights the CPU's rounded to bf16 bit for bit (%zu inf)\n", op, n - bad, inf);
    free(c), free(g), free(hb), free(hs);
    drop(&w);
    cpu->free(cpu, wc.blocks), cpu->free(cpu, wc.scales), gpu->free(gpu, wg.blocks), gpu->free(gpu, wg.scales);
}

// Every op pointer must be set on both backends before anything runs.
static int check_tables(void) {
    struct { const char *name; size_t off; } ops[] = {
#define OP(f) {#f, offsetof(backend, f)}
        OP(cast_f32_to_act), OP(cast_act_to_f32), OP(embedding_forward), OP(embedding_backward),
        OP(rmsnorm_forward), OP(rmsnorm_backward), OP(add_rmsnorm_forward), OP(linear_forward), OP(linear_backward), OP(lora_group_forward), OP(lora_group_backward),
        OP(rope_forward),
        OP(rope_backward), OP(rope_qk_forward), OP(rope_qk_backward), OP(attention_forward), OP(attention_backward), OP(swiglu_forward), OP(swiglu_backward),
        OP(swiglu_clamped_forward), OP(swiglu_clamped_backward), OP(add), OP(dropout_forward), OP(dropout_backward), OP(lm_head_loss), OP(adamw_update), OP(sum_squares),
        OP(scale_f32), OP(add_f32), OP(has_nonfinite), OP(moe_router_forward), OP(moe_router_backward),
        OP(moe_router_stats), OP(moe_permute), OP(moe_permute_backward), OP(moe_unpermute),
        OP(moe_unpermute_backward), OP(grouped_linear_forward), OP(grouped_linear_backward), OP(nf4_dequantize), OP(nf4_linear_forward),
        OP(nf4_linear_backward), OP(mxfp4_dequantize),
#undef OP
    };
    int missing = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        void *pc, *pg;
        memcpy(&pc, (char *)cpu + ops[i].off, sizeof pc);
        memcpy(&pg, (char *)gpu + ops[i].off, sizeof pg);
        if (!pc) { fprintf(stderr, "FAIL: cpu backend has no %s\n", ops[i].name); missing++; }
        if (!pg) { fprintf(stderr, "FAIL: cuda backend has no %s\n", ops[i].name); missing++; }
    }
    return missing;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v")) verbose = 1;
        else filter = argv[i];
    }
    char err[256] = "";
    gpu = backend_cuda(0, err, sizeof err);
    if (!gpu) SKIP("%s", err);
    cpu = backend_cpu(0);
    if (!cpu) { fprintf(stderr, "FAIL: no cpu backend\n"); return 1; }
    if (gpu->act_dtype != DTYPE_BF16 || cpu->act_dtype != DTYPE_F32) {
        fprintf(stderr, "FAIL: unexpected act dtypes %s/%s\n", dtype_name(cpu->act_dtype), dtype_name(gpu->act_dtype));
        return 1;
    }
    if (check_tables()) return test_finish("test_ops_cuda");

    if (want("cast")) test_cast(1003);
    if (want("embedding")) {
        test_embedding(257, 72, 301);
        test_embedding(100, 27, 13);
    }
    if (want("rmsnorm")) {
        test_rmsnorm(67, 264);
        test_rmsnorm(33, 100);
    }
    if (want("add_rmsnorm")) {
        test_add_rmsnorm(67, 264);   // 16-byte path
        test_add_rmsnorm(33, 100);   // C not a multiple of 8: plain path
    }
    if (want("linear")) {
        test_linear(37, 72, 50, 0, 1.0f, 0);
        test_linear(37, 72, 50, 1, 1.0f, 0);
        test_linear(29, 40, 24, 1, 0.5f, 1);
        test_linear(64, 128, 96, 0, 2.0f, 1);
    }
    if (want("moe grouped_linear")) {
        test_grouped_linear(8, 40, 0, 72, 50, 0, 1.0f, 0);    // Mixtral-like: 8 experts
        test_grouped_linear(5, 30, 0, 40, 24, 1, 1.0f, 0);    // gpt-oss's expert biases
        test_grouped_linear(6, 20, 7, 40, 24, 1, 0.5f, 1);    // rows from 7 on, scaled and accumulated
        test_grouped_linear(33, 9, 3, 64, 16, 0, 2.0f, 1);    // many small groups; LoRA-like rank 16
        test_grouped_linear(4, 25, 0, 16, 96, 0, 0.25f, 1);   // a LoRA B: IC = rank 16
    }
    if (want("lora_group")) {
        static const int qkv[3] = {96, 32, 32}, gu[2] = {88, 88};
        test_lora_group(37, 72, 8, 3, qkv, 2.0f);   // q, k, v under GQA 3
        test_lora_group(29, 40, 4, 2, gu, 0.5f);    // gate, up
    }
    if (want("rope")) {
        test_rope(45, 3, 64, 1.0f);
        test_rope(20, 2, 10, 0.9f);
    }
    if (want("rope_qk")) {
        test_rope_qk(37, 4, 1, 128, 1, 1, 1.0f);   // Qwen3-like: q/k norms, their gradients
        test_rope_qk(37, 4, 1, 128, 1, 0, 1.0f);   // frozen norms (LoRA)
        test_rope_qk(29, 3, 3, 64, 0, 0, 1.2f);    // Llama-like: RoPE alone, in place
        test_rope_qk(13, 2, 1, 14, 1, 1, 1.0f);    // half < 32: idle lanes
        test_rope_qk(9, 3, 2, 320, 1, 1, 1.0f);    // 5 pairs a lane, the last partial
    }
    if (want("attention")) {
        // QUARRY_ATTN_KERNEL=v3|v4 runs attention_fa2.cu's forward (the cases below then check it):
        // the backend says which kernel it runs.
        const char *kv = getenv("QUARRY_ATTN_KERNEL");
        CHECK(!kv || !*kv || !strcmp(kv, "v1") || strstr(gpu->attention_impl, kv),
              "QUARRY_ATTN_KERNEL=%s but the backend runs '%s'", kv, gpu->attention_impl);
        test_attention(2, 77, 77, 8, 2, 64, 30, 0, 0);     // GQA 4, documents, T not a multiple of 64
        test_attention(1, 130, 130, 8, 1, 128, 200, 0, 0); // GQA 8, one document
        test_attention(1, 65, 65, 4, 4, 128, 20, 0, 0);    // GQA 1, many short documents
        test_attention(2, 19, 83, 4, 2, 64, 50, 0, 0);     // Tq < Tk (decoding with a KV cache)
        test_attention(1, 150, 150, 4, 1, 64, 1000, 0, 0); // several key tiles per query tile
        test_attention(2, 33, 33, 4, 2, 8, 12, 0, 0);      // tiny head dim: plain path
        test_attention(1, 21, 40, 2, 2, 32, 15, 0, 0);     // plain path, Tq < Tk
        test_attention(2, 1, 100, 8, 2, 64, 1000, 0, 0);   // decoding one token against a KV cache
        test_attention(1, 3, 70, 4, 1, 128, 25, 0, 0);     // a short prefill continuing documents
    }
    // gpt-oss: sliding windows shorter than the sequence (key tiles skipped) and learned sinks.
    if (want("attention sinks window")) {
        test_attention(2, 150, 150, 4, 2, 64, 60, 37, 1);     // window crosses tiles, tile 0 skipped late
        test_attention(1, 140, 140, 3, 1, 64, 50, 20, 1);     // odd GQA group (one head per block), packed
        test_attention(1, 200, 200, 4, 1, 128, 1000, 50, 1);  // hd 128, two key tiles skipped by row 192
        test_attention(2, 19, 83, 4, 2, 64, 50, 30, 1);       // Tq < Tk with a window
        test_attention(1, 77, 77, 8, 2, 64, 1000, 0, 1);      // sinks only (full-attention layers)
        test_attention(1, 70, 70, 4, 2, 64, 30, 16, 0);       // window only, packed documents
        test_attention(2, 33, 33, 4, 2, 8, 12, 5, 1);         // plain path, window and sinks
        test_attention(1, 21, 40, 2, 2, 32, 15, 0, 1);        // plain path, Tq < Tk, sinks only
        test_attention(2, 1, 100, 8, 2, 64, 1000, 16, 1);     // decoding one token, window 16
    }
    if (want("elementwise swiglu add dropout")) test_elementwise(1000 + 5);
    if (want("lm_head")) {
        test_lm_head(53, 72, 1001, "7");  // several chunks, the last one ragged
        test_lm_head(40, 64, 517, NULL);  // one chunk
    }
    if (want("optim adamw sum_squares scale has_nonfinite")) test_optim(100003);
    if (want("moe router permute")) {
        test_moe(67, 8, 2, 72, 1);    // Mixtral: 8 experts, top-2, renormalised; 16-byte path
        test_moe(45, 128, 8, 264, 1); // Qwen3-MoE: 128 experts, top-8
        test_moe(33, 60, 4, 27, 0);   // E not a multiple of 32, no renormalisation, odd C: plain path
        test_moe(20, 256, 8, 40, 0);  // the most experts the kernels take
        test_moe(3, 32, 4, 64, 1);    // gpt-oss-20b's router, fewer rows than a block
    }
    if (want("mxfp4")) {
        test_mxfp4(24, 352);   // 264 blocks: every scale once
        test_mxfp4(5, 64);
    }
    if (want("nf4")) {
        test_nf4(37, 131, 67, 1, 1, 1.0f, 0);  // double quant, odd OC·IC, blocks across rows
        test_nf4(20, 96, 300, 0, 0, 0.5f, 1);  // plain absmax; rows a multiple of 16, not of 64
        test_nf4(9, 520, 300, 1, 0, 2.0f, 1);  // 2438 blocks: 10 nested blocks, the last ragged
    }
    // Model-sized shapes: real cuBLASLt tensor-core kernels, many tiles per attention block,
    // RMSNorm's dw past 48 KB of shared memory, several full lm_head chunks.
    if (want("large")) {
        test_linear(512, 1024, 3072, 1, 1.0f, 0);
        test_linear(300, 2048, 512, 0, 0.5f, 1);
        test_attention(1, 1024, 1024, 8, 2, 128, 700, 0, 0);
        test_attention(2, 600, 600, 8, 8, 64, 5000, 0, 0);
        test_attention(1, 1024, 1024, 8, 2, 64, 5000, 128, 1);  // gpt-oss sliding layer
        test_rmsnorm(256, 16384);
        test_lm_head(300, 512, 32003, "128");
        test_moe(1024, 128, 8, 2048, 1);
        test_grouped_linear(128, 120, 0, 512, 192, 0, 1.0f, 0);   // 128 experts, Qwen3-MoE-like
    }

    gpu->destroy(gpu);
    cpu->destroy(cpu);
    return test_finish("test_ops_cuda");
}
