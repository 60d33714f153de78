// tests/model/test_model_fidelity.c — quarry's decoder on the CPU backend against transformers
// + PEFT (tests/fixtures/<name>/, written by scripts/reference/make_fixtures.py): logits,
// loss, every gradient (with each --recompute mode: none, selective, full), 10 AdamW steps of full
// fine-tuning and of LoRA (losses and final weights), and greedy continuation.
#include "test.h"
#include "fixture.h"
#include "clamp_pin.h"
#include "route_pin.h"

// The bounds for the CPU backend (fp32). With the argument "cuda" the same checks run on
// the CUDA backend (bf16 activations and frozen weights, f32 masters) under bf16 bounds: the
// issue's 1e-2 for the loss and 2e-2 for the 10-step loss trajectories. Final weights after 10
// AdamW steps get 1e-1: Adam divides each gradient by its own running RMS, so elements whose
// gradient is near zero (LoRA B starts at zero; Qwen2's k biases) take full-size steps in
// whatever direction bf16 rounding gives them. Measured on an H200 (2026-11-26): worst 6.8e-2
// (a lora_B), full fine-tuning 3.0e-2, while every loss tracked the reference within 1e-3.
static double LOGITS_TOL = 1e-5, LOSS_TOL = 1e-5, GRAD_TOL = 1e-4, STEP_TOL = 1e-4, WEIGHT_TOL = 1e-4;
// Attention sinks' gradients (gpt-oss) under bf16: dsinks[h] = −Σ_rows p_sink·(dO·O) is a sum
// whose terms are 14–113 times its value on the gpt_oss fixture's layer 1 (9–16 on layer 0), so
// the rounding of the op's own bf16 inputs O and dO alone moves it by 3.0 % (layer 0: 0.30 %),
// against 0.2 % for o_proj's weight gradient from the same tensors (transformers fp32, measured
// 2026-12-06; dev/cuda/README.md "gpt-oss under bf16"). Their bound is twice GRAD_TOL on CUDA.
static double SINK_GRAD_TOL = 1e-4;
static int on_cuda = 0;
// Sparse MoE under bf16: transformers' bf16 models compute the router logits in bf16 too (F.linear
// in the model dtype, softmax in f32), as the CUDA path does; but the bf16 residual stream moves
// the logits by up to ~0.1 while some fp32 top-k margins are ~1e-3, so a near-tie can flip and
// send a token to another expert (qwen3_moe: one row of 128, experts 14-26 % off).  On CUDA the
// gradient check first runs batch 0 on the fp32 CPU backend and pins the bf16 path's near-ties to
// its choice (route_pin.h: only rows whose fp32 margin is within 2x the row's bf16 logit
// deviation; any other disagreement fails as a bug), then holds the gradients to the same bounds.
static backend *cpu_reference;

typedef struct {
    int B, T;
    fixture_batch batch[2];
    double loss, full_losses[10], lora_losses[10];
    double aux;               // sparse MoE: transformers' aux_loss of batch 0 (−1 when none)
    double aux_coef;          // its weight in the loss (0: reported, not trained on)
    unsigned lora_targets;    // what the LoRA run adapts (all-linear; the MoE fixtures: q,k,v,o)
    char base[64];            // LoRA-only fixtures (reference.json "base"): the base fixture's name;
                              // their logits, loss and gradients are of the LoRA model at lora_init
    int prompt[16], nprompt, greedy[16], ngreedy;
    st_set *ref;
} fixture;

