// One sparse MoE block (model/moe/block.h) against transformers: for each fixture of
// scripts/reference/make_moe_fixtures.py (Qwen3-MoE 8 experts top-2 with norm_topk_prob on and
// off, Mixtral 4 experts top-2 over two layers), the router logits and the block output
// (relative error ≤ 1e-5 in fp32), the load-balancing loss over all layers with padding rows
// masked (≤ 1e-5), and the gradients of x, the router and every expert weight for the loss
// Σ y·dy + coef·aux (≤ 1e-4).  Also: the dispatch sort is stable and groups by expert, and the
// router's refusals (jitter, k > E) are clear.  Argument: the backend (default cpu; "cuda" skips
// without a GPU and uses bf16 bounds).
#include "kernels/backend.h"
#include "model/moe/block.h"
#include "model/safetensors.h"
#include "test.h"
#include <stdint.h>

static double fwd_tol = 1e-5, bwd_tol = 1e-4;

typedef struct {
    backend *be;
    st_set *ref;
    char name[64];
} fixture;

// The reference tensor `name` as host f32 (caller frees), checked to hold n elements.
static float *ref_f32(const fixture *fx, const char *name, size_t n) {
    const st_tensor *t = st_find(fx->ref, name);
    if (!t) {
        fprintf(stderr, "FAIL %s: reference tensor %s missing\n", fx->name, name);
        exit(1);
    }
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) count *= (size_t)t->shape[d];
    float *x = malloc(n * sizeof(float) + 1);
    if (count != n || !x || st_read_f32(t, x) != 0) {
        fprintf(stderr, "FAIL %s: reference %s has %zu elements, want %zu\n", fx->name, name, count, n);
        exit(1);
    }
    return x;
}

static void *dev_alloc(backend *be, size_t bytes) {
    void *p = be->alloc(be, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FAIL alloc %zu bytes: %s\n", bytes, be->error);
        exit(1);
    }
    be->memset_zero(be, p, bytes ? bytes : 1);
    return p;
}

// A reference tensor on the device in act dtype.
static void *ref_act(const fixture *fx, const char *name, size_t n) {
    backend *be = fx->be;
    float *h = ref_f32(fx, name, n);
    float *f = dev_alloc(be, n * 4);
    be->copy_to_device(be, f, h, n * 4);
    free(h);
    if (be->act_dtype == DTYPE_F32) return f;
    void *a = dev_alloc(be, n * dtype_size(be->act_dtype));
    be->cast_f32_to_act(be, a, f, n);
    be->free(be, f);
    return a;
}

static float *act_to_host(backend *be, const void *a, size_t n) {
    float *f = dev_alloc(be, n * 4), *h = malloc(n * 4 + 1);
    be->cast_act_to_f32(be, f, a, n);
    be->copy_to_host(be, h, f, n * 4);
    be->free(be, f);
    return h;
}

static float *f32_to_host(backend *be, const float *d, size_t n) {
    float *h = malloc(n * 4 + 1);
    be->copy_to_host(be, h, d, n * 4);
    return h;
}

static void compare(const fixture *fx, const char *what, float *got, const char *ref_name, size_t n, double tol) {
    float *want = ref_f32(fx, ref_name, n);
    double e = rel_error(got, want, n);
    printf("  %-16s %-22s relative error %.3g\n", fx->name, what, e);
    CHECK(e <= tol, "%s: %s relative error %.3g > %g", fx->name, what, e, tol);
    free(want);
    free(got);
}

static int meta_int(const fixture *fx, const char *key) {
    const char *v = st_metadata(fx->ref, key);
    if (!v) {
        fprintf(stderr, "FAIL %s: metadata %s missing\n", fx->name, key);
        exit(1);
    }
    return atoi(v);
}

#define MAXL 4

