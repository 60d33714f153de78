// tests/model/test_model_recompute.c — activation recomputation changes memory, never results:
// on the CPU backend, training with --recompute none, selective and full gives bitwise the same
// per-row losses and gradients (the recomputed ops run on the same inputs), over two
// accumulated micro-batches, for full fine-tuning and for LoRA with dropout (whose masks the
// backward draws again), on every fixture model. And the plans order as they should:
// none > selective > full activations, selective saving exactly the per-layer ln1, ln2 and act.
// (Agreement with transformers in each mode is test_model_fidelity's.)
#include "test.h"
#include "bitwise.h"

enum { B = 2, T = 24, N = B * T };

static int32_t ids[2][N], targets[2][N], pos[2][N], doc[2][N];   // two micro-batches (bitwise_batches)

// Everything a training step produces: per-row losses of both micro-batches, every gradient.
typedef struct {
    float *losses;            // (2, N)
    double loss_sum[2];
    float *grads;             // every trained tensor's gradient, back to back
    size_t ngrad;
    size_t activations;       // the plan's bytes
} step_result;

static void free_result(step_result *r) {
    free(r->losses);
    free(r->grads);
}

static int run_step(const char *dir, backend *be, int lora, model_recompute rc, step_result *out) {
    char err[512];
    memset(out, 0, sizeof *out);
    model_options opt = {.batch_size = B, .seq_len = T, .train = lora ? MODEL_TRAIN_LORA : MODEL_TRAIN_FULL,
                         .checkpoint = rc};
    model_memory plan;
    model *m = bitwise_open(dir, be, lora, 0.1f, &opt, &plan, err, sizeof err);   // the same B in every mode
    if (!m) {
        fprintf(stderr, "FAIL %s (%s): %s\n", dir, model_recompute_name(rc), err);
        return -1;
    }
    out->activations = plan.activations;
    int64_t trained = bitwise_trained(targets[0], 2 * N);
    out->losses = malloc(2 * N * sizeof *out->losses);
    out->ngrad = bitwise_grad_numel(m);
    out->grads = malloc(out->ngrad * sizeof *out->grads);
    int rcode = 0;
    model_zero_grads(m);
    for (int k = 0; k < 2 && rcode == 0; k++) {
        model_batch b = {.B = B, .T = T, .ids = ids[k], .targets = targets[k], .pos = pos[k], .doc_start = doc[k],
                         .dropout_seed = 1000 + (uint64_t)k};
        model_loss l;
        if (model_forward(m, &b, 1.0f / (float)trained, &l) != 0 || model_read_losses(m, out->losses + k * N) != 0 ||
            model_backward(m) != 0) {
            fprintf(stderr, "FAIL %s (%s) micro-batch %d: %s\n", dir, model_recompute_name(rc), k, model_error(m));
            rcode = -1;
        }
        out->loss_sum[k] = l.sum;
    }
    if (rcode == 0) bitwise_read_grads(m, be, out->grads);
    be->synchronize(be);
    model_free(m);
    return rcode;
}