static int load_fixture(const char *dir, fixture *fx) {
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/reference.json", dir);
    char *text = fixture_read_text(path);
    if (!text) { fprintf(stderr, "FAIL cannot read %s\n", path); return -1; }
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) { fprintf(stderr, "FAIL %s is not JSON\n", path); return -1; }
    int bad = 0;
    for (int b = 0; b < 2; b++) bad |= fixture_read_batch(j, b, &fx->batch[b]);
    fx->B = fx->batch[0].B;
    fx->T = fx->batch[0].T;
    fx->loss = cJSON_GetObjectItem(j, "loss")->valuedouble;
    const cJSON *aux = cJSON_GetObjectItem(j, "aux_loss");
    const cJSON *coef = cJSON_GetObjectItem(j, "aux_coef");   // aux_loss is in the loss when > 0
    fx->aux = cJSON_IsNumber(aux) ? aux->valuedouble : -1;
    fx->aux_coef = cJSON_IsNumber(coef) ? coef->valuedouble : 0;
    const cJSON *lt = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "lora"), "targets");
    char terr[256];
    bad |= !cJSON_IsString(lt) || lora_targets_parse(lt->valuestring, &fx->lora_targets, terr, sizeof terr) != 0;
    const cJSON *base = cJSON_GetObjectItem(j, "base");
    if (cJSON_IsString(base)) snprintf(fx->base, sizeof fx->base, "%s", base->valuestring);
    bad |= !fx->base[0] && fixture_read_doubles(cJSON_GetObjectItem(j, "full_losses"), fx->full_losses, 10);
    bad |= fixture_read_doubles(cJSON_GetObjectItem(j, "lora_losses"), fx->lora_losses, 10);
    const cJSON *g = cJSON_GetObjectItem(j, "greedy");
    const cJSON *pr = cJSON_GetObjectItem(g, "prompt"), *nt = cJSON_GetObjectItem(g, "new_tokens");
    fx->nprompt = cJSON_GetArraySize(pr);
    fx->ngreedy = cJSON_GetArraySize(nt);
    bad |= fx->nprompt > 16 || fx->ngreedy > 16 || (!fx->base[0] && (fixture_read_ints(pr, fx->prompt, fx->nprompt) ||
                                                                   fixture_read_ints(nt, fx->greedy, fx->ngreedy)));
    cJSON_Delete(j);
    if (bad) { fprintf(stderr, "FAIL %s: malformed fixture\n", path); return -1; }
    snprintf(path, sizeof path, "%s/reference.safetensors", dir);
    fx->ref = st_open(path, err, sizeof err);
    if (!fx->ref) { fprintf(stderr, "FAIL %s\n", err); return -1; }
    return 0;
}

static void free_fixture(fixture *fx) {
    for (int b = 0; b < 2; b++) fixture_batch_free(&fx->batch[b]);
    if (fx->ref) st_close(fx->ref);
}

