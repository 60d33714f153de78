// tests/model/test_qlora.c — QLoRA on the CPU backend against transformers + PEFT + bitsandbytes
// (tests/fixtures/qlora_llama, written by scripts/reference/make_qlora_fixtures.py): the base's
// linears quantised at load to NF4 with double quantisation, LoRA r 8 all-linear over them.
//
// Bounds. The dequantised weights must be bit-exact with bitsandbytes' dequantize_4bit (checked
// first, with memcmp): from there both sides compute in fp32 (the fixture's compute dtype) and
// differ only in summation order (quarry's blocked GEMM against torch's), as the dense fixtures
// of test_model_fidelity do, so the same bounds hold: logits and loss 1e-5, gradients, the
// 10-step losses and the final adapters 1e-4 (relative).
// Also: what QLoRA refuses (full training) and the plan's NF4 lines; NF4 experts on a Qwen3-MoE
// (tests/fixtures/qlora_qwen3_moe, check_qlora_moe) under the same bounds; the same model
// saved by transformers in bitsandbytes' 4-bit layout (tests/fixtures/qlora_llama_bnb4) read as
// it is — the same weights, logits and gradients — and such checkpoints with a tensor missing or
// of the wrong shape refused by name, as is a 4-bit checkpoint of a MoE model (not read yet).
#include "test.h"
#include "fixture.h"
#include "route_pin.h"
#include "model/config.h"

enum { STEPS = 10 };
// With the argument "cuda" the same checks run on the CUDA backend (bf16 activations and frozen
// weights: the dequantised weights are then bitsandbytes' f32 ones rounded once to bf16, exactly)
// under test_model_fidelity's bf16 bounds.
static double LOGITS_TOL = 1e-5, LOSS_TOL = 1e-5, GRAD_TOL = 1e-4, STEP_TOL = 1e-4, WEIGHT_TOL = 1e-4;
static int on_cuda = 0;
// On CUDA the MoE fixture trains beside an fp32 twin on the CPU backend whose routing pins the bf16
// path's near-ties (route_pin.h, as test_model_fidelity does): without it one token sent to another
// expert moved the attention adapters' gradients 5-13 % (emulator, 2026-12-06).
static backend *cpu_reference;

// want (n) as the act dtype rounds it: bf16 on CUDA (round to nearest even), else as it is.
static void as_act(float *want, size_t n) {
    for (size_t i = 0; on_cuda && i < n; i++) want[i] = bf16_to_f32(f32_to_bf16(want[i]));
}

typedef struct {
    int B, T;
    fixture_batch batch[2];
    double loss, losses[STEPS];
    st_set *ref;
} fixture;

static int load_fixture(const char *dir, fixture *fx) {
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    char *text = fixture_read_text(path);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) return -1;
    int bad = 0;
    for (int b = 0; b < 2; b++) bad |= fixture_read_batch(j, b, &fx->batch[b]);
    fx->B = fx->batch[0].B;
    fx->T = fx->batch[0].T;
    fx->loss = cJSON_GetObjectItem(j, "loss")->valuedouble;
    const cJSON *ls = cJSON_GetObjectItem(j, "lora_losses");
    bad |= cJSON_GetArraySize(ls) != STEPS;
    for (int i = 0; i < STEPS && !bad; i++) fx->losses[i] = cJSON_GetArrayItem(ls, i)->valuedouble;
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    fx->ref = bad ? NULL : st_open(path, err, sizeof err);
    return fx->ref ? 0 : -1;
}

static lora_config fixture_lora(void) {
    lora_config lc = lora_config_default();
    lc.rank = 8;
    lc.alpha = 16.0f;
    lc.dropout = 0.0f;
    lc.targets = LORA_ALL_LINEAR;
    return lc;
}

// The fixtures: qlora_llama (LoRA all-linear; 7 quantised linears × 2 layers) and qlora_qwen3_moe
// (LoRA on q, k, v, o; 4 attention linears + 3 × 4 experts quantised, × 2 layers).
typedef struct { unsigned targets; int quantised; } fixture_kind;
static const fixture_kind LLAMA = {LORA_ALL_LINEAR, 14}, QWEN3_MOE = {LORA_ATTENTION, 32};

