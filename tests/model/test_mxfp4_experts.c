// tests/model/test_mxfp4_experts.c — gpt-oss's experts kept in MXFP4 on the device
// (model_options.experts_mxfp4) against the same checkpoint's experts dequantised at load.
// The checkpoint is the gpt_oss fixture (tests/fixtures/gpt_oss, transformers' tiny config: 2
// layers, 4 experts, hidden 64, expert intermediate 32) with its fused experts replaced by random
// MXFP4 pairs (gate_up_proj_blocks/_scales, down_proj_blocks/_scales, as published checkpoints
// store them and tests/export/check_export_mxfp4.py makes them) and config.json's
// quantization_config mxfp4.  On the cpu backend the dequantised weights are exact and the same
// GEMM runs per expert, so with LoRA on attention and the experts (PEFT's fused gate_up adapter)
// the logits, loss, aux loss and every LoRA gradient are equal bit for bit, and model_param_read
// gives the same expert weights; `test_mxfp4_experts cuda` compares the two on a GPU within bf16
// tolerances (the grouped GEMM against the per-expert one).  Also: the plan's MXFP4 bytes and
// workspace, and what is refused (full training, --quantize nf4, a 16-bit checkpoint).
#include "test.h"
#include "fixture.h"
#include "lora_random_b.h"
#include "kernels/mxfp4_format.h"
#include "kernels/rng.h"
#include <cjson/cJSON.h>
#include <unistd.h>

static double TOL = 0.0;   // relative; 0: bit for bit (cpu)

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, n, f) == n;
    if (!f || fclose(f) != 0 || !ok) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
}

// dir/model.safetensors: every tensor of src, the fused experts as random MXFP4 pairs; dir/config.json:
// src's with quantization_config mxfp4.
static int make_checkpoint(const char *src, const char *dir) {
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    st_set *s = st_open(path, err, sizeof err);
    if (!s) {
        fprintf(stderr, "FAIL: %s\n", err);
        return -1;
    }
    int n = st_count(s), ne = 0;
    struct { char name[160]; const char *dtype; int ndim; int64_t shape[4]; const void *data; size_t nbytes; } *e =
        calloc((size_t)n * 2, sizeof *e);
    uint8_t *owned[16] = {0};
    int nowned = 0;
    rng_state r = {0x6d78, 0};
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_get(s, i);
        size_t len = strlen(t->name);
        int fused = (len > 13 && !strcmp(t->name + len - 13, ".gate_up_proj")) ||
                    (len > 10 && !strcmp(t->name + len - 10, ".down_proj"));
        if (!fused) {
            snprintf(e[ne].name, sizeof e[ne].name, "%s", t->name);
            e[ne].dtype = t->dtype_name, e[ne].ndim = t->ndim, e[ne].data = t->data, e[ne].nbytes = t->nbytes;
            for (int d = 0; d < t->ndim; d++) e[ne].shape[d] = t->shape[d];
            ne++;
            continue;
        }
        int64_t E = t->shape[0], K = t->shape[1], R = t->shape[2];   // (E, in, out): packed (E, out, in/32, 16)
        size_t nb = (size_t)(E * R * K / 2), ns = (size_t)(E * R * K / 32);
        uint8_t *b = malloc(nb), *sc = malloc(ns);
        owned[nowned++] = b, owned[nowned++] = sc;
        for (size_t k = 0; k < nb; k++) b[k] = (uint8_t)rng_next_u64(&r);
        for (size_t k = 0; k < ns; k++) sc[k] = (uint8_t)(118 + rng_next_u64(&r) % 6);   // weights up to 6·2^-4
        snprintf(e[ne].name, sizeof e[ne].name, "%s_blocks", t->name);
        e[ne].dtype = "U8", e[ne].ndim = 4, e[ne].data = b, e[ne].nbytes = nb;
        e[ne].shape[0] = E, e[ne].shape[1] = R, e[ne].shape[2] = K / 32, e[ne].shape[3] = 16;
        ne++;
        snprintf(e[ne].name, sizeof e[ne].name, "%s_scales", t->name);
        e[ne].dtype = "U8", e[ne].ndim = 3, e[ne].data = sc, e[ne].nbytes = ns;
        e[ne].shape[0] = E, e[ne].shape[1] = R, e[ne].shape[2] = K / 32;
        ne++;
    }
    size_t cap = 65536, k = 0, off = 0;
    char *hdr = malloc(cap);
    k += (size_t)snprintf(hdr + k, cap - k, "{");
    for (int i = 0; i < ne; i++) {
        k += (size_t)snprintf(hdr + k, cap - k, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", e[i].name,
                              e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++)
            k += (size_t)snprintf(hdr + k, cap - k, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
        k += (size_t)snprintf(hdr + k, cap - k, "],\"data_offsets\":[%zu,%zu]}", off, off + e[i].nbytes);
        off += e[i].nbytes;
    }
    k += (size_t)snprintf(hdr + k, cap - k, "}");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    uint64_t hl = k;
    int ok = f && fwrite(&hl, 8, 1, f) == 1 && fwrite(hdr, 1, k, f) == k;
    for (int i = 0; ok && i < ne; i++) ok = fwrite(e[i].data, 1, e[i].nbytes, f) == e[i].nbytes;
    if (!f || fclose(f) != 0 || !ok) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    free(hdr);
    free(e);
    for (int i = 0; i < nowned; i++) free(owned[i]);
    st_close(s);
    snprintf(path, sizeof path, "%s/config.json", src);
    char *text = fixture_read_text(path);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!cfg) return -1;
    cJSON *q = cJSON_AddObjectToObject(cfg, "quantization_config");
    cJSON_AddStringToObject(q, "quant_method", "mxfp4");
    char *out = cJSON_Print(cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, out, strlen(out));
    free(out);
    cJSON_Delete(cfg);
    return 0;
}