static model *open_model(const char *dir, backend *be, const fixture *fx, model_train_mode mode,
                         model_recompute checkpoint, const lora_config *lc) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    if (!m) { fprintf(stderr, "FAIL model_open: %s\n", err); return NULL; }
    if (lc && model_enable_lora(m, lc, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL model_enable_lora: %s\n", err);
        model_free(m);
        return NULL;
    }
    model_options opt = {.batch_size = fx->B, .seq_len = fx->T, .train = mode, .checkpoint = checkpoint};
    model_memory plan;
    if (model_plan(m, &opt, &plan, err, sizeof err) != 0 || model_allocate(m, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL plan/allocate: %s\n", err);
        model_free(m);
        return NULL;
    }
    return m;
}

static double rel_scalar(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

static backend *the_backend;

static void m_copy_grad(model *m, const model_param *p, float *host) {
    (void)m;
    the_backend->copy_to_host(the_backend, host, p->grad, p->n * 4);
    the_backend->synchronize(the_backend);
}

// Compares every trained tensor (master, or gradient when grads) with reference prefix/name.
static void compare_trained(model *m, const fixture *fx, const char *name, const char *prefix,
                            int grads, double tol) {
    double worst_e = 0;
    const char *worst_name = "";
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        char key[256];
        snprintf(key, sizeof key, "%s/%s", prefix, p->name);
        float *want = fixture_ref_trained(m, fx->ref, prefix, p);
        float *got = malloc(p->n * 4);
        CHECK(want && got, "%s: reference %s", name, key);
        if (!want || !got) { free(want); free(got); continue; }
        if (grads) m_copy_grad(m, p, got);
        else model_param_read(m, p, got);
        double e = rel_error(got, want, p->n), t = tol;
        size_t len = strlen(p->name);
        if (grads && len > 6 && strcmp(p->name + len - 6, ".sinks") == 0) t = fmax(tol, SINK_GRAD_TOL);
        if (e > worst_e) { worst_e = e; worst_name = p->name; }
        size_t worst = 0;
        for (size_t k = 1; k < p->n; k++)
            if (fabsf(got[k] - want[k]) > fabsf(got[worst] - want[worst])) worst = k;
        CHECK(e <= t, "%s %s: relative error %.3g > %.0e (worst [%zu]: quarry %.8g, reference %.8g)",
              name, key, e, t, worst, (double)got[worst], (double)want[worst]);
        free(want);
        free(got);
    }
    printf("%s %s: worst relative error %.2e (%s)\n", name, prefix, worst_e, worst_name);
}

static lora_config fixture_lora(const fixture *fx) {
    lora_config lc = lora_config_default();
    lc.rank = 8;
    lc.alpha = 16.0f;
    lc.dropout = 0.0f;
    lc.targets = fx->lora_targets;
    return lc;
}

// PEFT's A (and, in the LoRA-only fixtures, B) are drawn by torch's generator: start from the
// same values. Every PEFT tensor must have its quarry twin.
static void write_lora_init(model *m, const fixture *fx, const char *name) {
    int refs, count = fixture_write_lora_init(m, fx->ref, &refs);
    CHECK(count == model_trained_count(m), "%s: %d of %d LoRA tensors from lora_init/", name, count,
          model_trained_count(m));
    CHECK(count == refs, "%s: quarry has %d LoRA tensors, PEFT %d", name, count, refs);
}

// The model check_forward_backward checks: full fine-tuning, or for a LoRA-only fixture (fx->base)
// LoRA from PEFT's initial adapters. NULL after a failed CHECK.
static model *open_checked(const char *dir, const char *name, backend *be, const fixture *fx,
                           model_recompute checkpoint) {
    lora_config lc = fixture_lora(fx);
    model *m = open_model(dir, be, fx, fx->base[0] ? MODEL_TRAIN_LORA : MODEL_TRAIN_FULL, checkpoint,
                          fx->base[0] ? &lc : NULL);
    CHECK(m != NULL, "%s: open", name);
    if (m && fx->base[0]) write_lora_init(m, fx, name);
    return m;
}

// The two pins (route_pin.h, clamp_pin.h) share one life: reset, record the fp32 twin's forward,
// then pin the bf16 path against it.
static void pins_reset(void) {
    route_pin_reset();
    clamp_pin_reset();
}

static void pins_record(int on) {
    route_pin.recording = clamp_pin.recording = on;
    if (on) return;
    route_pin.ref = route_pin.calls;
    route_pin.nref = route_pin.n;
    clamp_pin.ref = clamp_pin.calls;
    clamp_pin.nref = clamp_pin.n;
}

// On CUDA, a sparse model's batch 0 through the fp32 CPU backend: its routing, recorded for
// route_pin to pin the bf16 path's near-ties against.
static void record_fp32_routing(const char *dir, const char *name, const fixture *fx) {
    pins_reset();
    if (!on_cuda) return;
    model *m = open_checked(dir, name, cpu_reference, fx, MODEL_RECOMPUTE_NONE);
    if (!m) return;
    if (model_get_config(m)->n_experts > 0) {
        model_batch b = fixture_model_batch(&fx->batch[0]);
        model_loss loss;
        clamp_pin.row = model_get_config(m)->moe_intermediate_size;
        pins_record(1);
        CHECK(model_forward(m, &b, 1.0f, &loss) == 0, "fp32 routing: %s", model_error(m));
        pins_record(0);
    }
    model_free(m);
}

// Full fine-tuning's gradients of every parameter; for a LoRA-only fixture (fx->base) those of
// every adapter, from lora_init.
static void check_forward_backward(const char *dir, const char *name, backend *be, const fixture *fx,
                                   model_recompute checkpoint) {
    record_fp32_routing(dir, name, fx);
    model *m = open_checked(dir, name, be, fx, checkpoint);
    if (!m) return;
    const model_config *c = model_get_config(m);
    model_batch b = fixture_model_batch(&fx->batch[0]);
    model_loss loss;
    int64_t n = fixture_trained_tokens(&fx->batch[0]);
    CHECK(model_forward(m, &b, 1.0f / (float)n, &loss) == 0, "%s: forward: %s", name, model_error(m));
    CHECK(loss.tokens == n, "%s: %lld trained tokens, want %lld", name, (long long)loss.tokens, (long long)n);
    double l = loss.sum / (double)loss.tokens + loss.aux_coef * loss.aux;
    CHECK(rel_scalar(l, fx->loss) <= LOSS_TOL, "%s: loss %.9g, transformers %.9g", name, l, fx->loss);
    CHECK(fabs(loss.aux_coef - fx->aux_coef) < 1e-7, "%s: aux coefficient %g, transformers %g", name, loss.aux_coef,
          fx->aux_coef);
    if (fx->aux >= 0) {
        CHECK(rel_scalar(loss.aux, fx->aux) <= LOSS_TOL, "%s: aux loss %.9g (coef %g), "
              "transformers %.9g", name, loss.aux, loss.aux_coef, fx->aux);
        if (!checkpoint) printf("%s: aux loss %.7f (ref %.7f)\n", name, loss.aux, fx->aux);
    }
    if (!checkpoint) {
        size_t N = (size_t)fx->B * (size_t)fx->T, V = (size_t)c->vocab_size;
        float *logits = malloc(N * V * 4);
        for (size_t r = 0; r < N; r++) model_logits_row(m, (int)r, logits + r * V);
        float *want = fixture_ref_tensor(fx->ref, "logits", N * V);
        if (want) {
            double e = rel_error(logits, want, N * V);
            CHECK(e <= LOGITS_TOL, "%s: logits relative error %.3g > %.0e", name, e, LOGITS_TOL);
            printf("%s: loss %.7f (ref %.7f), logits rel error %.2e\n", name, l, fx->loss, e);
        }
        free(want);
        free(logits);
    }
    CHECK(model_backward(m) == 0, "%s: backward: %s", name, model_error(m));
    char label[96];
    snprintf(label, sizeof label, "%s (recompute %s)", name, model_recompute_name(checkpoint));
    compare_trained(m, fx, label, "grad", 1, GRAD_TOL);
    if (route_pin.nref > 0) {
        CHECK(route_pin.clear_flips == 0, "%s: %ld routing choices differ from fp32 at margins bf16 "
              "rounding cannot bridge", label, route_pin.clear_flips);
        // Rows are counted per router call: recomputation routes its layers again.
        printf("%s: routing: %ld routed rows, %ld near-ties pinned to fp32's choice, %ld clear flips "
               "(smallest fp32 margin %.4f)\n", label, route_pin.rows, route_pin.pinned,
               route_pin.clear_flips, route_pin.min_margin);
    }
    if (clamp_pin.nref > 0) {
        CHECK(clamp_pin.clear_flips == 0, "%s: %ld clamped SwiGLU decisions differ from fp32 beyond bf16 "
              "rounding", label, clamp_pin.clear_flips);
        printf("%s: clamped SwiGLU: %ld elements, %ld near-limit decisions pinned to fp32's, %ld clear flips "
               "(calls matched within %.3g; largest margin/row deviation pinned %.2f)\n", label, clamp_pin.elems,
               clamp_pin.pinned, clamp_pin.clear_flips, clamp_pin.worst_match, clamp_pin.worst_ratio);
    }
    pins_reset();
    model_free(m);
}

static void adamw_step(model *m, backend *be, int step) {
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        be->adamw_update(be, p->master, p->act == (void *)p->master ? NULL : p->act, p->grad, p->m,
                         p->v, p->n, 1e-3f, 0.9f, 0.999f, 1e-8f, p->weight_decay ? 0.01f : 0.0f,
                         step, 1.0f);
    }
}

