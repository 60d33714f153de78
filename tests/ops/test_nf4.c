// tests/ops/test_nf4.c — the NF4 format (kernels/nf4_format.h) against bitsandbytes, from the
// fixture scripts/reference/make_nf4_fixtures.py wrote (tests/fixtures/nf4): the two code maps,
// quantise (packed codes, absmax or qabsmax + nested absmax + offset) and dequantise (f32, bf16)
// bit for bit on odd shapes, bf16 and f32 inputs, with and without double quantisation, a block
// of zeros and values on the midpoints between codes; wrong-size buffers refused with a message;
// and the CPU backend's nf4 ops: nf4_dequantize bit-exact, nf4_linear_forward/backward against
// linear_forward/backward over the dequantised weight.
#include "kernels/backend.h"
#include "kernels/nf4_format.h"
#include "kernels/rng.h"
#include "model/safetensors.h"
#include "test.h"
#include <stdint.h>

static const st_tensor *need(const st_set *s, const char *name) {
    const st_tensor *t = st_find(s, name);
    if (!t) {
        fprintf(stderr, "FAIL: fixture has no %s\n", name);
        exit(1);
    }
    return t;
}

// Bytes equal; on a mismatch, the first differing element of width esize.
static void check_bytes(const char *what, const void *got, const void *want, size_t n,
                        size_t esize) {
    if (!memcmp(got, want, n * esize)) return;
    size_t i = 0, bad = 0;
    for (size_t j = 0; j < n; j++)
        if (memcmp((const char *)got + j * esize, (const char *)want + j * esize, esize))
            bad++, i = bad == 1 ? j : i;
    float g = 0, w = 0;
    if (esize == 4) memcpy(&g, (const char *)got + i * 4, 4), memcpy(&w, (const char *)want + i * 4, 4);
    if (esize == 1) g = ((const uint8_t *)got)[i], w = ((const uint8_t *)want)[i];
    if (esize == 2) g = bf16_to_f32(((const uint16_t *)got)[i]), w = bf16_to_f32(((const uint16_t *)want)[i]);
    CHECK(0, "%s: %zu of %zu differ, first at %zu: %.9g, bitsandbytes %.9g", what, bad, n, i, g, w);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n + 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

// The tensor layout of case p in the fixture, pointing into the fixture (read only).
static nf4_tensor fixture_tensor(const st_set *s, const char *p, int dq) {
    char k[64];
    nf4_tensor t = {0};
    snprintf(k, sizeof k, "%spacked", p);
    const st_tensor *pk = need(s, k);
    t.packed = (uint8_t *)pk->data, t.packed_bytes = pk->nbytes;
    if (dq) {
        snprintf(k, sizeof k, "%sqabsmax", p);
        const st_tensor *q = need(s, k);
        t.qabsmax = (uint8_t *)q->data, t.n_qabsmax = q->nbytes;
        snprintf(k, sizeof k, "%snested_absmax", p);
        const st_tensor *na = need(s, k);
        t.nested_absmax = (float *)na->data, t.n_nested = na->nbytes / 4;
        snprintf(k, sizeof k, "%soffset", p);
        memcpy(&t.offset, need(s, k)->data, 4);
    } else {
        snprintf(k, sizeof k, "%sabsmax", p);
        const st_tensor *a = need(s, k);
        t.absmax = (float *)a->data, t.n_absmax = a->nbytes / 4;
    }
    return t;
}

// Fresh buffers sized for n weights.
static nf4_tensor alloc_tensor(size_t n, int dq) {
    nf4_tensor t = {0};
    t.packed_bytes = nf4_packed_bytes(n), t.packed = xmalloc(t.packed_bytes);
    if (dq) {
        t.n_qabsmax = nf4_n_blocks(n), t.qabsmax = xmalloc(t.n_qabsmax);
        t.n_nested = nf4_n_nested(n), t.nested_absmax = xmalloc(t.n_nested * 4);
    } else {
        t.n_absmax = nf4_n_blocks(n), t.absmax = xmalloc(t.n_absmax * 4);
    }
    return t;
}

static void free_tensor(nf4_tensor *t) {
    free(t->packed), free(t->absmax), free(t->qabsmax), free(t->nested_absmax);
}

static void test_maps(const st_set *s) {
    float code[16], dyn[256];
    for (int i = 0; i < 16; i++) code[i] = nf4_code(i);
    for (int i = 0; i < 256; i++) dyn[i] = nf4_dynamic_code(i);
    check_bytes("nf4_code", code, need(s, "code")->data, 16, 4);
    check_bytes("nf4_dynamic_code", dyn, need(s, "dynamic_code")->data, 256, 4);
}

static void test_case(const st_set *s, int c) {
    char p[16], k[64], err[256] = "";
    snprintf(p, sizeof p, "c%d/", c);
    snprintf(k, sizeof k, "c%d.double", c);
    const char *dqs = st_metadata(s, k);
    snprintf(k, sizeof k, "c%d.name", c);
    const char *name = st_metadata(s, k);
    int dq = dqs && dqs[0] == '1';
    snprintf(k, sizeof k, "%sx", p);
    const st_tensor *x = need(s, k);
    size_t n = (size_t)x->shape[0] * (size_t)x->shape[1];
    dtype xt = x->dtype == ST_BF16 ? DTYPE_BF16 : DTYPE_F32;
    nf4_tensor want = fixture_tensor(s, p, dq);
    char what[96];

    // Quantise.
    nf4_tensor got = alloc_tensor(n, dq);
    int rc = nf4_quantize(&got, x->data, xt, n, err, sizeof err);
    CHECK(rc == 0, "%s: quantise: %s", name, err);
    snprintf(what, sizeof what, "%s (%zu, %s, %s) packed", name, n, dtype_name(xt), dq ? "double" : "plain");
    check_bytes(what, got.packed, want.packed, want.packed_bytes, 1);
    if (dq) {
        snprintf(what, sizeof what, "%s offset", name);
        check_bytes(what, &got.offset, &want.offset, 1, 4);
        snprintf(what, sizeof what, "%s qabsmax", name);
        check_bytes(what, got.qabsmax, want.qabsmax, want.n_qabsmax, 1);
        snprintf(what, sizeof what, "%s nested_absmax", name);
        check_bytes(what, got.nested_absmax, want.nested_absmax, want.n_nested, 4);
    } else {
        snprintf(what, sizeof what, "%s absmax", name);
        check_bytes(what, got.absmax, want.absmax, want.n_absmax, 4);
    }
    free_tensor(&got);

    // Dequantise bitsandbytes' own codes.
    float *f = xmalloc(n * 4);
    uint16_t *h = xmalloc(n * 2);
    CHECK(nf4_dequantize_host(f, DTYPE_F32, &want, n, err, sizeof err) == 0, "%s", err);
    CHECK(nf4_dequantize_host(h, DTYPE_BF16, &want, n, err, sizeof err) == 0, "%s", err);
    snprintf(k, sizeof k, "%sdq_f32", p);
    snprintf(what, sizeof what, "%s dequantise f32", name);
    check_bytes(what, f, need(s, k)->data, n, 4);
    snprintf(k, sizeof k, "%sdq_bf16", p);
    snprintf(what, sizeof what, "%s dequantise bf16", name);
    check_bytes(what, h, need(s, k)->data, n, 2);

    // The CPU op: the same bits.
    backend *cpu = backend_cpu(1);
    float *o = xmalloc(n * 4);
    cpu->nf4_dequantize(cpu, o, &want, (int)x->shape[0], (int)x->shape[1]);
    snprintf(what, sizeof what, "%s cpu nf4_dequantize", name);
    check_bytes(what, o, f, n, 4);
    cpu->destroy(cpu);
    free(o), free(f), free(h);
}

// Quantising a tensor of many blocks (the threaded path, > 4096 blocks) gives the bits that
// quantising each block alone (one thread) gives: plain absmax, 5000 blocks and a partial one.
static void test_blocks_independent(void) {
    const size_t n = 64 * 5000 + 37;
    float *x = xmalloc(n * 4);
    uint64_t st = 19;
    for (size_t i = 0; i < n; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(st >> 40) / 16777216.0f - 0.5f) * (float)(1 + (i / 64) % 7);
    }
    char err[256] = "";
    nf4_tensor all = alloc_tensor(n, 0);
    CHECK(nf4_quantize(&all, x, DTYPE_F32, n, err, sizeof err) == 0, "%s", err);
    size_t bad = 0, first = 0;
    for (size_t b = 0; b * 64 < n; b++) {
        size_t m = n - b * 64 < 64 ? n - b * 64 : 64;
        nf4_tensor one = alloc_tensor(m, 0);
        CHECK(nf4_quantize(&one, x + b * 64, DTYPE_F32, m, err, sizeof err) == 0, "%s", err);
        int same = memcmp(one.packed, all.packed + b * 32, one.packed_bytes) == 0 &&
                   memcmp(one.absmax, all.absmax + b, 4) == 0;
        if (!same && !bad++) first = b;
        free_tensor(&one);
    }
    CHECK(bad == 0, "quantise of %zu weights: %zu blocks differ from the block quantised alone, first %zu", n, bad,
          first);
    free_tensor(&all);
    free(x);
}