// The bytes the plan must give the MXFP4 experts: per matrix blocks n/2 and scales n/32, each
// rounded to 64 as the arena takes them.
static size_t r64(size_t n) { return (n + 63) & ~(size_t)63; }

typedef struct {
    model *m;
    model_memory plan;
    model_loss loss;
    float *logits;
} run;

static int run_one(run *x, const char *dir, backend *be, const fixture_batch *fb, int mxfp4) {
    char err[512];
    memset(x, 0, sizeof *x);
    x->m = model_open(dir, be, err, sizeof err);
    CHECK(x->m != NULL, "open: %s", err);
    if (!x->m) return -1;
    lora_config lc = lora_config_default();
    lc.rank = 4, lc.alpha = 8, lc.dropout = 0.0f, lc.targets = LORA_ALL_LINEAR;
    model_options o = {.batch_size = fb->B, .seq_len = fb->T, .train = MODEL_TRAIN_LORA, .experts_mxfp4 = mxfp4};
    if (model_enable_lora(x->m, &lc, err, sizeof err) || model_plan(x->m, &o, &x->plan, err, sizeof err) ||
        model_allocate(x->m, err, sizeof err)) {
        CHECK(0, "mxfp4 %d: %s", mxfp4, err);
        return -1;
    }
    lora_randomize_b(x->m);
    model_batch b = fixture_model_batch(fb);
    int64_t n = fixture_trained_tokens(fb);
    if (model_forward(x->m, &b, 1.0f / (float)n, &x->loss) || model_backward(x->m)) {
        CHECK(0, "mxfp4 %d: %s", mxfp4, model_error(x->m));
        return -1;
    }
    size_t N = (size_t)fb->B * fb->T, V = (size_t)model_get_config(x->m)->vocab_size;
    x->logits = malloc(N * V * 4);
    for (size_t r = 0; r < N; r++) model_logits_row(x->m, (int)r, x->logits + r * V);
    return 0;
}

static int same(const float *a, const float *b, size_t n, double *err) {
    if (TOL == 0.0) {
        *err = memcmp(a, b, n * 4) ? 1.0 : 0.0;
        return *err == 0.0;
    }
    *err = rel_error(a, b, n);
    return *err <= TOL;
}