// A model for the 10-step run (LoRA: PEFT's initial adapters), NULL after a failed CHECK.
static model *open_training(const char *dir, const char *name, backend *be, const fixture *fx, int lora) {
    lora_config lc = fixture_lora(fx);
    model *m = open_model(dir, be, fx, lora ? MODEL_TRAIN_LORA : MODEL_TRAIN_FULL, lora, lora ? &lc : NULL);
    CHECK(m != NULL, "%s: open", name);
    if (m && lora) write_lora_init(m, fx, name);
    return m;
}

static void check_training(const char *dir, const char *name, backend *be, const fixture *fx, int lora) {
    model *m = open_training(dir, name, be, fx, lora);
    if (!m) return;
    const char *what = lora ? "lora" : "full";
    // On CUDA a sparse model trains beside its fp32 CPU twin, whose routing of each step pins the
    // bf16 path's near-ties (route_pin.h).
    model *twin = on_cuda && model_get_config(m)->n_experts > 0 ? open_training(dir, name, cpu_reference, fx, lora)
                                                                 : NULL;
    long rows = 0, pinned = 0, clear_flips = 0, celems = 0, cpinned = 0, cflips = 0;
    if (twin) clamp_pin.row = model_get_config(m)->moe_intermediate_size;
    const double *want = lora ? fx->lora_losses : fx->full_losses;
    double first = 0;
    for (int step = 0; step < 10; step++) {
        int bi = step % 2;
        model_batch b = fixture_model_batch(&fx->batch[bi]);
        model_loss loss, twin_loss;
        float scale = 1.0f / (float)fixture_trained_tokens(&fx->batch[bi]);
        if (twin) {
            pins_reset();
            model_zero_grads(twin);
            pins_record(1);
            CHECK(model_forward(twin, &b, scale, &twin_loss) == 0, "%s %s twin: %s", name, what, model_error(twin));
            pins_record(0);
        }
        model_zero_grads(m);
        if (model_forward(m, &b, scale, &loss) != 0 || model_backward(m) != 0) {
            CHECK(0, "%s %s step %d: %s", name, what, step, model_error(m));
            break;
        }
        if (twin) {
            rows += route_pin.rows;
            pinned += route_pin.pinned;
            clear_flips += route_pin.clear_flips;
            celems += clamp_pin.elems;
            cpinned += clamp_pin.pinned;
            cflips += clamp_pin.clear_flips;
            pins_reset();
            CHECK(model_backward(twin) == 0, "%s %s twin: %s", name, what, model_error(twin));
            adamw_step(twin, cpu_reference, step + 1);
        }
        double l = loss.sum / (double)loss.tokens + loss.aux_coef * loss.aux;
        CHECK(rel_scalar(l, want[step]) <= STEP_TOL, "%s %s step %d: loss %.8g, reference %.8g", name,
              what, step, l, want[step]);
        if (step == 0) first = l;
        if (step == 9) printf("%s %s: loss %.6f -> %.6f (ref %.6f -> %.6f)\n", name, what, first, l,
                              want[0], want[9]);
        adamw_step(m, be, step + 1);
    }
    if (twin) {
        CHECK(clear_flips == 0, "%s %s: %ld routing choices differ from fp32 at margins bf16 rounding cannot "
              "bridge", name, what, clear_flips);
        printf("%s %s: routing over 10 steps: %ld routed rows, %ld near-ties pinned to fp32's choice, %ld clear flips\n",
               name, what, rows, pinned, clear_flips);
        if (celems > 0) {
            CHECK(cflips == 0, "%s %s: %ld clamped SwiGLU decisions differ from fp32 beyond bf16 rounding", name,
                  what, cflips);
            printf("%s %s: clamped SwiGLU over 10 steps: %ld elements, %ld near-limit decisions pinned, %ld clear "
                   "flips\n", name, what, celems, cpinned, cflips);
        }
        model_free(twin);
    }
    compare_trained(m, fx, name, lora ? "lora_final" : "full", 0, WEIGHT_TOL);
    model_free(m);
}