// Every trained tensor (gradient when grads, else the adapter) against prefix/name.
static void compare_trained(model *m, backend *be, const fixture *fx, const char *prefix, int grads, double tol) {
    double worst = 0;
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        char key[256];
        snprintf(key, sizeof key, "%s/%s", prefix, p->name);
        float *want = fixture_ref_tensor(fx->ref, key, p->n), *got = malloc(p->n * 4);
        CHECK(want && got, "reference %s", key);
        if (want && got) {
            if (grads) {
                be->copy_to_host(be, got, p->grad, p->n * 4);
                be->synchronize(be);
            } else {
                model_param_read(m, p, got);
            }
            double e = rel_error(got, want, p->n);
            worst = e > worst ? e : worst;
            CHECK(e <= tol, "%s: relative error %.3g > %.0e", key, e, tol);
        }
        free(want);
        free(got);
    }
    printf("qlora %s: worst relative error %.2e over %d tensors\n", prefix, worst, model_trained_count(m));
}

// How many of m's NF4 weights read back as bitsandbytes dequantised them (dequant/<name>, in the act
// dtype) bit for bit; *nq = how many are NF4.  each: a failed check names every weight that differs.
static int dequant_exact(model *m, const fixture *fx, int *nq, int each) {
    int exact = 0;
    *nq = 0;
    for (int i = 0; i < model_param_count(m); i++) {
        model_param *p = model_param_at(m, i);
        if (!p->nf4) continue;
        char key[256];
        snprintf(key, sizeof key, "dequant/%s", p->name);
        float *want = fixture_ref_tensor(fx->ref, key, p->n), *got = malloc(p->n * 4);
        (*nq)++;
        if (want && got && model_param_read(m, p, got) == 0) {
            as_act(want, p->n);
            int same = memcmp(got, want, p->n * 4) == 0;
            exact += same;
            if (each) CHECK(same, "%s: dequantised weights differ from bitsandbytes'", p->name);
        }
        free(want);
        free(got);
    }
    return exact;
}

// dir's model on be with NF4 base weights and the fixture's adapters as PEFT started them (A drawn
// by torch, B random); NULL after a failed check.  plan: the model's plan, or NULL.
static model *open_qlora(const char *dir, backend *be, const fixture *fx, fixture_kind kind, model_memory *plan) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    CHECK(m != NULL, "open: %s", err);
    if (!m) return NULL;
    lora_config lc = fixture_lora();
    lc.targets = kind.targets;
    model_options opt = {.batch_size = fx->B, .seq_len = fx->T, .train = MODEL_TRAIN_LORA, .quant = MODEL_QUANT_NF4};
    model_memory p;
    if (model_enable_lora(m, &lc, err, sizeof err) || model_plan(m, &opt, plan ? plan : &p, err, sizeof err) ||
        model_allocate(m, err, sizeof err)) {
        CHECK(0, "QLoRA model: %s", err);
        model_free(m);
        return NULL;
    }
    int refs, written = fixture_write_lora_init(m, fx->ref, &refs);
    CHECK(written == model_trained_count(m), "%d of %d adapters from lora_init/", written, model_trained_count(m));
    return m;
}

// The fp32 twin's forward of batch b (its gradients zeroed first): its routing, recorded for route_pin
// to pin the bf16 path against.
static void twin_record(model *twin, const model_batch *b, float scale) {
    model_loss l;
    route_pin_reset();
    model_zero_grads(twin);
    route_pin.recording = 1;
    CHECK(model_forward(twin, b, scale, &l) == 0, "fp32 twin: %s", model_error(twin));
    route_pin.recording = 0;
    route_pin.ref = route_pin.calls;
    route_pin.nref = route_pin.n;
}

static void adamw_steps(model *m, backend *be, int step) {
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        // The act copy is the master in f32; on CUDA its bf16 copy is refreshed from the master.
        be->adamw_update(be, p->master, p->act == (void *)p->master ? NULL : p->act, p->grad, p->m, p->v, p->n,
                         1e-3f, 0.9f, 0.999f, 1e-8f, p->weight_decay ? 0.01f : 0.0f, step, 1.0f);
    }
}