static void check_equal(const char *dir, backend *be, const fixture_batch *fb) {
    run d, q;
    if (run_one(&d, dir, be, fb, 0) || run_one(&q, dir, be, fb, 1)) return;
    const model_config *c = model_get_config(q.m);
    size_t N = (size_t)fb->B * fb->T, V = (size_t)c->vocab_size, C = (size_t)c->hidden_size;
    size_t I = (size_t)c->moe_intermediate_size, E = (size_t)c->n_experts, L = (size_t)c->num_layers;
    double e;
    CHECK(same(q.logits, d.logits, N * V, &e), "logits with MXFP4 experts differ from the dequantised-at-load run (%.3g)",
          e);
    if (TOL == 0.0) printf("logits (%zu × %zu): %s\n", N, V, e == 0.0 ? "bit for bit" : "differ");
    else printf("logits (%zu × %zu): relative difference %.2e\n", N, V, e);
    CHECK(TOL ? fabs(q.loss.sum - d.loss.sum) <= TOL * fabs(d.loss.sum) : q.loss.sum == d.loss.sum,
          "loss %.17g vs %.17g", q.loss.sum, d.loss.sum);
    CHECK(TOL ? fabs(q.loss.aux - d.loss.aux) <= TOL * fabs(d.loss.aux) + 1e-6 : q.loss.aux == d.loss.aux,
          "aux %.17g vs %.17g", q.loss.aux, d.loss.aux);
    printf("loss %.9f, aux %.9f (dequantised at load: %.9f, %.9f)\n", q.loss.sum / q.loss.tokens, q.loss.aux,
           d.loss.sum / d.loss.tokens, d.loss.aux);
    // Every LoRA gradient, the experts' fused gate_up and down adapters included.
    int nt = model_trained_count(q.m), eq = 0, experts = 0;
    double worst = 0;
    CHECK(nt == model_trained_count(d.m) && nt > 0, "%d vs %d trained tensors", nt, model_trained_count(d.m));
    for (int i = 0; i < nt && nt == model_trained_count(d.m); i++) {
        model_param *a = model_trained_at(q.m, i), *b = model_trained_at(d.m, i);
        float *ga = malloc(a->n * 4), *gb = malloc(b->n * 4);
        be->copy_to_host(be, ga, a->grad, a->n * 4);
        be->copy_to_host(be, gb, b->grad, b->n * 4);
        be->synchronize(be);
        int ok = !strcmp(a->name, b->name) && a->n == b->n && same(ga, gb, a->n, &e);
        worst = e > worst ? e : worst;
        eq += ok;
        experts += strstr(a->name, ".experts.") != NULL;
        CHECK(ok, "gradient of %s differs (%.3g)", a->name, e);
        free(ga), free(gb);
    }
    CHECK(experts >= 2 * (int)(L * E), "expert adapters trained: %d", experts);
    printf("LoRA gradients: %d of %d tensors %s (%d in the experts' adapters)", eq, nt,
           TOL == 0.0 ? "bit for bit" : "within tolerance", experts);
    if (TOL) printf(", worst %.2e", worst);
    printf("\n");
    // The expert weights read back are the dequantised-at-load ones.
    int np = 0, ok = 0;
    for (int i = 0; i < model_param_count(q.m); i++) {
        model_param *p = model_param_at(q.m, i);
        if (!p->mxfp4) continue;
        model_param *pd = model_param_find(d.m, p->name);
        float *a = malloc(p->n * 4), *b = malloc(p->n * 4);
        np++;
        if (pd && !pd->mxfp4 && !model_param_read(q.m, p, a) && !model_param_read(d.m, pd, b))
            ok += !memcmp(a, b, p->n * 4);
        free(a), free(b);
    }
    CHECK(np == (int)(3 * L * E) && ok == np, "%d of %d MXFP4 expert matrices read back as the dequantised ones", ok,
          np);
    // The plan: the packed bytes, the workspace, and the act copies they replace.
    size_t as = dtype_size(be->act_dtype);
    size_t want = L * E * (2 * (r64(I * C / 2) + r64(I * C / 32)) + r64(C * I / 2) + r64(C * I / 32));
    CHECK(q.plan.mxfp4 == want && q.plan.experts_mxfp4 && d.plan.mxfp4 == 0, "plan MXFP4 %zu bytes, the format says %zu",
          q.plan.mxfp4, want);
    CHECK(q.plan.mxfp4_workspace == r64(I * C * as), "workspace %zu, one expert matrix is %zu", q.plan.mxfp4_workspace,
          I * C * as);
    CHECK(q.plan.weights == d.plan.weights - L * E * 3 * r64(I * C * as) + want,
          "weights %zu = %zu − the experts' act copies + MXFP4 %zu", q.plan.weights, d.plan.weights, want);
    model_memory_print(&q.plan, stdout);
    free(q.logits), free(d.logits);
    model_free(q.m), model_free(d.m);
}

