// tests/model/test_model_grad.c — what the transformers fixtures do not cover, checked from
// outside the backward: LoRA with dropout and rsLoRA scaling against central finite
// differences of the forward's loss; activation checkpointing giving the same gradients with
// dropout (the recomputed layer draws the same masks); the memory plan adding up; and
// model_open refusing broken checkpoints with the file and tensor named.
#include "test.h"
#include "lora_random_b.h"
#include "config_llama31_8b.h"
#include "model/llama.h"
#include "model/names.h"
#include "model/safetensors.h"
#include "kernels/rng.h"
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

enum { B = 2, T = 16, N = B * T };

static int32_t ids[N], targets[N], pos[N], doc[N];

static void make_batch(int vocab) {
    rng_state s = {.seed = 99, .counter = 0};
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int i = b * T + t, start = t < 7 ? 0 : 7;   // two documents per row
            ids[i] = (int32_t)(rng_next_u64(&s) % (uint64_t)vocab);
            pos[i] = t - start;
            doc[i] = start;
        }
    for (int i = 0; i < N; i++) targets[i] = (i % T == 6 || i % T == T - 1 || i % 5 == 0) ? -1 : ids[(i + 1) % N];
}

static model *open_lora(const char *dir, backend *be, const lora_config *lc, int checkpoint) {
    char err[512];
    model_options opt = {.batch_size = B, .seq_len = T, .train = MODEL_TRAIN_LORA, .checkpoint = checkpoint};
    model *m = model_load(dir, be, &opt, lc, NULL, err, sizeof err);
    if (!m) { fprintf(stderr, "FAIL LoRA model: %s\n", err); return NULL; }
    lora_randomize_b(m);
    return m;
}

static double mean_loss_seed(model *m, float grad_scale, uint64_t seed) {
    model_batch b = {.B = B, .T = T, .ids = ids, .targets = targets, .pos = pos, .doc_start = doc,
                     .dropout_seed = seed};
    model_loss l;
    if (model_forward(m, &b, grad_scale, &l) != 0) {
        fprintf(stderr, "FAIL forward: %s\n", model_error(m));
        return NAN;
    }
    return l.sum / (double)l.tokens;
}

static double mean_loss(model *m, float grad_scale) { return mean_loss_seed(m, grad_scale, 1234); }