static void check_bitwise(const char *dir, const char *name, backend *be, int lora) {
    const char *what = lora ? "LoRA (dropout 0.1)" : "full";
    step_result ref, got;
    if (run_step(dir, be, lora, MODEL_RECOMPUTE_NONE, &ref) != 0) { test_failures++; free_result(&ref); return; }
    double gnorm = bitwise_sumsq(ref.grads, ref.ngrad);
    CHECK(gnorm > 0 && isfinite(gnorm), "%s %s: the gradients are zero or not finite", name, what);
    const model_recompute modes[] = {MODEL_RECOMPUTE_SELECTIVE, MODEL_RECOMPUTE_FULL};
    for (int k = 0; k < 2; k++) {
        const char *mode = model_recompute_name(modes[k]);
        if (run_step(dir, be, lora, modes[k], &got) != 0) { test_failures++; free_result(&got); continue; }
        long d = bitwise_first_diff(got.losses, ref.losses, 2 * N);
        CHECK(d < 0, "%s %s %s: row loss %ld is %.9g, without recomputation %.9g", name, what, mode, d,
              d < 0 ? 0.0 : (double)got.losses[d], d < 0 ? 0.0 : (double)ref.losses[d]);
        CHECK(got.loss_sum[0] == ref.loss_sum[0] && got.loss_sum[1] == ref.loss_sum[1],
              "%s %s %s: loss sums %.17g %.17g, without recomputation %.17g %.17g", name, what, mode, got.loss_sum[0],
              got.loss_sum[1], ref.loss_sum[0], ref.loss_sum[1]);
        d = got.ngrad == ref.ngrad ? bitwise_first_diff(got.grads, ref.grads, ref.ngrad) : 0;
        CHECK(d < 0, "%s %s %s: gradient element %ld is %.9g, without recomputation %.9g", name, what, mode, d,
              d < 0 ? 0.0 : (double)got.grads[d], d < 0 ? 0.0 : (double)ref.grads[d]);
        CHECK(got.activations < ref.activations, "%s %s %s: activations %zu bytes, none %zu", name, what, mode,
              got.activations, ref.activations);
        printf("%s %s, recompute %-9s: bitwise equal to none (%zu gradient elements), activations %zu of %zu bytes\n",
               name, what, mode, ref.ngrad, got.activations, ref.activations);
        free_result(&got);
    }
    free_result(&ref);
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

// Plans of one config in the three modes: none > selective > full, and selective saves exactly
// L−1 layers' worth of ln1, ln2 and act plus one more ln (ln1 and ln2 share a buffer).
static void check_plans(const char *dir, backend *be) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    CHECK(m != NULL, "open %s: %s", dir, err);
    if (!m) return;
    const model_config *c = model_get_config(m);
    model_memory p[3];
    const model_recompute modes[] = {MODEL_RECOMPUTE_NONE, MODEL_RECOMPUTE_SELECTIVE, MODEL_RECOMPUTE_FULL};
    for (int k = 0; k < 3; k++) {
        model_options o = {.batch_size = 3, .seq_len = 40, .train = MODEL_TRAIN_FULL, .checkpoint = modes[k]};
        CHECK(model_plan(m, &o, &p[k], err, sizeof err) == 0, "plan: %s", err);
        CHECK(p[k].checkpoint == (int)modes[k], "the plan records its mode");
    }
    CHECK(p[0].activations > p[1].activations && p[1].activations > p[2].activations,
          "%s: activations none %zu > selective %zu > full %zu", dir, p[0].activations, p[1].activations,
          p[2].activations);
    size_t as = dtype_size(be->act_dtype), n = 3 * 40, L = (size_t)c->num_layers;
    size_t ln = round64(n * (size_t)c->hidden_size * as), act = round64(n * (size_t)c->intermediate_size * as);
    size_t want = L * (2 * ln + act) - (ln + act);
    CHECK(p[0].activations - p[1].activations == want, "%s: selective saves %zu bytes, want %zu", dir,
          p[0].activations - p[1].activations, want);
    CHECK(p[0].weights == p[1].weights && p[1].total - p[1].activations == p[2].total - p[2].activations,
          "recomputation changes the activations only");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        model_memory_print(&p[1], f);
        fclose(f);
        CHECK(strstr(text, "recompute selective"), "the plan printout names the mode:\n%s", text);
        free(text);
    }
    model_free(m);
}

static void check_names(void) {
    const char *names[] = {"none", "selective", "full"};
    for (int i = 0; i < 3; i++) {
        model_recompute r;
        CHECK(model_recompute_parse(names[i], &r) == 0 && strcmp(model_recompute_name(r), names[i]) == 0,
              "%s round-trips", names[i]);
    }
    model_recompute r;
    CHECK(model_recompute_parse("partial", &r) == -1 && model_recompute_parse(NULL, &r) == -1, "unknown names refused");
}

int main(void) {
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    const char *names[] = {"llama3_gqa", "llama32_tied", "mistral", "qwen2", "qwen3"};
    backend *be = backend_cpu(0);
    if (!be) { fprintf(stderr, "FAIL no backend\n"); return 1; }
    check_names();
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char dir[900];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src, names[k]);
        char err[512];
        model *m = model_open(dir, be, err, sizeof err);
        CHECK(m != NULL, "open %s: %s", dir, err);
        if (!m) continue;
        bitwise_batches(2, B, T, model_get_config(m)->vocab_size, 31, 9, 7, 3, ids[0], targets[0], pos[0], doc[0]);
        model_free(m);
        check_plans(dir, be);
        check_bitwise(dir, names[k], be, 0);
        check_bitwise(dir, names[k], be, 1);
    }
    be->destroy(be);
    return test_finish("test_model_recompute");
}
