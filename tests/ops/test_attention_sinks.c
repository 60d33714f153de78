// tests/ops/test_attention_sinks.c — the CPU attention op with learned sinks and sliding windows
// against transformers' gpt-oss attention (modeling_gpt_oss.eager_attention_forward under
// masking_utils' sliding-window, causal and packed-sequence masks, float64, gradients by torch
// autograd), from the fixture scripts/reference/make_attention_fixtures.py wrote
// (tests/fixtures/attention_sinks): out, lse, dq, dk, dv and dsinks on windows shorter than
// the sequence, packed documents, GQA and a query block at the end of a KV cache (Tq < Tk).
#include "kernels/backend.h"
#include "model/safetensors.h"
#include "test.h"
#include <stdint.h>

#define FWD_TOL 1e-5
#define BWD_TOL 1e-4

// The tensor c<i>/name read as f32 (or i32 bytes for doc_start), n elements expected.
static void *load(const st_set *s, int c, const char *name, size_t n) {
    char key[64];
    snprintf(key, sizeof key, "c%d/%s", c, name);
    const st_tensor *t = st_find(s, key);
    if (!t) {
        fprintf(stderr, "FAIL: fixture has no %s\n", key);
        exit(1);
    }
    void *p = malloc(n * 4 + 4);
    size_t have = 1;
    for (int d = 0; d < t->ndim; d++) have *= (size_t)t->shape[d];
    if (!p || have != n) {
        fprintf(stderr, "FAIL: %s: %zu elements, want %zu\n", key, have, n);
        exit(1);
    }
    if (!strcmp(t->dtype_name, "I32") && t->nbytes == n * 4) memcpy(p, t->data, n * 4);
    else if (st_read_f32(t, p)) {
        fprintf(stderr, "FAIL: %s: not readable as f32\n", key);
        exit(1);
    }
    return p;
}

static void test_case(backend *be, const st_set *s, int c) {
    char key[32];
    snprintf(key, sizeof key, "c%d.shape", c);
    const char *shape = st_metadata(s, key);
    int B, Tq, Tk, H, KVH, hd, window;
    if (!shape || sscanf(shape, "%d %d %d %d %d %d %d", &B, &Tq, &Tk, &H, &KVH, &hd, &window) != 7) {
        fprintf(stderr, "FAIL: fixture has no valid %s\n", key);
        exit(1);
    }
    size_t nq = (size_t)B * Tq * H * hd, nk = (size_t)B * Tk * KVH * hd, nl = (size_t)B * H * Tq;
    float *q = load(s, c, "q", nq), *k = load(s, c, "k", nk), *v = load(s, c, "v", nk);
    float *sinks = load(s, c, "sinks", (size_t)H), *R = load(s, c, "R", nq);
    int32_t *doc = load(s, c, "doc_start", (size_t)B * Tk);
    float *out_w = load(s, c, "out", nq), *lse_w = load(s, c, "lse", nl);
    float *dq_w = load(s, c, "dq", nq), *dk_w = load(s, c, "dk", nk), *dv_w = load(s, c, "dv", nk);
    float *ds_w = load(s, c, "dsinks", (size_t)H);
    float *out = malloc(nq * 4), *lse = malloc(nl * 4), *dq = malloc(nq * 4), *dk = malloc(nk * 4);
    float *dv = malloc(nk * 4), *ds = calloc((size_t)H, 4);
    if (!out || !lse || !dq || !dk || !dv || !ds) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    float scale = 1.0f / sqrtf((float)hd);
    be->attention_forward(be, out, lse, q, k, v, doc, attention_rows_packed(doc, (size_t)B * Tk), B, Tq, Tk, H, KVH, hd, scale, window, sinks);
    be->attention_backward(be, dq, dk, dv, R, out, lse, q, k, v, doc, attention_rows_packed(doc, (size_t)B * Tk), B, Tq, Tk, H, KVH, hd, scale, window,
                           sinks, ds);
    struct { const char *name; const float *got, *want; size_t n; double tol; } cmp[] = {
        {"out", out, out_w, nq, FWD_TOL}, {"lse", lse, lse_w, nl, FWD_TOL}, {"dq", dq, dq_w, nq, BWD_TOL},
        {"dk", dk, dk_w, nk, BWD_TOL},    {"dv", dv, dv_w, nk, BWD_TOL},    {"dsinks", ds, ds_w, (size_t)H, BWD_TOL},
    };
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
        double err = rel_error(cmp[i].got, cmp[i].want, cmp[i].n);
        CHECK(err <= cmp[i].tol, "case %d (B Tq Tk H KVH hd window = %s): %s vs transformers: relative error %.3g > %g",
              c, shape, cmp[i].name, err, cmp[i].tol);
    }
    free(q), free(k), free(v), free(sinks), free(R), free(doc), free(out_w), free(lse_w), free(dq_w);
    free(dk_w), free(dv_w), free(ds_w), free(out), free(lse), free(dq), free(dk), free(dv), free(ds);
}

int main(void) {
    char path[1024], err[256] = "";
    snprintf(path, sizeof path, "%s/tests/fixtures/attention_sinks/reference.safetensors",
             test_env("QUARRY_SOURCE_DIR", "."));
    st_set *s = st_open(path, err, sizeof err);
    if (!s) {
        fprintf(stderr, "FAIL: %s\n", err);
        return 1;
    }
    backend *be = backend_cpu(2);
    if (!be) {
        fprintf(stderr, "backend_cpu failed\n");
        return 1;
    }
    const char *cases = st_metadata(s, "cases");
    int nc = cases ? atoi(cases) : 0;
    CHECK(nc >= 5, "fixture lists %d cases", nc);
    for (int c = 0; c < nc; c++) test_case(be, s, c);
    be->destroy(be);
    st_close(s);
    return test_finish("test_attention_sinks");
}
