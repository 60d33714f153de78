// tests/model/test_model_fusion.c — the fused ops change launches, not results (CPU backend,
// fixtures with GQA, biases (qwen2) and q/k norms (qwen3), two accumulated micro-batches):
// - the grouped LoRA op (lora_group_forward/_backward: the A's of q, k, v and of gate, up as one
//   GEMM over their shared input): a LoRA step (every linear adapted) gives bitwise the same
//   per-row losses and gradients with it on and off, with no and with full recomputation; the
//   op counts show it ran (per layer and forward 2 grouped ops and 11 linear ops — 7 frozen, o's
//   and down's adapters — instead of 21); with LoRA dropout (a mask per projection, as PEFT's) it
//   does not run and the results are still the unfused ones;
// - residual add + RMSNorm (add_rmsnorm_forward, mid and ln2 in one pass): per layer one fused
//   op replaces an RMSNorm (and a copy), and losses and gradients of full and LoRA training stay
//   within f32 rounding of the unfused path (its o GEMM no longer sums onto resid: other roundings);
// - RoPE of q and k in one op (rope_qk_forward/_backward, with qwen3's per-head q/k norms in the
//   same pass): full and LoRA steps, with no and with full recomputation, give bitwise the same
//   logits, per-row losses and gradients (q_norm, k_norm's included) with it on and off, per layer
//   one fused op each way instead of 2 RoPE (+ 2 RMSNorm) ops; and decoding with the KV cache
//   (a prompt, one token, then several over the cache) gives the same logits bit for bit.
#include "test.h"
#include "bitwise.h"

enum { B = 2, T = 24, N = B * T };

static int32_t ids[2][N], targets[2][N], pos[2][N], doc[2][N];   // two micro-batches (bitwise_batches)

// Calls of the ops that run GEMMs, counted through wrappers around the CPU's.
static struct {
    long linear_fwd, linear_bwd, group_fwd, group_bwd, norm_fwd, add_norm_fwd;
    long rope_fwd, rope_bwd, rope_qk_fwd, rope_qk_bwd, norm_bwd;
} calls;
static backend cpu_ops;   // the CPU's table as installed

static void count_linear_forward(backend *be, void *out, const void *inp, const void *w, const void *bias, int n,
                                 int ic, int oc, float scale, int acc) {
    calls.linear_fwd++;
    cpu_ops.linear_forward(be, out, inp, w, bias, n, ic, oc, scale, acc);
}
static void count_linear_backward(backend *be, void *dinp, float *dw, float *db, const void *dout, const void *inp,
                                  const void *w, int n, int ic, int oc, float scale, int acc) {
    calls.linear_bwd++;
    cpu_ops.linear_backward(be, dinp, dw, db, dout, inp, w, n, ic, oc, scale, acc);
}
static void count_group_forward(backend *be, void *const *y, void *h, const void *x, const void *a,
                                const void *const *b, const int *out, int G, int n, int ic, int r, float scale) {
    calls.group_fwd++;
    cpu_ops.lora_group_forward(be, y, h, x, a, b, out, G, n, ic, r, scale);
}
static void count_rmsnorm_forward(backend *be, void *out, float *rstd, const void *x, const void *w, int n, int c,
                                  float eps) {
    calls.norm_fwd++;
    cpu_ops.rmsnorm_forward(be, out, rstd, x, w, n, c, eps);
}
static void count_add_rmsnorm_forward(backend *be, void *sum, void *out, float *rstd, const void *a, const void *b,
                                      const void *w, int n, int c, float eps) {
    calls.add_norm_fwd++;
    cpu_ops.add_rmsnorm_forward(be, sum, out, rstd, a, b, w, n, c, eps);
}
static void count_rmsnorm_backward(backend *be, void *dx, float *dw, const void *dout, const void *x, const void *w,
                                   const float *rstd, int n, int c) {
    calls.norm_bwd++;
    cpu_ops.rmsnorm_backward(be, dx, dw, dout, x, w, rstd, n, c);
}
static void count_rope_forward(backend *be, void *x, const int32_t *p, const rope_table *rope, int n, int h) {
    calls.rope_fwd++;
    cpu_ops.rope_forward(be, x, p, rope, n, h);
}
static void count_rope_backward(backend *be, void *dx, const int32_t *p, const rope_table *rope, int n, int h) {
    calls.rope_bwd++;
    cpu_ops.rope_backward(be, dx, p, rope, n, h);
}
static void count_rope_qk_forward(backend *be, void *q, void *k, float *rq, float *rk, const void *qi, const void *ki,
                                  const void *wq, const void *wk, const int32_t *p, const rope_table *rope, int n,
                                  int hq, int hk, float eps) {
    calls.rope_qk_fwd++;
    cpu_ops.rope_qk_forward(be, q, k, rq, rk, qi, ki, wq, wk, p, rope, n, hq, hk, eps);
}
static void count_rope_qk_backward(backend *be, void *dq, void *dk, float *dwq, float *dwk, const void *qi,
                                   const void *ki, const void *wq, const void *wk, const float *rq, const float *rk,
                                   const int32_t *p, const rope_table *rope, int n, int hq, int hk) {
    calls.rope_qk_bwd++;
    cpu_ops.rope_qk_backward(be, dq, dk, dwq, dwk, qi, ki, wq, wk, rq, rk, p, rope, n, hq, hk);
}
static void count_group_backward(backend *be, void *dx, float *da, float *const *db, void *dh, const void *const *dy,
                                 const void *x, const void *h, const void *a, const void *const *b, const int *out,
                                 int G, int n, int ic, int r, float scale) {
    calls.group_bwd++;
    cpu_ops.lora_group_backward(be, dx, da, db, dh, dy, x, h, a, b, out, G, n, ic, r, scale);
}