static void check_qlora(const char *dir, backend *be, const fixture *fx, fixture_kind kind) {
    model_memory plan;
    model *m = open_qlora(dir, be, fx, kind, &plan);
    if (!m) return;
    CHECK(plan.nf4 > 0 && plan.quant == MODEL_QUANT_NF4, "the plan counts NF4 bytes (%zu)", plan.nf4);
    // The weights the model multiplies by are bitsandbytes' dequantised ones, bit for bit.
    int nq, exact = dequant_exact(m, fx, &nq, 1);
    CHECK(nq == kind.quantised, "%d quantised tensors, want %d", nq, kind.quantised);
    printf("qlora: %d of %d quantised weights bit-exact with bitsandbytes (NF4, double quant)\n", exact, nq);
    CHECK(model_param_find(m, "model.embed_tokens.weight")->nf4 == 0 && model_param_find(m, "lm_head.weight")->nf4 == 0,
          "embeddings and lm_head stay in the act dtype");
    const model_param *router = model_param_find(m, "model.layers.0.mlp.gate.weight");
    CHECK(!router || router->nf4 == 0, "the router stays in the act dtype");
    const model_config *c = model_get_config(m);
    model *twin = on_cuda && c->n_experts > 0 ? open_qlora(dir, cpu_reference, fx, kind, NULL) : NULL;

    model_batch b = fixture_model_batch(&fx->batch[0]);
    model_loss loss;
    int64_t n = fixture_trained_tokens(&fx->batch[0]);
    if (twin) twin_record(twin, &b, 1.0f / (float)n);
    CHECK(model_forward(m, &b, 1.0f / (float)n, &loss) == 0, "forward: %s", model_error(m));
    double l = loss.sum / (double)loss.tokens;
    CHECK(fabs(l - fx->loss) / fx->loss <= LOSS_TOL, "loss %.9g, transformers + bitsandbytes %.9g", l, fx->loss);
    size_t N = (size_t)fx->B * (size_t)fx->T, V = (size_t)c->vocab_size;
    float *logits = malloc(N * V * 4), *want = fixture_ref_tensor(fx->ref, "logits", N * V);
    for (size_t r = 0; r < N; r++) model_logits_row(m, (int)r, logits + r * V);
    if (want) {
        double e = rel_error(logits, want, N * V);
        CHECK(e <= LOGITS_TOL, "logits relative error %.3g > %.0e", e, LOGITS_TOL);
        printf("qlora: loss %.7f (ref %.7f), logits rel error %.2e\n", l, fx->loss, e);
    }
    free(logits);
    free(want);
    model_zero_grads(m);
    CHECK(model_forward(m, &b, 1.0f / (float)n, &loss) == 0 && model_backward(m) == 0, "backward: %s", model_error(m));
    compare_trained(m, be, fx, "grad", 1, GRAD_TOL);
    long rows = 0, pinned = 0, clear_flips = 0;
    if (twin) {
        printf("qlora grad: routing: %ld routed rows, %ld near-ties pinned to fp32's choice, %ld clear flips "
               "(smallest fp32 margin %.4f)\n", route_pin.rows, route_pin.pinned, route_pin.clear_flips,
               route_pin.min_margin);
        clear_flips += route_pin.clear_flips;
    }

    for (int step = 0; step < STEPS; step++) {
        int bi = step % 2;
        model_batch sb = fixture_model_batch(&fx->batch[bi]);
        float scale = 1.0f / (float)fixture_trained_tokens(&fx->batch[bi]);
        if (twin) twin_record(twin, &sb, scale);
        model_zero_grads(m);
        if (model_forward(m, &sb, scale, &loss) || model_backward(m)) {
            CHECK(0, "step %d: %s", step, model_error(m));
            break;
        }
        if (twin) {
            rows += route_pin.rows;
            pinned += route_pin.pinned;
            clear_flips += route_pin.clear_flips;
            route_pin_reset();
            CHECK(model_backward(twin) == 0, "fp32 twin: %s", model_error(twin));
            adamw_steps(twin, cpu_reference, step + 1);
        }
        double sl = loss.sum / (double)loss.tokens;
        CHECK(fabs(sl - fx->losses[step]) / fx->losses[step] <= STEP_TOL, "step %d: loss %.8g, reference %.8g",
              step, sl, fx->losses[step]);
        if (step == STEPS - 1) printf("qlora: step 10 loss %.6f (ref %.6f)\n", sl, fx->losses[step]);
        adamw_steps(m, be, step + 1);
    }
    compare_trained(m, be, fx, "lora_final", 0, WEIGHT_TOL);
    if (twin) {
        CHECK(clear_flips == 0, "%ld routing choices differ from fp32 at margins bf16 rounding cannot bridge",
              clear_flips);
        printf("qlora: routing over 10 steps: %ld routed rows, %ld near-ties pinned to fp32's choice\n", rows, pinned);
        route_pin_reset();
        model_free(twin);
    }
    model_free(m);
}