// adapted: all-linear on a dense model; on Mixtral attention, experts and router (the expert
// adapters' dropout: one mask per projection over the routed rows, drawn again in the backward).
// h: the finite-difference step (MoE: 1e-3, as a step of 1e-2 flips a near-tied top-k choice of
// this batch, and the loss jumps).
static void check_lora_dropout(const char *dir, backend *be, unsigned adapted, float h) {
    lora_config lc = lora_config_default();
    lc.targets = adapted;
    lc.rank = 4;
    lc.alpha = 8.0f;
    lc.rslora = 1;
    lc.dropout = 0.25f;
    model *m = open_lora(dir, be, &lc, 0), *mc = open_lora(dir, be, &lc, 1);
    CHECK(m && mc, "open");
    if (!m || !mc) { model_free(m); model_free(mc); return; }
    int64_t n = 0;
    for (int i = 0; i < N; i++) n += targets[i] != -1;
    double l0 = mean_loss(m, 1.0f / (float)n);
    CHECK(model_backward(m) == 0, "backward: %s", model_error(m));
    double lc0 = mean_loss(mc, 1.0f / (float)n);
    CHECK(model_backward(mc) == 0, "backward (checkpointing): %s", model_error(mc));
    CHECK(l0 == lc0, "checkpointing changes the loss: %.9g vs %.9g", l0, lc0);

    // Same gradients with checkpointing: the recomputed forward must use the same masks.
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i), *q = model_trained_at(mc, i);
        double e = rel_error(q->grad, p->grad, p->n);
        CHECK(e <= 1e-6, "%s: checkpointed gradient differs by %.3g", p->name, e);
    }

    // Central differences on a sample of elements of A and B of several layers and targets. The
    // losses come from training forwards (dropout only applies there) with the same seed; in
    // LoRA mode such a forward writes no trained gradient, and the gradients are copied first.
    int np = model_trained_count(m);
    float **grads = calloc((size_t)np, sizeof *grads);
    for (int i = 0; i < np; i++) {
        model_param *p = model_trained_at(m, i);
        grads[i] = malloc(p->n * 4);
        memcpy(grads[i], p->grad, p->n * 4);
    }
    double num = 0, den = 0;
    int checked = 0;
    for (int i = 0; i < model_trained_count(m); i++) {
        model_param *p = model_trained_at(m, i);
        if (i % 3 != 0) continue;
        float *x = malloc(p->n * 4);
        model_param_read(m, p, x);
        for (int k = 0; k < 3; k++) {
            size_t e = (size_t)(k * 7919 + i * 131) % p->n;
            float keep = x[e], g = grads[i][e];
            x[e] = keep + h;
            model_param_write(m, p, x);
            double lp = mean_loss(m, 1.0f);
            x[e] = keep - h;
            model_param_write(m, p, x);
            double lm = mean_loss(m, 1.0f);
            x[e] = keep;
            model_param_write(m, p, x);
            double fd = (lp - lm) / (2.0 * h);
            num += (fd - g) * (fd - g);
            den += fd * fd;
            checked++;
            if (fabs(fd - g) > 2e-3 * fmax(1.0, fabs(fd)) + 0.02 * fabs(fd))
                fprintf(stderr, "  %s[%zu]: backward %.6g, finite difference %.6g\n", p->name, e, (double)g, fd);
        }
        free(x);
    }
    for (int i = 0; i < np; i++) free(grads[i]);
    free(grads);
    double rel = sqrt(num / den);
    printf("LoRA dropout 0.25, rsLoRA: %d elements, gradient vs finite differences rel error %.2e\n",
           checked, rel);
    CHECK(checked >= 20 && rel <= 1e-2, "LoRA gradients vs finite differences: relative error %.3g", rel);

    // Training forwards drop (another seed changes the loss) deterministically (same seed, same
    // loss); evaluation forwards do not drop at all (the seed is irrelevant there).
    double again = mean_loss(m, 1.0f);
    CHECK(again == l0, "same seed, loss %.9g then %.9g", l0, again);
    double other = mean_loss_seed(m, 1.0f, 4321);
    CHECK(fabs(other - l0) > 1e-6, "dropout seed has no effect in training");
    double eval_a = mean_loss_seed(m, 0.0f, 1), eval_b = mean_loss_seed(m, 0.0f, 2);
    CHECK(eval_a == eval_b && fabs(eval_a - l0) > 1e-6, "evaluation must not drop: %.9g, %.9g, training %.9g",
          eval_a, eval_b, l0);
    model_free(m);
    model_free(mc);
}

// Gradient accumulation: the two rows as two micro-batches, each scaled by 1/(trained tokens of
// both), must add up to the gradient of the whole batch (the loss is a mean over all trained
// tokens, not a mean of per-micro-batch means).
static void check_accumulation(const char *dir, backend *be) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    CHECK(m != NULL, "open: %s", err);
    if (!m) return;
    model_options opt = {.batch_size = B, .seq_len = T, .train = MODEL_TRAIN_FULL};
    if (model_plan(m, &opt, NULL, err, sizeof err) != 0 || model_allocate(m, err, sizeof err) != 0) {
        CHECK(0, "plan: %s", err);
        model_free(m);
        return;
    }
    int64_t n = 0;
    for (int i = 0; i < N; i++) n += targets[i] != -1;
    int np = model_trained_count(m);
    float **whole = calloc((size_t)np, sizeof *whole);
    model_zero_grads(m);
    double l_whole = mean_loss(m, 1.0f / (float)n);
    model_backward(m);
    for (int i = 0; i < np; i++) {
        model_param *p = model_trained_at(m, i);
        whole[i] = malloc(p->n * 4);
        memcpy(whole[i], p->grad, p->n * 4);
    }
    model_zero_grads(m);
    double sum = 0;
    int64_t tokens = 0;
    for (int r = 0; r < B; r++) {
        model_batch b = {.B = 1, .T = T, .ids = ids + r * T, .targets = targets + r * T, .pos = pos + r * T,
                         .doc_start = doc + r * T};
        model_loss l;
        CHECK(model_forward(m, &b, 1.0f / (float)n, &l) == 0 && model_backward(m) == 0, "micro-batch %d: %s",
              r, model_error(m));
        sum += l.sum;
        tokens += l.tokens;
    }
    CHECK(tokens == n && fabs(sum / (double)tokens - l_whole) <= 1e-6 * l_whole, "loss %.9g vs %.9g",
          sum / (double)tokens, l_whole);
    double worst = 0;
    for (int i = 0; i < np; i++) {
        model_param *p = model_trained_at(m, i);
        double e = rel_error(p->grad, whole[i], p->n);
        if (e > worst) worst = e;
        CHECK(e <= 1e-5, "%s: accumulated gradient differs by %.3g", p->name, e);
        free(whole[i]);
    }
    free(whole);
    printf("accumulation over 2 micro-batches: worst gradient difference %.2e\n", worst);
    model_free(m);
}