typedef struct {
    float *losses;   // (2, N)
    float *grads;    // every trained tensor's gradient, in trained order
    size_t ngrad;
    long fwd_linear, fwd_group, fwd_norm, fwd_add_norm;   // ops of the first micro-batch's forward
    long fwd_rope, fwd_rope_qk, bwd_rope, bwd_rope_qk, bwd_norm;   // and of its backward
    float *logits;   // (NLOGIT, V): rows logit_rows of the first micro-batch's forward
} step_result;

enum { NLOGIT = 3 };
static const int logit_rows[NLOGIT] = {0, 13, N - 1};

static void free_result(step_result *r) {
    free(r->losses);
    free(r->grads);
    free(r->logits);
}

static int run_step(const char *dir, backend *be, unsigned no_fusion, int lora, float dropout, model_recompute rc,
                    step_result *out) {
    char err[512];
    memset(out, 0, sizeof *out);
    model_options opt = {.batch_size = B, .seq_len = T, .train = lora ? MODEL_TRAIN_LORA : MODEL_TRAIN_FULL,
                         .checkpoint = rc, .no_fusion = no_fusion};
    model_memory plan;
    model *m = bitwise_open(dir, be, lora, dropout, &opt, &plan, err, sizeof err);
    if (!m) {
        fprintf(stderr, "FAIL %s: %s\n", dir, err);
        return -1;
    }
    int64_t trained = bitwise_trained(targets[0], 2 * N);
    out->losses = malloc(2 * N * sizeof *out->losses);
    out->ngrad = bitwise_grad_numel(m);
    out->grads = malloc(out->ngrad * sizeof *out->grads);
    int V = model_get_config(m)->vocab_size;
    out->logits = malloc((size_t)NLOGIT * V * sizeof *out->logits);
    int rcode = out->losses && out->grads && out->logits ? 0 : -1;
    model_zero_grads(m);
    for (int k = 0; k < 2 && rcode == 0; k++) {
        model_batch b = {.B = B, .T = T, .ids = ids[k], .targets = targets[k], .pos = pos[k], .doc_start = doc[k],
                         .dropout_seed = 500 + (uint64_t)k};
        model_loss l;
        memset(&calls, 0, sizeof calls);
        if (model_forward(m, &b, 1.0f / (float)trained, &l) != 0) rcode = -1;
        if (k == 0) {
            out->fwd_linear = calls.linear_fwd, out->fwd_group = calls.group_fwd;
            out->fwd_norm = calls.norm_fwd, out->fwd_add_norm = calls.add_norm_fwd;
            out->fwd_rope = calls.rope_fwd, out->fwd_rope_qk = calls.rope_qk_fwd;
            for (int j = 0; j < NLOGIT && rcode == 0; j++)
                if (model_logits_row(m, logit_rows[j], out->logits + (size_t)j * V) != 0) rcode = -1;
            memset(&calls, 0, sizeof calls);
        }
        if (rcode || model_read_losses(m, out->losses + k * N) != 0 || model_backward(m) != 0) {
            fprintf(stderr, "FAIL %s micro-batch %d: %s\n", dir, k, model_error(m));
            rcode = -1;
        }
        if (k == 0) out->bwd_rope = calls.rope_bwd, out->bwd_rope_qk = calls.rope_qk_bwd, out->bwd_norm = calls.norm_bwd;
    }
    if (rcode == 0) bitwise_read_grads(m, be, out->grads);
    be->synchronize(be);
    model_free(m);
    return rcode;
}