// Wrong sizes and missing buffers are refused with a message naming the field.
static void test_bad_input(void) {
    size_t n = 200;  // 4 blocks, 100 bytes
    float x[200] = {0};
    char err[256];
    nf4_tensor t = alloc_tensor(n, 0);
    t.n_absmax = 3;
    err[0] = 0;
    CHECK(nf4_quantize(&t, x, DTYPE_F32, n, err, sizeof err) == -1 && strstr(err, "absmax has 3 entries, 4 expected"),
          "short absmax: \"%s\"", err);
    t.n_absmax = 4, t.packed_bytes = 99;
    err[0] = 0;
    CHECK(nf4_dequantize_host(x, DTYPE_F32, &t, n, err, sizeof err) == -1 && strstr(err, "packed has 99 entries, 100 expected"),
          "short packed: \"%s\"", err);
    free_tensor(&t);
    t = alloc_tensor(n, 1);
    free(t.nested_absmax), t.nested_absmax = NULL;
    err[0] = 0;
    CHECK(nf4_quantize(&t, x, DTYPE_BF16, n, err, sizeof err) == -1 && strstr(err, "nested_absmax is missing"),
          "no nested absmax: \"%s\"", err);
    err[0] = 0;
    CHECK(nf4_quantize(&t, x, DTYPE_F16, n, err, sizeof err) == -1 && strstr(err, "f32 or bf16"),
          "f16 input: \"%s\"", err);
    free_tensor(&t);
}