static void test_fixture(backend *be, const char *dir, const char *name) {
    fixture fx = {be, NULL, ""};
    snprintf(fx.name, sizeof fx.name, "%s", name);
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s/reference.safetensors", dir, name);
    fx.ref = st_open(path, err, sizeof err);
    if (!fx.ref) {
        fprintf(stderr, "FAIL %s\n", err);
        test_failures++;
        return;
    }
    moe_dims d = {meta_int(&fx, "C"), meta_int(&fx, "I"), meta_int(&fx, "E"), meta_int(&fx, "k"),
                  meta_int(&fx, "renorm"), 0, 0, 0.0f, 0.0f};
    int N = meta_int(&fx, "N"), L = meta_int(&fx, "L"), E = d.n_experts, C = d.hidden, I = d.intermediate;
    double coef = atof(st_metadata(fx.ref, "aux_coef"));
    CHECK(moe_dims_check(&d, err, sizeof err) == 0 && L <= MAXL, "%s: dims: %s", name, err);
    size_t nx = (size_t)N * C, nwe = (size_t)E * I * C;

    // The mask as i32 on the device, and its real-row count.
    float *mf = ref_f32(&fx, "mask", N);
    int32_t *mh = malloc(N * sizeof(int32_t));
    int real = 0;
    for (int n = 0; n < N; n++) real += mh[n] = mf[n] != 0;
    int32_t *mask = dev_alloc(be, N * sizeof(int32_t));
    be->copy_to_device(be, mask, mh, N * sizeof(int32_t));

    moe_sizes sz;
    moe_block_sizes(&d, N, be->act_dtype, &sz);
    void *scratch_dev = dev_alloc(be, sz.scratch_device), *scratch_host = malloc(sz.scratch_host);
    moe_scratch t;
    moe_scratch_carve(&d, N, be->act_dtype, scratch_dev, scratch_host, &t);
    float *prob_sum = dev_alloc(be, E * 4), *count = dev_alloc(be, E * 4);

    moe_saved s[MAXL];
    void **ptrs = malloc(MOE_EXPERT_PTRS(E) * sizeof *ptrs);
    moe_weights w[MAXL] = {0};   // no adapters (experts.lora NULL), no biases (gpt-oss's variant)
    void *x[MAXL], *saved_dev[MAXL], *saved_host[MAXL];
    for (int l = 0; l < L; l++) {
        char n1[64];
#define REF(field) (snprintf(n1, sizeof n1, "l%d/%s", l, field), n1)
        saved_dev[l] = dev_alloc(be, sz.saved_device);
        saved_host[l] = malloc(sz.saved_host);
        moe_saved_carve(&d, N, be->act_dtype, saved_dev[l], saved_host[l], &s[l]);
        w[l].router = ref_act(&fx, REF("router"), (size_t)E * C);
        w[l].experts.gate = ref_act(&fx, REF("gate"), nwe);
        w[l].experts.up = ref_act(&fx, REF("up"), nwe);
        w[l].experts.down = ref_act(&fx, REF("down"), nwe);
        w[l].experts.ptrs = ptrs;
        x[l] = ref_act(&fx, REF("x"), nx);
        void *y = dev_alloc(be, nx * dtype_size(be->act_dtype));
        int rc = moe_block_forward(be, &d, &w[l], &s[l], &t, x[l], y, mask, prob_sum, count, N, err, sizeof err);
        CHECK(rc == 0, "%s: forward: %s", name, err);
        compare(&fx, REF("logits"), act_to_host(be, t.logits, (size_t)N * E), REF("logits"), (size_t)N * E, fwd_tol);
        compare(&fx, REF("y"), act_to_host(be, y, nx), REF("y"), nx, fwd_tol);
        be->free(be, y);
    }

    // The aux loss over all layers, and its gradient per expert.
    float *ps = f32_to_host(be, prob_sum, E), *cnt = f32_to_host(be, count, E), dprob_h[256];
    double aux = moe_aux_loss(ps, cnt, E, (double)L * real, coef, 1.0, dprob_h);
    float auxf = (float)aux, *want_aux = ref_f32(&fx, "aux", 1);
    double aerr = fabs(aux - want_aux[0]) / fabs(want_aux[0]);
    printf("  %-16s %-22s relative error %.3g (%.7f)\n", name, "aux loss", aerr, auxf);
    CHECK(aerr <= fwd_tol, "%s: aux loss %.8g, transformers %.8g", name, aux, want_aux[0]);
    free(want_aux); free(ps); free(cnt);
    float *dprob = dev_alloc(be, E * 4);
    be->copy_to_device(be, dprob, dprob_h, E * 4);

    for (int l = 0; l < L; l++) {
        char n1[64];
        void *dy = ref_act(&fx, REF("dy"), nx), *dx = dev_alloc(be, nx * dtype_size(be->act_dtype));
        moe_grads g = {dev_alloc(be, (size_t)E * C * 4),
                       {dev_alloc(be, nwe * 4), dev_alloc(be, nwe * 4), dev_alloc(be, nwe * 4), NULL, NULL, NULL},
                       NULL};
        // The forward again: the scratch and each layer's kept state must suffice, whatever
        // ran in between (here the other layers' forwards).
        moe_block_backward(be, &d, &w[l], &g, &s[l], &t, x[l], dy, dx, dprob, mask, N, 0);
        compare(&fx, REF("grad/x"), act_to_host(be, dx, nx), REF("grad/x"), nx, bwd_tol);
        compare(&fx, REF("grad/router"), f32_to_host(be, g.router, (size_t)E * C), REF("grad/router"), (size_t)E * C, bwd_tol);
        compare(&fx, REF("grad/gate"), f32_to_host(be, g.experts.gate, nwe), REF("grad/gate"), nwe, bwd_tol);
        compare(&fx, REF("grad/up"), f32_to_host(be, g.experts.up, nwe), REF("grad/up"), nwe, bwd_tol);
        compare(&fx, REF("grad/down"), f32_to_host(be, g.experts.down, nwe), REF("grad/down"), nwe, bwd_tol);
#undef REF
        be->free(be, dy); be->free(be, dx); be->free(be, g.router);
        be->free(be, g.experts.gate); be->free(be, g.experts.up); be->free(be, g.experts.down);
    }
    for (int l = 0; l < L; l++) {
        be->free(be, (void *)w[l].router); be->free(be, (void *)w[l].experts.gate);
        be->free(be, (void *)w[l].experts.up); be->free(be, (void *)w[l].experts.down);
        be->free(be, x[l]); be->free(be, saved_dev[l]); free(saved_host[l]);
    }
    be->free(be, scratch_dev); free(scratch_host); free(ptrs); be->free(be, prob_sum); be->free(be, count);
    be->free(be, dprob); be->free(be, mask); free(mh); free(mf);
    st_close(fx.ref);
}