static void check_plan(const char *dir, backend *be) {
    char err[512];
    model *m = model_open(dir, be, err, sizeof err);
    CHECK(m != NULL, "open: %s", err);
    if (!m) return;
    // The model's base tensors are the ones model/names.h lists, in its order and shapes.
    const model_config *cfg = model_get_config(m);
    int nt = model_tensor_count(cfg);
    model_tensor_info *list = calloc((size_t)nt, sizeof *list);
    model_tensor_list(cfg, list);
    CHECK(model_param_count(m) == nt, "%d tensors, names.h lists %d", model_param_count(m), nt);
    for (int i = 0; i < nt && i < model_param_count(m); i++) {
        const model_param *p = model_param_at(m, i);
        CHECK(strcmp(p->name, list[i].name) == 0 && p->ndim == list[i].ndim && p->shape[0] == list[i].shape[0] &&
              (p->ndim == 1 || p->shape[1] == list[i].shape[1]), "tensor %d: %s, names.h: %s", i, p->name,
              list[i].name);
    }
    free(list);
    lora_config lc = lora_config_default();
    model_memory full, ckpt, lora, none, sel;
    model_options o = {.batch_size = 4, .seq_len = 64, .train = MODEL_TRAIN_FULL};
    CHECK(model_plan(m, &o, &full, err, sizeof err) == 0, "plan full: %s", err);
    o.checkpoint = MODEL_RECOMPUTE_SELECTIVE;
    CHECK(model_plan(m, &o, &sel, err, sizeof err) == 0, "plan selective: %s", err);
    o.checkpoint = MODEL_RECOMPUTE_FULL;
    CHECK(model_plan(m, &o, &ckpt, err, sizeof err) == 0, "plan checkpoint: %s", err);
    o.train = MODEL_TRAIN_NONE;
    CHECK(model_plan(m, &o, &none, err, sizeof err) == 0, "plan none: %s", err);
    o.train = MODEL_TRAIN_LORA;
    CHECK(model_plan(m, &o, &lora, err, sizeof err) == -1, "LoRA planned without adapters");
    CHECK(model_enable_lora(m, &lc, err, sizeof err) == 0, "enable: %s", err);
    CHECK(model_plan(m, &o, &lora, err, sizeof err) == 0, "plan lora: %s", err);
    const model_config *c = model_get_config(m);
    size_t P = model_config_num_params(c);
    CHECK(full.params_total == P && full.params_trained == P, "full: %zu/%zu parameters, config says %zu",
          full.params_trained, full.params_total, P);
    CHECK(full.grads >= P * 4 && full.moments >= 2 * P * 4 && full.masters >= P * 4, "full buffers");
    CHECK(full.total == full.weights + full.masters + full.grads + full.moments + full.activations,
          "total adds up");
    CHECK(ckpt.activations < sel.activations && sel.activations < full.activations,
          "recomputation saves activations (full %zu < selective %zu < none %zu)", ckpt.activations,
          sel.activations, full.activations);
    CHECK(none.grads == 0 && none.moments == 0 && none.masters == 0, "forward only: no training buffers");
    size_t lora_params = 0;
    for (int l = 0; l < c->num_layers; l++) {
        int q = c->num_heads * c->head_dim, kv = c->num_kv_heads * c->head_dim, C = c->hidden_size,
            F = c->intermediate_size;
        lora_params += (size_t)lc.rank * ((size_t)(C + q) * 2 + (size_t)(C + kv) * 2 + (size_t)(C + F) * 3);
    }
    CHECK(lora.params_trained == lora_params, "LoRA trains %zu parameters, want %zu", lora.params_trained,
          lora_params);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        model_memory_print(&full, f);
        fclose(f);
        CHECK(strstr(text, "activations") && strstr(text, "total") && strstr(text, "AdamW"),
              "plan printout:\n%s", text);
        printf("%s", text);
        free(text);
    }
    model_free(m);
}