// The 4-bit checkpoint: loaded in NF4 without --quantize, the weights bnb dequantises, the same
// forward and backward as the 16-bit checkpoint quantised at load.
static void check_bnb4(const char *dir, backend *be, const fixture *fx) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    CHECK(m != NULL, "open the 4-bit checkpoint: %s", err);
    if (!m) return;
    lora_config lc = fixture_lora();
    model_options opt = {.batch_size = fx->B, .seq_len = fx->T, .train = MODEL_TRAIN_LORA,
                         .quant = MODEL_QUANT_NF4_PLAIN};
    model_memory plan;
    CHECK(model_enable_lora(m, &lc, err, sizeof err) == 0 && model_plan(m, &opt, &plan, err, sizeof err) == -1 &&
              strstr(err, "already 4-bit NF4 with double quantisation; drop --no-double-quant"),
          "--no-double-quant on a double-quantised 4-bit checkpoint refused: %s", err);
    opt.quant = MODEL_QUANT_NONE;   // from the file
    if (model_plan(m, &opt, &plan, err, sizeof err) ||
        model_allocate(m, err, sizeof err)) {
        CHECK(0, "4-bit checkpoint: %s", err);
        model_free(m);
        return;
    }
    CHECK(plan.quant == MODEL_QUANT_NF4, "a double-quantised 4-bit checkpoint plans as NF4 (%d)", plan.quant);
    int nq, exact = dequant_exact(m, fx, &nq, 0);
    CHECK(nq == 14 && exact == nq, "4-bit checkpoint: %d of %d weights as bitsandbytes dequantises them", exact, nq);
    int refs;
    fixture_write_lora_init(m, fx->ref, &refs);
    model_batch b = fixture_model_batch(&fx->batch[0]);
    model_loss loss;
    int64_t n = fixture_trained_tokens(&fx->batch[0]);
    CHECK(model_forward(m, &b, 1.0f / (float)n, &loss) == 0 && model_backward(m) == 0, "4-bit: %s", model_error(m));
    double l = loss.sum / (double)loss.tokens;
    CHECK(fabs(l - fx->loss) / fx->loss <= LOSS_TOL, "4-bit checkpoint: loss %.9g, reference %.9g", l, fx->loss);
    printf("qlora (bnb 4-bit checkpoint): %d weights bit-exact, loss %.7f (ref %.7f)\n", exact, l, fx->loss);
    compare_trained(m, be, fx, "grad", 1, GRAD_TOL);
    model_free(m);
}