// The sort groups by expert, stable in the assignment index, pos the inverse of src.
static void test_dispatch_sort(void) {
    enum { N = 5, k = 2, E = 4 };
    int32_t idx[N * k] = {3, 1, 1, 0, 3, 1, 2, 3, 0, 1}, src[N * k], pos[N * k];
    int offsets[E + 1];
    CHECK(moe_dispatch_sort(idx, N, k, E, offsets, src, pos) == 0, "dispatch sort failed");
    int want_off[E + 1] = {0, 2, 6, 7, 10}, want_src[N * k] = {3, 8, 1, 2, 5, 9, 6, 0, 4, 7};
    CHECK(!memcmp(offsets, want_off, sizeof want_off), "dispatch offsets %d %d %d %d %d", offsets[0],
          offsets[1], offsets[2], offsets[3], offsets[4]);
    CHECK(!memcmp(src, want_src, sizeof want_src), "dispatch src not the stable order");
    int bad = 0;
    for (int a = 0; a < N * k; a++) bad += src[pos[a]] != a;
    CHECK(bad == 0, "dispatch pos is not src's inverse (%d)", bad);
    idx[4] = E;
    CHECK(moe_dispatch_sort(idx, N, k, E, offsets, src, pos) == -1, "dispatch sort accepts expert %d of %d", E, E);
}

static void test_refusals(void) {
    char err[512];
    CHECK(moe_check_router_jitter(0.0, "config.json", err, sizeof err) == 0, "jitter 0 refused");
    CHECK(moe_check_router_jitter(0.01, "m/config.json", err, sizeof err) == -1 &&
              strstr(err, "m/config.json: error: router_jitter_noise = 0.01") && strstr(err, "hint:"),
          "jitter message: %s", err);
    moe_dims d = {32, 48, 4, 5, 1, 0, 0, 0.0f, 0.0f};
    CHECK(moe_dims_check(&d, err, sizeof err) == -1 && strstr(err, "num_experts_per_tok 5"),
          "k > E accepted or unclear: %s", err);
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "cpu";
    char err[256];
    backend *be = backend_open(spec, err, sizeof err);
    if (!be) {
        if (strcmp(spec, "cpu") != 0) SKIP("no %s backend: %s", spec, err);
        fprintf(stderr, "FAIL backend %s: %s\n", spec, err);
        return 1;
    }
    if (be->act_dtype != DTYPE_F32) fwd_tol = bwd_tol = 3e-2;   // bf16 storage
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures", test_env("QUARRY_SOURCE_DIR", "."));
    test_dispatch_sort();
    test_refusals();
    test_fixture(be, dir, "moe_qwen3_norm");
    test_fixture(be, dir, "moe_qwen3_nonorm");
    test_fixture(be, dir, "moe_mixtral");
    be->destroy(be);
    return test_finish("test_moe_block");
}