// Forward-only models decode with a KV cache; a checkpointed training model recomputes the
// prefix for every token. Both must give transformers' continuation.
static void check_greedy(const char *dir, const char *name, backend *be, const fixture *fx, int cached) {
    model *m = open_model(dir, be, fx, cached ? MODEL_TRAIN_NONE : MODEL_TRAIN_FULL, !cached, NULL);
    CHECK(m != NULL, "%s: open", name);
    if (!m) return;
    int32_t prompt[16], out[16];
    for (int i = 0; i < fx->nprompt; i++) prompt[i] = fx->prompt[i];
    int n = model_generate_greedy(m, prompt, fx->nprompt, fx->ngreedy, -1, out);
    CHECK(n == fx->ngreedy, "%s: generated %d tokens, want %d (%s)", name, n, fx->ngreedy, model_error(m));
    int same = n == fx->ngreedy;
    for (int i = 0; same && i < n; i++) same = out[i] == fx->greedy[i];
    if (!same && on_cuda) {
        // bf16 can flip a near tie of a random tiny model: reported, not failed.
        printf("%s greedy (%s) differs from transformers under bf16\n", name, cached ? "KV cache" : "recomputed");
    } else if (!same) {
        fprintf(stderr, "FAIL %s greedy continuation (%s)\n  quarry:", name, cached ? "KV cache" : "recomputed");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", out[i]);
        fprintf(stderr, "\n  hf:    ");
        for (int i = 0; i < fx->ngreedy; i++) fprintf(stderr, " %d", fx->greedy[i]);
        fprintf(stderr, "\n");
        test_failures++;
    }
    model_free(m);
}

