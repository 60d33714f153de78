// tests/model/test_offload.c — long-context memory (model_options.offload, .mlp_chunk) changes
// memory, never results: on the CPU backend, two training steps (two accumulated micro-batches
// each, an SGD update between) with the saved activations offloaded to host memory, with the
// MLP in chunks of 256 rows (the CPU GEMM's k block: every weight gradient sums the same row
// blocks in the same order) and with both give bitwise the per-row losses and gradients of the
// plain run, for LoRA in every recompute mode and full fine-tuning in one, on a 6-layer tiny Llama
// (4 of its layers travel to the host and back). The plans: offload's pinned host bytes are
// exactly the offloaded layers' regions and leave the device; chunks shrink the MLP buffers by
// exactly their rows. And Llama-3.1-8B LoRA r16 at 131072 tokens on one H100 80GB, printed as
// PLANS (model_plan's allocation, not measurements), with plan_fit_memory's choice.
#include "test.h"
#include "config_llama31_8b.h"
#include "bitwise.h"
#include "model/init.h"
#include "model/plan_fit.h"
#include <unistd.h>

enum { B = 1, T = 384, N = B * T, LAYERS = 6, CHUNK = 256 };   // chunks of 256 and 128 rows

static int32_t ids[2][N], targets[2][N], pos[2][N], doc[2][N];   // two micro-batches (bitwise_batches)

// A tiny Llama of LAYERS layers with random weights in a fresh directory (examples/tiny-model's
// config with more layers).
static int make_model(char *dir, size_t n) {
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/examples/tiny-model/config.json", test_env("QUARRY_SOURCE_DIR", "."));
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "%s: cannot open", path);
    if (!f) return -1;
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    char *at = strstr(text, "\"num_hidden_layers\": 4");
    CHECK(at != NULL, "%s: num_hidden_layers 4 not found", path);
    if (!at) return -1;
    at[strlen("\"num_hidden_layers\": ")] = '0' + LAYERS;
    snprintf(dir, n, "/tmp/quarry-test-offload-XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "wb");
    CHECK(f && fwrite(text, 1, len, f) == len && fclose(f) == 0, "writing %s", path);
    model_config cfg;
    CHECK(model_config_parse(&cfg, text, path, err, sizeof err) == 0, "parse: %s", err);
    CHECK(model_init_write(&cfg, dir, 3, ST_F32, -1, (size_t)1 << 30, err, sizeof err) == 0, "init: %s", err);
    return test_failures ? -1 : 0;
}

typedef struct {
    float *losses;            // (2 steps, 2 micro-batches, N)
    float *grads;             // every trained tensor's gradient after each step, back to back
    size_t ngrad;
    model_memory plan;
} run_result;

static void free_result(run_result *r) {
    free(r->losses);
    free(r->grads);
}

static int run(const char *dir, backend *be, int lora, model_recompute rc, int offload, int chunk, run_result *out) {
    char err[512];
    memset(out, 0, sizeof *out);
    model_options opt = {.batch_size = B, .seq_len = T, .train = lora ? MODEL_TRAIN_LORA : MODEL_TRAIN_FULL,
                         .checkpoint = rc, .offload = offload, .mlp_chunk = chunk};
    // LoRA dropout 0: MLP chunks refuse dropout (below).
    model *m = bitwise_open(dir, be, lora, 0.0f, &opt, &out->plan, err, sizeof err);
    if (!m) {
        fprintf(stderr, "FAIL (%s, offload %d, chunk %d): %s\n", model_recompute_name(rc), offload, chunk, err);
        return -1;
    }
    int64_t trained = bitwise_trained(targets[0], 2 * N);
    out->ngrad = bitwise_grad_numel(m);
    out->losses = malloc(4 * N * sizeof *out->losses);
    out->grads = malloc(2 * out->ngrad * sizeof *out->grads);
    int rcode = 0;
    for (int step = 0; step < 2 && rcode == 0; step++) {
        model_zero_grads(m);
        for (int k = 0; k < 2 && rcode == 0; k++) {
            model_batch b = {.B = B, .T = T, .ids = ids[k], .targets = targets[k], .pos = pos[k], .doc_start = doc[k],
                             .dropout_seed = 1000 + (uint64_t)k};
            if (model_forward(m, &b, 1.0f / (float)trained, NULL) != 0 ||
                model_read_losses(m, out->losses + (step * 2 + k) * N) != 0 || model_backward(m) != 0) {
                fprintf(stderr, "FAIL step %d micro-batch %d: %s\n", step, k, model_error(m));
                rcode = -1;
            }
        }
        // The gradients, then a plain SGD step on the masters: the next step starts from them.
        float *g = out->grads + (size_t)step * out->ngrad;
        if (rcode == 0) bitwise_read_grads(m, be, g);
        for (int i = 0; i < model_trained_count(m) && rcode == 0; i++) {
            model_param *p = model_trained_at(m, i);
            float *w = malloc(p->n * sizeof *w);
            model_param_read(m, p, w);
            for (size_t j = 0; j < p->n; j++) w[j] -= 0.5f * g[j];
            model_param_write(m, p, w);
            free(w);
            g += p->n;
        }
    }
    be->synchronize(be);
    model_free(m);
    return rcode;
}