static void check_lora_group(const char *dir, const char *name, backend *be, int L) {
    step_result ref, got, drop_ref, drop_got;
    if (run_step(dir, be, MODEL_FUSE_LORA_GROUP, 1, 0.0f, MODEL_RECOMPUTE_NONE, &ref) != 0) {
        test_failures++;
        free_result(&ref);
        return;
    }
    double gnorm = bitwise_sumsq(ref.grads, ref.ngrad);
    CHECK(gnorm > 0 && isfinite(gnorm), "%s: the gradients are zero or not finite", name);
    CHECK(ref.fwd_group == 0 && ref.fwd_linear == 21L * L, "%s unfused: %ld grouped, %ld linear ops per forward, "
          "want 0 and %d", name, ref.fwd_group, ref.fwd_linear, 21 * L);
    const model_recompute modes[] = {MODEL_RECOMPUTE_NONE, MODEL_RECOMPUTE_FULL};
    for (int k = 0; k < 2; k++) {
        const char *mode = model_recompute_name(modes[k]);
        if (run_step(dir, be, 0, 1, 0.0f, modes[k], &got) != 0) {
            test_failures++;
            free_result(&got);
            continue;
        }
        CHECK(got.fwd_group == 2L * L && got.fwd_linear == 11L * L,
              "%s fused (recompute %s): %ld grouped, %ld linear ops per forward, want %d and %d", name, mode,
              got.fwd_group, got.fwd_linear, 2 * L, 11 * L);
        long d = bitwise_first_diff(got.losses, ref.losses, 2 * N);
        CHECK(d < 0, "%s fused (recompute %s): row loss %ld is %.9g, unfused %.9g", name, mode, d,
              d < 0 ? 0.0 : (double)got.losses[d], d < 0 ? 0.0 : (double)ref.losses[d]);
        d = got.ngrad == ref.ngrad ? bitwise_first_diff(got.grads, ref.grads, ref.ngrad) : 0;
        CHECK(d < 0, "%s fused (recompute %s): gradient element %ld is %.9g, unfused %.9g", name, mode, d,
              d < 0 ? 0.0 : (double)got.grads[d], d < 0 ? 0.0 : (double)ref.grads[d]);
        printf("%s fused, recompute %-4s: bitwise equal to unfused (%zu gradient elements); %ld linear + %ld "
               "grouped ops per forward, unfused %ld\n", name, mode, ref.ngrad, got.fwd_linear, got.fwd_group,
               ref.fwd_linear);
        free_result(&got);
    }
    free_result(&ref);
    // Dropout: a mask per projection, so no shared input: the unfused path, whatever the switch.
    if (run_step(dir, be, MODEL_FUSE_LORA_GROUP, 1, 0.1f, MODEL_RECOMPUTE_NONE, &drop_ref) == 0 &&
        run_step(dir, be, 0, 1, 0.1f, MODEL_RECOMPUTE_NONE, &drop_got) == 0) {
        CHECK(drop_got.fwd_group == 0, "%s with dropout: %ld grouped ops", name, drop_got.fwd_group);
        CHECK(bitwise_first_diff(drop_got.losses, drop_ref.losses, 2 * N) < 0 &&
              bitwise_first_diff(drop_got.grads, drop_ref.grads, drop_ref.ngrad) < 0,
              "%s with dropout: results differ", name);
    } else {
        test_failures++;
    }
    free_result(&drop_ref);
    free_result(&drop_got);
}