int main(int argc, char **argv) {
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    // *_lora_experts: LoRA on the experts (and mixtral's router) against transformers 4.51.3 + PEFT,
    // over the base fixture their reference.json names; gpt_oss_lora_experts: on gpt-oss's fused
    // experts and its router against transformers 5.24 + PEFT's target_parameters (its tensors in
    // PEFT's fused layout, read through model/lora_peft.h).
    const char *names[] = {"llama3_gqa", "llama32_tied", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral",
                           "qwen3_moe_lora_experts", "mixtral_lora_experts", "gpt_oss", "gpt_oss_lora_experts"};
    backend *be = NULL;
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) {
        char err[256];
        be = backend_cuda(0, err, sizeof err);
        if (!be) SKIP("no CUDA device (%s)", err);
        on_cuda = 1;
        cpu_reference = backend_cpu(0);
        if (!cpu_reference) { fprintf(stderr, "FAIL no cpu backend\n"); return 1; }
        route_pin_install(cpu_reference);
        route_pin_install(be);
        clamp_pin_install(cpu_reference);
        clamp_pin_install(be);
        LOGITS_TOL = 3e-2;
        LOSS_TOL = 1e-2;
        GRAD_TOL = 5e-2;
        SINK_GRAD_TOL = 1e-1;
        STEP_TOL = 2e-2;
        WEIGHT_TOL = 1e-1;
    } else {
        be = backend_cpu(0);
    }
    if (!be) { fprintf(stderr, "FAIL no backend\n"); return 1; }
    the_backend = be;
    printf("backend %s\n", be->name);
    // argv[2]: one fixture only (for slow backends such as dev/cuda/emu's).
    const char *only = argc > 2 ? argv[2] : NULL;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (only && strcmp(only, names[k])) continue;
        char dir[900];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src, names[k]);
        fixture fx = {0};
        if (load_fixture(dir, &fx) != 0) { test_failures++; free_fixture(&fx); continue; }
        if (fx.base[0]) snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src, fx.base);
        check_forward_backward(dir, names[k], be, &fx, MODEL_RECOMPUTE_NONE);
        check_forward_backward(dir, names[k], be, &fx, MODEL_RECOMPUTE_SELECTIVE);
        check_forward_backward(dir, names[k], be, &fx, MODEL_RECOMPUTE_FULL);
        if (!fx.base[0]) check_training(dir, names[k], be, &fx, 0);
        check_training(dir, names[k], be, &fx, 1);
        if (!fx.base[0]) {
            check_greedy(dir, names[k], be, &fx, 1);
            check_greedy(dir, names[k], be, &fx, 0);
        }
        free_fixture(&fx);
    }
    pins_reset();
    if (cpu_reference) cpu_reference->destroy(cpu_reference);
    be->destroy(be);
    return test_finish("test_model_fidelity");
}