// Llama 3.1 8B as published (config.json): the plan of a bf16 LoRA run and of a full one.
static void check_plan_8b(void) {
    model *m = open_llama31_8b();
    char err[512];
    if (!m) return;
    lora_config lc = lora_config_default();
    lc.rank = 16;
    model_memory lora, full;
    model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_FULL, .checkpoint = 1};
    CHECK(model_plan(m, &o, &full, err, sizeof err) == 0, "plan full: %s", err);
    CHECK(model_enable_lora(m, &lc, err, sizeof err) == 0, "enable: %s", err);
    o.train = MODEL_TRAIN_LORA;
    CHECK(model_plan(m, &o, &lora, err, sizeof err) == 0, "plan lora: %s", err);
    CHECK(full.params_total == 8030261248u, "8B has %zu parameters", full.params_total);
    // LoRA r=16 all-linear on Llama 3.1 8B: 41,943,040 trainable parameters (PEFT's count).
    CHECK(lora.params_trained == 41943040u, "LoRA trains %zu", lora.params_trained);
    CHECK(full.masters == full.grads && full.moments == 2 * full.grads && full.grads >= 4 * full.params_total,
          "full fine-tuning: f32 masters, grads, m and v");
    CHECK(lora.weights >= 2 * (lora.params_total + lora.params_trained) &&
              lora.weights < 2 * (lora.params_total + lora.params_trained) + (16u << 20),
          "bf16 base weights and adapter copies: %zu bytes", lora.weights);
    model_memory_print(&full, stdout);
    // LoRA r=16 at seq 2048, micro-batch 1, in the three recompute modes.
    model_memory lora_none, lora_sel;
    o.checkpoint = MODEL_RECOMPUTE_NONE;
    CHECK(model_plan(m, &o, &lora_none, err, sizeof err) == 0, "plan lora none: %s", err);
    o.checkpoint = MODEL_RECOMPUTE_SELECTIVE;
    CHECK(model_plan(m, &o, &lora_sel, err, sizeof err) == 0, "plan lora selective: %s", err);
    model_memory_print(&lora_none, stdout);
    model_memory_print(&lora_sel, stdout);
    model_memory_print(&lora, stdout);
    CHECK(lora_none.activations > lora_sel.activations && lora_sel.activations > lora.activations,
          "8B LoRA activations: none %zu > selective %zu > full %zu", lora_none.activations, lora_sel.activations,
          lora.activations);
    // Selective drops ln1, ln2 (4096 each) and act (14336) per token and layer, bf16, keeping one
    // shared (4096 + 14336)-wide set.
    size_t saved = (size_t)2048 * 2 * (32 * (2 * 4096 + 14336) - (4096 + 14336));
    CHECK(lora_none.activations - lora_sel.activations == saved, "selective saves %zu bytes, want %zu",
          lora_none.activations - lora_sel.activations, saved);
    printf("8B LoRA r=16, seq 2048, micro-batch 1: activations none %.2f GiB, selective %.2f GiB, full %.2f GiB\n",
           lora_none.activations / 1073741824.0, lora_sel.activations / 1073741824.0, lora.activations / 1073741824.0);
    CHECK(model_allocate(m, err, sizeof err) == -1 && strstr(err, "config only"), "allocate refused: %s", err);
    model_free(m);
}