static void check_refusals(const char *mx_dir, const char *dense_dir, backend *be) {
    char err[512];
    struct { const char *dir, *why, *label; model_train_mode train; model_quant quant; } cases[] = {
        {mx_dir, "full fine-tuning", "full training", MODEL_TRAIN_FULL, MODEL_QUANT_NONE},
        {mx_dir, "drop one", "with --quantize nf4", MODEL_TRAIN_LORA, MODEL_QUANT_NF4},
        {dense_dir, "not MXFP4", "a 16-bit checkpoint", MODEL_TRAIN_LORA, MODEL_QUANT_NONE},
    };
    for (int i = 0; i < 3; i++) {
        model *m = model_open(cases[i].dir, be, err, sizeof err);
        CHECK(m != NULL, "open %s: %s", cases[i].dir, err);
        if (!m) continue;
        lora_config lc = lora_config_default();
        lc.targets = LORA_ALL_LINEAR;
        model_options o = {.batch_size = 1, .seq_len = 8, .train = cases[i].train, .quant = cases[i].quant,
                           .experts_mxfp4 = 1};
        model_memory p;
        int rc = (cases[i].train == MODEL_TRAIN_LORA ? model_enable_lora(m, &lc, err, sizeof err) : 0) ||
                 model_plan(m, &o, &p, err, sizeof err);
        CHECK(rc && strstr(err, cases[i].why), "MXFP4 experts refused for %s: \"%s\"", cases[i].label, err);
        printf("refused (%s): %s\n", cases[i].label, err);
        model_free(m);
    }
}

int main(int argc, char **argv) {
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    backend *be;
    if (argc > 1 && !strcmp(argv[1], "cuda")) {
        char err[256];
        be = backend_cuda(0, err, sizeof err);
        if (!be) SKIP("no CUDA device (%s)", err);
        TOL = 2e-2;
    } else {
        be = backend_cpu(0);
    }
    char fx_dir[1024], path[1200];
    snprintf(fx_dir, sizeof fx_dir, "%s/tests/fixtures/gpt_oss", src);
    snprintf(path, sizeof path, "%s/reference.json", fx_dir);
    char *text = fixture_read_text(path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    fixture_batch fb;
    if (!root || fixture_read_batch(root, 0, &fb) != 0) {
        fprintf(stderr, "FAIL: cannot read %s\n", path);
        return 1;
    }
    char dir[] = "/tmp/quarry_mxfp4_experts_XXXXXX";
    if (!mkdtemp(dir) || make_checkpoint(fx_dir, dir) != 0) {
        fprintf(stderr, "FAIL: cannot make the MXFP4 checkpoint\n");
        return 1;
    }
    printf("backend %s\n", be->name);
    check_equal(dir, be, &fb);
    check_refusals(dir, fx_dir, be);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    fixture_batch_free(&fb);
    cJSON_Delete(root);
    be->destroy(be);
    return test_finish("test_mxfp4_experts");
}