// A copy of the 4-bit checkpoint in out with tensor `drop` left out, or `shrink` one element
// shorter (its first dimension). Written by hand: st_writer writes float tensors only, and the
// layout has U8 ones. 0 ok.
static int write_variant(const char *dir, const char *out, const char *drop, const char *shrink) {
    char path[1200], err[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_set *s = st_open(path, err, sizeof err);
    if (!s) return -1;
    cJSON *h = cJSON_CreateObject();
    size_t off = 0;
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        if (drop && !strcmp(t->name, drop)) continue;
        int small = shrink && !strcmp(t->name, shrink);
        size_t nb = small ? t->nbytes - t->nbytes / (size_t)t->shape[0] : t->nbytes;
        cJSON *e = cJSON_AddObjectToObject(h, t->name), *sh = cJSON_AddArrayToObject(e, "shape");
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", t->dtype_name);
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)(t->shape[d] - (small && !d))));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *json = cJSON_PrintUnformatted(h);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    FILE *f = fopen(path, "wb");
    uint64_t hl = strlen(json);
    int rc = !f || fwrite(&hl, 8, 1, f) != 1 || fwrite(json, 1, hl, f) != hl;
    for (int i = 0; !rc && i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        if (drop && !strcmp(t->name, drop)) continue;
        size_t nb = shrink && !strcmp(t->name, shrink) ? t->nbytes - t->nbytes / (size_t)t->shape[0] : t->nbytes;
        rc = fwrite(t->data, 1, nb, f) != nb;
    }
    if (f && fclose(f)) rc = 1;
    free(json);
    cJSON_Delete(h);
    st_close(s);
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/config.json'", dir, out);
    return rc || system(cmd) != 0 ? -1 : 0;
}

static void check_bnb4_bad(const char *dir, backend *be) {
    static const struct { const char *drop, *shrink, *want; } cases[] = {
        {"model.layers.1.mlp.up_proj.weight.absmax", NULL, "\"model.layers.1.mlp.up_proj.weight.absmax\" is missing"},
        {NULL, "model.layers.0.self_attn.k_proj.weight.absmax", "is U8 with 31 elements"},
        {NULL, "model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.down_proj.weight\" is U8 with 10239"},
        {"model.layers.0.self_attn.o_proj.weight.quant_state.bitsandbytes__nf4", NULL, "quant state"},
        {"model.layers.0.self_attn.q_proj.weight.nested_absmax", NULL, "nested_absmax\" is missing"},
    };
    char tmpl[] = "/tmp/quarry-qlora-bad.XXXXXX";
    char *tmp = mkdtemp(tmpl);
    CHECK(tmp != NULL, "mkdtemp");
    if (!tmp) return;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[1024] = "";
        CHECK(write_variant(dir, tmp, cases[i].drop, cases[i].shrink) == 0, "variant %zu", i);
        model *m = model_open(tmp, be, err, sizeof err);
        CHECK(!m && strstr(err, cases[i].want) && strstr(err, tmp), "variant %zu refused by name: \"%s\"", i, err);
        if (i == 0) printf("a 4-bit checkpoint without an absmax: %s\n", err);
        model_free(m);
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "cleanup");
}

// What QLoRA refuses, by name.
static void check_refusals(const char *dir, backend *be) {
    char err[512] = "";
    model *m = model_open(dir, be, err, sizeof err);
    CHECK(m != NULL, "open: %s", err);
    if (!m) return;
    model_options opt = {.batch_size = 1, .seq_len = 8, .train = MODEL_TRAIN_FULL, .quant = MODEL_QUANT_NF4};
    model_memory plan;
    CHECK(model_plan(m, &opt, &plan, err, sizeof err) == -1 && strstr(err, "--method lora"),
          "full training over NF4 refused: \"%s\"", err);
    // Plain absmax (--no-double-quant): f32 absmax, 4 bytes per 64 weights instead of ~1.
    opt.train = MODEL_TRAIN_NONE;
    model_memory dq, plain;
    CHECK(model_plan(m, &opt, &dq, err, sizeof err) == 0, "plan: %s", err);
    opt.quant = MODEL_QUANT_NF4_PLAIN;
    CHECK(model_plan(m, &opt, &plain, err, sizeof err) == 0 && plain.nf4 > dq.nf4, "plain %zu > double %zu",
          plain.nf4, dq.nf4);
    model_free(m);
}

// NF4 experts: tests/fixtures/qlora_qwen3_moe (each expert's gate, up, down quantised as
// transformers 4.x's per-expert Linear4bit; router, norms, embeddings, lm_head in the act dtype)
// under the same bounds: on the CPU the routes see the same fp32 router inputs up to summation order;
// on CUDA bf16 near-ties are pinned to the fp32 twin's routes (cpu_reference).
static void check_qlora_moe(const char *src, backend *be) {
    char dir[900];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/qlora_qwen3_moe", src);
    fixture fx = {0};
    if (load_fixture(dir, &fx) != 0) {
        CHECK(0, "cannot load the fixture %s", dir);
        return;
    }
    check_qlora(dir, be, &fx, QWEN3_MOE);
    for (int b = 0; b < 2; b++) fixture_batch_free(&fx.batch[b]);
    st_close(fx.ref);
}