// A copy of the checkpoint with one tensor dropped, renamed or reshaped must be refused.
static void check_broken(const char *dir, backend *be) {
    char err[512], src[1024], tmp[] = "/tmp/quarry_model_XXXXXX";
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp"); return; }
    st_set *st = st_open(dir, err, sizeof err);
    CHECK(st != NULL, "open %s: %s", dir, err);
    if (!st) return;
    snprintf(src, sizeof src, "%s/config.json", dir);
    char cfgpath[256], stpath[256];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", tmp);
    snprintf(stpath, sizeof stpath, "%s/model.safetensors", tmp);
    FILE *in = fopen(src, "rb"), *out = fopen(cfgpath, "wb");
    char buf[4096];
    size_t k;
    while (in && out && (k = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, k, out);
    if (in) fclose(in);
    if (out) fclose(out);
    const char *victim = "model.layers.1.self_attn.k_proj.weight";
    for (int mode = 0; mode < 3; mode++) {
        st_writer *w = st_writer_begin();
        for (int i = 0; i < st_count(st); i++) {
            const st_tensor *t = st_get(st, i);
            int64_t shape[8];
            memcpy(shape, t->shape, sizeof shape);
            const char *name = t->name;
            if (strcmp(name, victim) == 0) {
                if (mode == 0) continue;                          // missing
                if (mode == 1)   // an unexpected tensor beside the expected one
                    st_writer_add(w, "model.layers.1.self_attn.kk_proj.weight", t->dtype, t->ndim,
                                  shape, t->data, t->nbytes);
                if (mode == 2) { shape[0] = t->shape[1]; shape[1] = t->shape[0]; }  // transposed
            }
            st_writer_add(w, name, t->dtype, t->ndim, shape, t->data, t->nbytes);
        }
        int rc = st_writer_finish(w, stpath, NULL, NULL, 0, err, sizeof err);
        st_writer_free(w);
        CHECK(rc == 0, "write broken checkpoint: %s", err);
        err[0] = '\0';
        model *m = model_open(tmp, be, err, sizeof err);
        CHECK(m == NULL, "broken checkpoint %d accepted", mode);
        model_free(m);
        const char *named = mode == 1 ? "kk_proj" : victim;
        CHECK(strstr(err, named) && strstr(err, tmp), "error names the file and tensor: %s", err);
        printf("refused: %s\n", err);
    }
    st_close(st);
    unlink(stpath);
    unlink(cfgpath);
    rmdir(tmp);
}

// Mistral's sliding window is not implemented: a sequence longer than it must be refused with
// what to change, a shorter one accepted.
static void check_sliding_window(const char *srcdir, backend *be) {
    char tmp[] = "/tmp/quarry_window_XXXXXX", path[1200], err[512];
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp"); return; }
    snprintf(path, sizeof path, "%s/tests/fixtures/mistral/config.json", srcdir);
    FILE *in = fopen(path, "rb");
    char text[8192] = "";
    size_t n = in ? fread(text, 1, sizeof text - 1, in) : 0;
    if (in) fclose(in);
    text[n] = '\0';
    char *at = strstr(text, "\"sliding_window\": null");
    CHECK(at != NULL, "%s has no \"sliding_window\": null", path);
    if (!at) { rmdir(tmp); return; }
    char cfg[8300];
    snprintf(cfg, sizeof cfg, "%.*s\"sliding_window\": 8%s", (int)(at - text), text,
             at + strlen("\"sliding_window\": null"));
    char cfgpath[256], stpath[256], target[PATH_MAX];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", tmp);
    snprintf(stpath, sizeof stpath, "%s/model.safetensors", tmp);
    snprintf(path, sizeof path, "%s/tests/fixtures/mistral/model.safetensors", srcdir);
    if (!realpath(path, target)) { CHECK(0, "%s not found", path); rmdir(tmp); return; }
    FILE *out = fopen(cfgpath, "wb");
    if (out) { fputs(cfg, out); fclose(out); }
    CHECK(symlink(target, stpath) == 0, "symlink %s", target);
    model *m = model_open(tmp, be, err, sizeof err);
    CHECK(m != NULL, "open: %s", err);
    if (m) {
        model_options o = {.batch_size = 1, .seq_len = 16, .train = MODEL_TRAIN_FULL};
        CHECK(model_plan(m, &o, NULL, err, sizeof err) == -1 && strstr(err, "sliding_window") &&
              strstr(err, "--max-seq-len 8"), "sequence 16 > window 8 refused: %s", err);
        o.seq_len = 8;
        CHECK(model_plan(m, &o, NULL, err, sizeof err) == 0, "sequence 8 = window accepted: %s", err);
        model_free(m);
    }
    unlink(stpath);
    unlink(cfgpath);
    rmdir(tmp);
}

int main(void) {
    const char *srcdir = test_env("QUARRY_SOURCE_DIR", ".");
    char dir[900];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/llama3_gqa", srcdir);
    backend *be = backend_cpu(0);
    if (!be) { fprintf(stderr, "FAIL no cpu backend\n"); return 1; }
    make_batch(128);
    check_lora_dropout(dir, be, LORA_ALL_LINEAR, 1e-2f);
    char moe[900];
    snprintf(moe, sizeof moe, "%s/tests/fixtures/mixtral", srcdir);
    check_lora_dropout(moe, be, LORA_ATTENTION | LORA_EXPERTS_BIT | LORA_ROUTER_BIT, 1e-3f);
    check_accumulation(dir, be);
    check_plan(dir, be);
    check_plan_8b();
    check_broken(dir, be);
    check_sliding_window(srcdir, be);
    be->destroy(be);
    return test_finish("test_model_grad");
}