static size_t r64(size_t n) { return (n + 63) & ~(size_t)63; }

static void check_bitwise(const char *dir, backend *be, int lora, model_recompute rc, const model_config *c) {
    const char *what = lora ? "LoRA" : "full", *mode = model_recompute_name(rc);
    run_result ref, got;
    if (run(dir, be, lora, rc, 0, 0, &ref) != 0) { test_failures++; free_result(&ref); return; }
    double gnorm = bitwise_sumsq(ref.grads, 2 * ref.ngrad);
    CHECK(gnorm > 0 && isfinite(gnorm), "%s %s: the gradients are zero or not finite", what, mode);
    CHECK(ref.plan.host_pinned == 0 && !ref.plan.offload && !ref.plan.mlp_chunk, "the plain plan has no offload");
    const int variants[3][2] = {{1, 0}, {0, CHUNK}, {1, CHUNK}};
    for (int v = 0; v < 3; v++) {
        int off = variants[v][0], chunk = variants[v][1];
        if (run(dir, be, lora, rc, off, chunk, &got) != 0) { test_failures++; free_result(&got); continue; }
        long d = bitwise_first_diff(got.losses, ref.losses, 4 * N);
        CHECK(d < 0, "%s %s offload %d chunk %d: row loss %ld (step %ld) is %.9g, plain %.9g", what, mode, off, chunk,
              d < 0 ? 0 : d % (2 * N), d < 0 ? 0 : d / (2 * N), d < 0 ? 0.0 : (double)got.losses[d],
              d < 0 ? 0.0 : (double)ref.losses[d]);
        d = got.ngrad == ref.ngrad ? bitwise_first_diff(got.grads, ref.grads, 2 * ref.ngrad) : 0;
        CHECK(d < 0, "%s %s offload %d chunk %d: gradient element %ld is %.9g, plain %.9g", what, mode, off, chunk, d,
              d < 0 ? 0.0 : (double)got.grads[d], d < 0 ? 0.0 : (double)ref.grads[d]);
        // The plans: exactly what moved or shrank.
        const model_memory *p = &got.plan;
        size_t as = 4, C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
        CHECK(p->offload == off && p->mlp_chunk == chunk, "the plan records offload %d, chunk %d", p->offload,
              p->mlp_chunk);
        if (off) {
            CHECK(p->host_pinned == (size_t)(LAYERS - MODEL_OFFLOAD_SLOTS + 1) * p->offload_layer && p->offload_layer > 0,
                  "%s %s: pinned %zu bytes = %d layers × %zu", what, mode, p->host_pinned,
                  LAYERS - MODEL_OFFLOAD_SLOTS + 1, p->offload_layer);
            if (rc == MODEL_RECOMPUTE_FULL)
                CHECK(p->offload_layer == r64(N * C * as), "recompute full offloads the layer inputs alone");
        }
        if (!off && chunk) {
            // gate, up (and act unless already shared), dgate, dup, dact: N rows → CHUNK rows.
            size_t n_saved = rc == MODEL_RECOMPUTE_FULL ? 1 : LAYERS;   // sets holding gate and up
            size_t want = n_saved * 2 * r64(N * F * as) + (rc == MODEL_RECOMPUTE_NONE ? LAYERS : 1) * r64(N * F * as) +
                          3 * r64(N * F * as) - 6 * r64((size_t)CHUNK * F * as);
            CHECK(ref.plan.activations - p->activations == want, "%s %s: chunks save %zu bytes, want %zu", what, mode,
                  ref.plan.activations - p->activations, want);
        }
        if (off || chunk)
            CHECK(p->activations < ref.plan.activations, "%s %s: device activations %zu < plain %zu", what, mode,
                  p->activations, ref.plan.activations);
        printf("%s, recompute %-9s, offload %d, MLP chunk %3d: bitwise equal over 2 steps (%zu gradient elements); "
               "device activations %zu of %zu bytes, pinned host %zu\n", what, mode, off, chunk, ref.ngrad,
               p->activations, ref.plan.activations, p->host_pinned);
        free_result(&got);
    }
    free_result(&ref);
}