static void check_add_norm(const char *dir, const char *name, backend *be, int L, int qk_norm) {
    for (int lora = 0; lora < 2; lora++) {
        const char *what = lora ? "LoRA" : "full";
        step_result ref, got;
        // The RoPE fusion off in both: the q/k norms stay rmsnorm ops, counted below.
        int ok = run_step(dir, be, MODEL_FUSE_ADD_NORM | MODEL_FUSE_ROPE_QK, lora, 0.0f, MODEL_RECOMPUTE_SELECTIVE,
                          &ref) == 0 &&
                 run_step(dir, be, MODEL_FUSE_ROPE_QK, lora, 0.0f, MODEL_RECOMPUTE_SELECTIVE, &got) == 0;
        CHECK(ok, "%s %s: the runs failed", name, what);
        if (ok) {
            long norms = 2L * L + 1 + (qk_norm ? 2L * L : 0);   // ln1, ln2 per layer, the final norm
            CHECK(ref.fwd_add_norm == 0 && ref.fwd_norm == norms, "%s %s unfused: %ld add_rmsnorm, %ld rmsnorm ops",
                  name, what, ref.fwd_add_norm, ref.fwd_norm);
            CHECK(got.fwd_add_norm == L && got.fwd_norm == norms - L, "%s %s fused: %ld add_rmsnorm, %ld rmsnorm ops, "
                  "want %d and %ld", name, what, got.fwd_add_norm, got.fwd_norm, L, norms - L);
            double dl = rel_error(got.losses, ref.losses, 2 * N), dg = rel_error(got.grads, ref.grads, ref.ngrad);
            CHECK(dl < 1e-5 && dg < 1e-4, "%s %s: fused vs unfused: losses %.3g, gradients %.3g apart", name, what, dl,
                  dg);
            printf("%s %s, add+rmsnorm fused: losses %.2g, gradients %.2g from unfused (rel.); %ld fused + %ld "
                   "rmsnorm ops per forward, unfused %ld\n", name, what, dl, dg, got.fwd_add_norm, got.fwd_norm,
                   ref.fwd_norm);
        }
        free_result(&ref);
        free_result(&got);
    }
}

// RoPE of q and k fused (with the q/k norms of qk-norm families) against the separate ops: the
// same bits for logits, losses and gradients; the op counts show which path ran.
static void check_rope_qk(const char *dir, const char *name, backend *be, int L, int qk_norm, int V) {
    const model_recompute modes[] = {MODEL_RECOMPUTE_NONE, MODEL_RECOMPUTE_FULL};
    for (int lora = 0; lora < 2; lora++)
        for (int mi = 0; mi < 2; mi++) {
            const char *what = lora ? "LoRA" : "full", *mode = model_recompute_name(modes[mi]);
            step_result ref, got;
            int ok = run_step(dir, be, MODEL_FUSE_ROPE_QK, lora, 0.0f, modes[mi], &ref) == 0 &&
                     run_step(dir, be, 0, lora, 0.0f, modes[mi], &got) == 0;
            CHECK(ok, "%s %s rope_qk (recompute %s): the runs failed", name, what, mode);
            if (ok) {
                long qkn = qk_norm ? 2L * L : 0;
                CHECK(ref.fwd_rope == 2L * L && ref.fwd_rope_qk == 0 && ref.bwd_rope == 2L * L && ref.bwd_rope_qk == 0,
                      "%s %s unfused: %ld/%ld rope, %ld/%ld rope_qk ops (forward/backward)", name, what, ref.fwd_rope,
                      ref.bwd_rope, ref.fwd_rope_qk, ref.bwd_rope_qk);
                CHECK(got.fwd_rope == 0 && got.fwd_rope_qk == L && got.bwd_rope == 0 && got.bwd_rope_qk == L,
                      "%s %s fused: %ld/%ld rope, %ld/%ld rope_qk ops (forward/backward)", name, what, got.fwd_rope,
                      got.bwd_rope, got.fwd_rope_qk, got.bwd_rope_qk);
                CHECK(ref.fwd_norm - got.fwd_norm == qkn && ref.bwd_norm - got.bwd_norm == qkn,
                      "%s %s: the fused path runs %ld, %ld fewer rmsnorm ops (forward, backward), want %ld",
                      name, what, ref.fwd_norm - got.fwd_norm, ref.bwd_norm - got.bwd_norm, qkn);
                long d = bitwise_first_diff(got.logits, ref.logits, (size_t)NLOGIT * V);
                CHECK(d < 0, "%s %s fused (recompute %s): logit %ld is %.9g, unfused %.9g", name, what, mode, d,
                      d < 0 ? 0.0 : (double)got.logits[d], d < 0 ? 0.0 : (double)ref.logits[d]);
                d = bitwise_first_diff(got.losses, ref.losses, 2 * N);
                CHECK(d < 0, "%s %s fused (recompute %s): row loss %ld is %.9g, unfused %.9g", name, what, mode, d,
                      d < 0 ? 0.0 : (double)got.losses[d], d < 0 ? 0.0 : (double)ref.losses[d]);
                d = got.ngrad == ref.ngrad ? bitwise_first_diff(got.grads, ref.grads, ref.ngrad) : 0;
                CHECK(d < 0, "%s %s fused (recompute %s): gradient element %ld is %.9g, unfused %.9g", name, what,
                      mode, d, d < 0 ? 0.0 : (double)got.grads[d], d < 0 ? 0.0 : (double)ref.grads[d]);
                printf("%s %s, rope_qk fused, recompute %-4s: bitwise equal to unfused (%d logits, %zu gradient "
                       "elements); %ld fused ops per forward and per backward, unfused %ld rope + %ld rmsnorm each\n",
                       name, what, mode, NLOGIT * V, ref.ngrad, got.fwd_rope_qk, ref.fwd_rope, qkn);
            }
            free_result(&ref);
            free_result(&got);
        }
}