// A 4-bit checkpoint of a MoE model (transformers 4.x's per-expert Linear4bit layout) is not read
// yet: refused by name at open, before its tensors are read.
static void check_bnb4_moe_refused(const char *src, backend *be) {
    char tmpl[] = "/tmp/quarry-qlora-moe4.XXXXXX", path[1200], err[1024] = "";
    char *tmp = mkdtemp(tmpl);
    CHECK(tmp != NULL, "mkdtemp");
    if (!tmp) return;
    snprintf(path, sizeof path, "%s/tests/fixtures/qlora_qwen3_moe/config.json", src);
    FILE *f = fopen(path, "rb");
    static char text[1 << 14];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[len] = 0;
    cJSON *c = cJSON_Parse(text), *q = cJSON_CreateObject();
    cJSON_AddStringToObject(q, "quant_method", "bitsandbytes");
    cJSON_AddBoolToObject(q, "load_in_4bit", 1);
    cJSON_AddStringToObject(q, "bnb_4bit_quant_type", "nf4");
    cJSON_AddBoolToObject(q, "bnb_4bit_use_double_quant", 1);
    cJSON_AddItemToObject(c, "quantization_config", q);
    char *json = cJSON_Print(c);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    f = fopen(path, "wb");
    CHECK(c && json && f && fputs(json, f) >= 0 && fclose(f) == 0, "write %s", path);
    free(json);
    cJSON_Delete(c);
    model *m = model_open(tmp, be, err, sizeof err);
    CHECK(!m && strstr(err, "mixture-of-experts") && strstr(err, "--quantize nf4"), "4-bit MoE checkpoint refused: \"%s\"",
          err);
    model_free(m);
    snprintf(path, sizeof path, "rm -rf '%s'", tmp);
    CHECK(system(path) == 0, "cleanup");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);   // progress of a long emulator run, line by line
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    char dir[900];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/qlora_llama", src);
    backend *be = NULL;
    if (argc > 1 && !strcmp(argv[1], "cuda")) {
        char err[256];
        be = backend_cuda(0, err, sizeof err);
        if (!be) SKIP("no CUDA device (%s)", err);
        on_cuda = 1;
        LOGITS_TOL = 3e-2, LOSS_TOL = 1e-2, GRAD_TOL = 5e-2, STEP_TOL = 2e-2, WEIGHT_TOL = 1e-1;
        cpu_reference = backend_cpu(0);
        route_pin_install(cpu_reference);
        route_pin_install(be);
    } else {
        be = backend_cpu(0);
    }
    printf("backend %s\n", be->name);
    if (argc > 2 && !strcmp(argv[2], "moe")) {   // `test_qlora cuda moe`: the NF4 experts alone (emulator)
        check_qlora_moe(src, be);
        be->destroy(be);
        if (cpu_reference) cpu_reference->destroy(cpu_reference);
        return test_finish("test_qlora moe");
    }
    fixture fx = {0};
    if (load_fixture(dir, &fx) != 0) {
        fprintf(stderr, "FAIL cannot load the fixture %s\n", dir);
        return 1;
    }
    check_qlora(dir, be, &fx, LLAMA);
    check_refusals(dir, be);
    char bnb[1000];
    snprintf(bnb, sizeof bnb, "%s_bnb4", dir);
    check_bnb4(bnb, be, &fx);
    check_bnb4_bad(bnb, be);
    for (int b = 0; b < 2; b++) fixture_batch_free(&fx.batch[b]);
    st_close(fx.ref);
    // On CUDA with its routing pinned to the fp32 twin's near-ties (emulator, 2026-12-06: logits
    // 1.08e-2, gradients 2.29e-2, 10 steps; docs/BENCHMARKS.md).
    check_qlora_moe(src, be);
    check_bnb4_moe_refused(src, be);
    be->destroy(be);
    if (cpu_reference) cpu_reference->destroy(cpu_reference);
    return test_finish("test_qlora");
}