// nf4_linear_* against linear_* over the dequantised weight, on the CPU backend: OC spans
// several 256-row scratch blocks and ends ragged; IC is not a multiple of 64.
static void test_linear(int N, int IC, int OC, int dq, int with_bias, float scale, int acc) {
    rng_state r = {0x4e46, (uint64_t)(N * 131 + OC)};
    size_t n = (size_t)OC * IC;
    float *wsrc = xmalloc(n * 4), *x = xmalloc((size_t)N * IC * 4), *dy = xmalloc((size_t)N * OC * 4);
    float *bias = xmalloc((size_t)OC * 4), *w = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) wsrc[i] = rng_next_uniform(&r) - 0.5f;
    for (size_t i = 0; i < (size_t)N * IC; i++) x[i] = rng_next_uniform(&r) - 0.5f;
    for (size_t i = 0; i < (size_t)N * OC; i++) dy[i] = rng_next_uniform(&r) - 0.5f;
    for (int i = 0; i < OC; i++) bias[i] = rng_next_uniform(&r) - 0.5f;
    nf4_tensor t = alloc_tensor(n, dq);
    char err[256] = "";
    CHECK(nf4_quantize(&t, wsrc, DTYPE_F32, n, err, sizeof err) == 0, "%s", err);
    CHECK(nf4_dequantize_host(w, DTYPE_F32, &t, n, err, sizeof err) == 0, "%s", err);
    backend *cpu = backend_cpu(0);
    float *y0 = xmalloc((size_t)N * OC * 4), *y1 = xmalloc((size_t)N * OC * 4);
    float *d0 = xmalloc((size_t)N * IC * 4), *d1 = xmalloc((size_t)N * IC * 4);
    for (size_t i = 0; i < (size_t)N * OC; i++) y0[i] = y1[i] = 0.25f;
    for (size_t i = 0; i < (size_t)N * IC; i++) d0[i] = d1[i] = -0.5f;
    const float *b = with_bias ? bias : NULL;
    cpu->linear_forward(cpu, y0, x, w, b, N, IC, OC, scale, acc);
    cpu->nf4_linear_forward(cpu, y1, x, &t, b, N, IC, OC, scale, acc, NULL);
    cpu->linear_backward(cpu, d0, NULL, NULL, dy, x, w, N, IC, OC, scale, acc);
    cpu->nf4_linear_backward(cpu, d1, dy, &t, N, IC, OC, scale, acc, NULL);
    double ef = rel_error(y1, y0, (size_t)N * OC), eb = rel_error(d1, d0, (size_t)N * IC);
    // The same f32 weights and the same GEMM: only the backward's sum over OC is split at the
    // 256-row blocks, so 1e-6 bounds f32 reassociation over a few hundred terms.
    CHECK(ef <= 1e-6, "nf4_linear_forward N=%d IC=%d OC=%d dq=%d: rel error %.3g", N, IC, OC, dq, ef);
    CHECK(eb <= 1e-6, "nf4_linear_backward N=%d IC=%d OC=%d dq=%d: rel error %.3g", N, IC, OC, dq, eb);
    printf("nf4_linear N=%d IC=%d OC=%d dq=%d bias=%d: forward %.3g, backward %.3g\n", N, IC, OC, dq,
           with_bias, ef, eb);
    cpu->destroy(cpu);
    free_tensor(&t);
    free(wsrc), free(x), free(dy), free(bias), free(w), free(y0), free(y1), free(d0), free(d1);
}

int main(void) {
    char path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/tests/fixtures/nf4/reference.safetensors",
             test_env("QUARRY_SOURCE_DIR", "."));
    st_set *s = st_open(path, err, sizeof err);
    if (!s) {
        fprintf(stderr, "FAIL: %s\n", err);
        return 1;
    }
    test_maps(s);
    const char *cases = st_metadata(s, "cases");
    int nc = cases ? atoi(cases) : 0;
    CHECK(nc >= 9, "fixture lists %d cases", nc);
    for (int c = 0; c < nc; c++) test_case(s, c);
    st_close(s);
    test_bad_input();
    test_blocks_independent();
    test_linear(37, 131, 600, 1, 1, 1.0f, 0);
    test_linear(5, 64, 70, 0, 0, 0.5f, 1);
    test_linear(19, 200, 257, 0, 1, 2.0f, 1);
    return test_finish("test_nf4");
}