// Llama-3.1-8B LoRA r16 at 128K tokens: each plan printed with its exact bytes.
static model_memory plan_8b(model *m, model_recompute rc, int offload, int chunk, const char *label) {
    char err[512];
    model_options o = {.batch_size = 1, .seq_len = 131072, .train = MODEL_TRAIN_LORA, .checkpoint = rc,
                       .offload = offload, .mlp_chunk = chunk};
    model_memory p = {0};
    CHECK(model_plan(m, &o, &p, err, sizeof err) == 0, "%s: %s", label, err);
    printf("PLAN (model_plan's allocation, not a measurement): Llama-3.1-8B LoRA r16, seq 131072, micro-batch 1, %s\n",
           label);
    model_memory_print(&p, stdout);
    printf("  exact bytes: weights %zu, masters %zu, grads %zu, AdamW %zu, activations %zu, device total %zu, "
           "pinned host %zu (%zu per layer)\n\n", p.weights, p.masters, p.grads, p.moments, p.activations, p.total,
           p.host_pinned, p.offload_layer);
    return p;
}

static void check_8b(void) {
    model *m = open_llama31_8b();
    if (!m) return;
    char err[512];
    lora_config lc = lora_config_default();
    lc.rank = 16;
    lc.dropout = 0.0f;   // quarry train's default (--lora-dropout 0): MLP chunks refuse dropout
    CHECK(model_enable_lora(m, &lc, err, sizeof err) == 0, "LoRA: %s", err);
    const size_t h100 = (size_t)81559 << 20;   // what an H100 80GB reports
    size_t budget = plan_fit_budget(h100, h100, 1, 1);
    printf("H100 80GB: %zu bytes usable by a plan (all of its memory free, less 5%% and 256 MiB)\n\n", budget);
    model_memory sel = plan_8b(m, MODEL_RECOMPUTE_SELECTIVE, 0, 0, "recompute selective");
    model_memory full = plan_8b(m, MODEL_RECOMPUTE_FULL, 0, 0, "recompute full");
    model_memory fullc = plan_8b(m, MODEL_RECOMPUTE_FULL, 0, PLAN_MLP_CHUNK, "recompute full, MLP in chunks of 8192");
    model_memory selc = plan_8b(m, MODEL_RECOMPUTE_SELECTIVE, 0, PLAN_MLP_CHUNK, "recompute selective, MLP chunks");
    model_memory selco = plan_8b(m, MODEL_RECOMPUTE_SELECTIVE, 1, PLAN_MLP_CHUNK,
                                 "recompute selective, MLP chunks, offload");
    model_memory fullo = plan_8b(m, MODEL_RECOMPUTE_FULL, 1, 0, "recompute full, offload");
    model_memory fullco = plan_8b(m, MODEL_RECOMPUTE_FULL, 1, PLAN_MLP_CHUNK, "recompute full, MLP chunks, offload");
    CHECK(sel.total > budget && full.total > budget, "today's plans do not fit: selective %zu, full %zu > %zu",
          sel.total, full.total, budget);
    CHECK(selc.total > budget, "selective with chunks alone does not fit (%zu)", selc.total);
    CHECK(fullc.total <= budget && fullo.total <= budget && fullco.total <= budget && selco.total <= budget,
          "these fit: full+chunks %zu, full+offload %zu, full+chunks+offload %zu, selective+chunks+offload %zu",
          fullc.total, fullo.total, fullco.total, selco.total);
    CHECK(fullco.total < fullc.total && fullco.host_pinned == 30 * fullco.offload_layer &&
          fullco.offload_layer == r64((size_t)131072 * 4096 * 2), "full + offload moves the 30 layer inputs: %zu",
          fullco.host_pinned);
    // The planner's choice from each mode (auto): the cheapest step that fits.
    model_options o = {.batch_size = 1, .seq_len = 131072, .train = MODEL_TRAIN_LORA,
                       .checkpoint = MODEL_RECOMPUTE_FULL};
    char why[320];
    CHECK(plan_fit_memory(m, &o, PLAN_OFFLOAD_AUTO, budget, why, sizeof why, err, sizeof err) == 0, "%s", err);
    printf("planner, recompute full, --offload-activations auto: %s\n", why);
    CHECK(o.mlp_chunk == PLAN_MLP_CHUNK && !o.offload && strstr(why, "chunks of 8192"),
          "full: chunks alone fit, no offload (%s)", why);
    o = (model_options){.batch_size = 1, .seq_len = 131072, .train = MODEL_TRAIN_LORA,
                        .checkpoint = MODEL_RECOMPUTE_SELECTIVE};
    CHECK(plan_fit_memory(m, &o, PLAN_OFFLOAD_AUTO, budget, why, sizeof why, err, sizeof err) == 0, "%s", err);
    printf("planner, recompute selective, --offload-activations auto: %s\n", why);
    CHECK(o.mlp_chunk == PLAN_MLP_CHUNK && o.offload && strstr(why, "offloaded"), "selective: chunks and offload (%s)",
          why);
    o.offload = 0;
    CHECK(plan_fit_memory(m, &o, PLAN_OFFLOAD_OFF, budget, why, sizeof why, err, sizeof err) == 0 && !o.offload,
          "off never offloads");
    o = (model_options){.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_LORA,
                        .checkpoint = MODEL_RECOMPUTE_SELECTIVE};
    CHECK(plan_fit_memory(m, &o, PLAN_OFFLOAD_AUTO, budget, why, sizeof why, err, sizeof err) == 0 && !o.offload &&
          !o.mlp_chunk && why[0] == '\0', "2048 tokens fit as they are");
    model_free(m);
}