// Decoding with the KV cache (model_decode: a prompt in one pass, then one token, then three over
// the cache): the same logits bit for bit with the RoPE fusion on and off.
static void check_rope_qk_decode(const char *dir, const char *name, backend *be, int V) {
    static const int lens[] = {7, 8, 11};
    float *lg[2];
    long fused_ops = 0;
    int ok = 1;
    for (int f = 0; f < 2; f++) {
        char err[512];
        lg[f] = calloc((size_t)3 * V, sizeof *lg[f]);
        model_options opt = {.batch_size = 1, .seq_len = T, .train = MODEL_TRAIN_NONE,
                             .no_fusion = f ? 0 : MODEL_FUSE_ROPE_QK};
        model_memory plan;
        model *m = model_open(dir, be, err, sizeof err);
        if (!m || model_plan(m, &opt, &plan, err, sizeof err) || model_allocate(m, err, sizeof err)) {
            fprintf(stderr, "FAIL %s decode: %s\n", dir, err);
            ok = 0;
        }
        memset(&calls, 0, sizeof calls);
        for (int j = 0; j < 3 && ok && m; j++)
            if (model_decode(m, ids[0], lens[j], lg[f] + (size_t)j * V) != 0) {
                fprintf(stderr, "FAIL %s decode %d: %s\n", dir, lens[j], model_error(m));
                ok = 0;
            }
        if (f) fused_ops = calls.rope_qk_fwd;
        CHECK(f || calls.rope_qk_fwd == 0, "%s decode unfused: %ld rope_qk ops", name, calls.rope_qk_fwd);
        model_free(m);
    }
    CHECK(ok, "%s decode: the runs failed", name);
    if (ok) {
        CHECK(fused_ops > 0, "%s decode fused: no rope_qk op ran", name);
        long d = bitwise_first_diff(lg[1], lg[0], (size_t)3 * V);
        CHECK(d < 0, "%s decode: logit %ld is %.9g fused, %.9g unfused", name, d, d < 0 ? 0.0 : (double)lg[1][d],
              d < 0 ? 0.0 : (double)lg[0][d]);
        printf("%s decode with KV cache (prefixes 7, 8, 11): logits bitwise equal with rope_qk fused (%ld fused "
               "ops)\n", name, fused_ops);
    }
    free(lg[0]);
    free(lg[1]);
}

int main(void) {
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    const char *names[] = {"llama3_gqa", "qwen2", "qwen3"};
    backend *be = backend_cpu(0);
    if (!be) {
        fprintf(stderr, "FAIL no backend\n");
        return 1;
    }
    cpu_ops = *be;
    be->linear_forward = count_linear_forward;
    be->linear_backward = count_linear_backward;
    be->lora_group_forward = count_group_forward;
    be->lora_group_backward = count_group_backward;
    be->rmsnorm_forward = count_rmsnorm_forward;
    be->add_rmsnorm_forward = count_add_rmsnorm_forward;
    be->rmsnorm_backward = count_rmsnorm_backward;
    be->rope_forward = count_rope_forward;
    be->rope_backward = count_rope_backward;
    be->rope_qk_forward = count_rope_qk_forward;
    be->rope_qk_backward = count_rope_qk_backward;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char dir[900], err[512];
        snprintf(dir, sizeof dir, "%s/tests/fixtures/%s", src, names[k]);
        model *m = model_open(dir, be, err, sizeof err);
        CHECK(m != NULL, "open %s: %s", dir, err);
        if (!m) continue;
        bitwise_batches(2, B, T, model_get_config(m)->vocab_size, 77, 11, 5, 2, ids[0], targets[0], pos[0],
                        doc[0]);
        int L = model_get_config(m)->num_layers, qk = model_get_config(m)->qk_norm;
        int V = model_get_config(m)->vocab_size;
        model_free(m);
        check_lora_group(dir, names[k], be, L);
        check_add_norm(dir, names[k], be, L, qk);
        check_rope_qk(dir, names[k], be, L, qk, V);
        check_rope_qk_decode(dir, names[k], be, V);
    }
    be->destroy(be);
    return test_finish("test_model_fusion");
}