int main(void) {
    backend *be = backend_cpu(0);
    if (!be) { fprintf(stderr, "FAIL no backend\n"); return 1; }
    char dir[256], err[512];
    if (make_model(dir, sizeof dir) == 0) {
        model *m = model_open(dir, be, err, sizeof err);
        CHECK(m != NULL, "open %s: %s", dir, err);
        if (m) {
            model_config c = *model_get_config(m);
            bitwise_batches(2, B, T, c.vocab_size, 77, 100, 7, 3, ids[0], targets[0], pos[0], doc[0]);
            // Refusals: chunks with LoRA dropout.
            lora_config lc = lora_config_default();
            lc.dropout = 0.1f;
            model_options o = {.batch_size = B, .seq_len = T, .train = MODEL_TRAIN_LORA, .mlp_chunk = CHUNK};
            model_memory p;
            CHECK(model_enable_lora(m, &lc, err, sizeof err) == 0 && model_plan(m, &o, &p, err, sizeof err) != 0 &&
                  strstr(err, "dropout"), "chunks with LoRA dropout are refused: %s", err);
            model_free(m);
            const model_recompute modes[] = {MODEL_RECOMPUTE_NONE, MODEL_RECOMPUTE_SELECTIVE, MODEL_RECOMPUTE_FULL};
            // LoRA in every mode; full fine-tuning (the base weights' gradients too) in one.
            for (int k = 0; k < 3; k++) check_bitwise(dir, be, 1, modes[k], &c);
            check_bitwise(dir, be, 0, MODEL_RECOMPUTE_SELECTIVE, &c);
        }
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0, "removing %s", dir);
    }
    be->destroy(be);
    check_8b();
    return test_finish("test_offload");
}
