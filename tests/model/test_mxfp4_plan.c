// tests/model/test_mxfp4_plan.c — the memory plan with gpt-oss's experts kept in MXFP4
// (model_options.experts_mxfp4), from the published configs without weights (examples/configs):
// the MXFP4 bytes are exactly each expert matrix's blocks (n/2) and scales (n/32) — 4.25 bits a
// weight — in place of its bf16 copy, the workspace is one expert matrix in bf16; and the plans
// the issue asks for, printed as PLANS (what quarry would allocate, not measurements):
// gpt-oss-120b LoRA r16 at seq 2048 on one 141 GB H200 (attention only, and attention + the
// experts), which with the experts dequantised to bf16 does not fit (its refusal now names
// --experts-dtype mxfp4), and gpt-oss-20b on one 80 GB H100.
#include "test.h"
#include "config_plan.h"
#include "model/plan_fit.h"

static const size_t H100_80GB = (size_t)81559 << 20;   // what nvidia-smi reports (quarry plan's cards)
static const size_t H200 = (size_t)143771 << 20;

static model_memory plan_of(model *m, int seq, model_recompute rc, int mx, const char *label) {
    model_options o = {.batch_size = 1, .seq_len = seq, .train = MODEL_TRAIN_LORA, .checkpoint = rc,
                       .experts_mxfp4 = mx};
    model_memory p = plan_printed(m, &o, label);
    printf("  exact bytes: weights %zu (MXFP4 %zu), masters %zu, grads %zu, AdamW %zu, activations %zu "
           "(MXFP4 workspace %zu), total %zu\n\n", p.weights, p.mxfp4, p.masters, p.grads, p.moments, p.activations,
           p.mxfp4_workspace, p.total);
    return p;
}

// The plan's MXFP4 bytes and what they replace, from the format alone.
static void check_counts(model *m, const model_config *c, const char *name) {
    size_t C = (size_t)c->hidden_size, I = (size_t)c->moe_intermediate_size, E = (size_t)c->n_experts, n = I * C;
    size_t layers = 0;
    for (int l = 0; l < c->num_layers; l++) layers += model_config_layer_is_moe(c, l);
    size_t mx = layers * E * 3 * (r64(n / 2) + r64(n / 32)), bf16 = layers * E * 3 * r64(n * 2);
    char label[256];
    snprintf(label, sizeof label, "%s LoRA r16, experts in bf16, seq 2048, recompute selective, micro-batch 1", name);
    model_memory d = plan_of(m, 2048, MODEL_RECOMPUTE_SELECTIVE, 0, label);
    snprintf(label, sizeof label, "%s LoRA r16, experts in MXFP4, seq 2048, recompute selective, micro-batch 1", name);
    model_memory q = plan_of(m, 2048, MODEL_RECOMPUTE_SELECTIVE, 1, label);
    CHECK(q.mxfp4 == mx, "%s: plan MXFP4 %zu bytes, the format says %zu", name, q.mxfp4, mx);
    CHECK(q.weights == d.weights - bf16 + mx, "%s: weights %zu = %zu − bf16 experts %zu + MXFP4 %zu", name, q.weights,
          d.weights, bf16, mx);
    CHECK(q.mxfp4_workspace == r64(n * 2), "%s: workspace %zu, one expert matrix in bf16 is %zu", name,
          q.mxfp4_workspace, n * 2);
    CHECK(q.activations == d.activations + q.mxfp4_workspace && q.masters == d.masters && q.grads == d.grads &&
          q.moments == d.moments, "%s: only the weights and the workspace differ", name);
    double bits = 8.0 * (double)mx / (double)(layers * E * 3 * n);
    CHECK(bits > 4.24 && bits < 4.26, "%s: %.3f bits an expert weight", name, bits);
    printf("%s: experts %.2f GiB in bf16, %.2f GiB in MXFP4 (%.3f bits a weight)\n\n", name, bf16 / 1073741824.0,
           mx / 1073741824.0, bits);
}

// The largest micro-batch whose plan fits `card` (its budget as --micro-batch auto judges it).
static void fit(model *m, int mx, model_recompute rc, size_t card, const char *card_name, const char *label,
                int must_fit) {
    char err[1024], line[320];
    model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_LORA, .checkpoint = rc,
                       .experts_mxfp4 = mx};
    model_memory one;
    CHECK(model_plan(m, &o, &one, err, sizeof err) == 0, "%s: %s", label, err);
    plan_fit f;
    size_t budget = plan_fit_budget(card, card, 1, 1);
    int rc2 = plan_fit_micro_batch(m, &o, 64, budget, &f, err, sizeof err);
    if (rc2 == 0) plan_fit_describe(&f, line, sizeof line);
    printf("PLAN: %s seq 2048 recompute %s, micro-batch 1: %.2f GiB (weights %.2f GiB); on %s: %s\n", label,
           model_recompute_name(rc), one.total / 1073741824.0, one.weights / 1073741824.0, card_name,
           rc2 == 0 ? line : err);
    CHECK(!must_fit || rc2 == 0, "%s fits %s: %s", label, card_name, err);
}

int main(void) {
    static const struct { const char *file, *name; size_t card; const char *card_name; } models[] = {
        {"gpt-oss-120b.json", "gpt-oss-120b", H200, "an H200 (143771 MiB)"},
        {"gpt-oss-20b.json", "gpt-oss-20b", H100_80GB, "an H100 80GB (81559 MiB)"},
    };
    static const struct { unsigned targets; const char *what; } sets[] = {
        {LORA_ATTENTION, "LoRA r16 attention"},
        {LORA_ALL_LINEAR, "LoRA r16 all-linear (attention + experts)"},
    };
    for (int i = 0; i < 2; i++)
        for (int t = 0; t < 2; t++) {
            model_config c;
            model *m = open_config_lora16(models[i].file, &c, sets[t].targets);
            if (!m) continue;
            char label[256];
            snprintf(label, sizeof label, "%s %s", models[i].name, sets[t].what);
            if (t == 0) check_counts(m, &c, models[i].name);
            for (int rc = 0; rc < 2; rc++) {
                model_recompute r = rc ? MODEL_RECOMPUTE_FULL : MODEL_RECOMPUTE_SELECTIVE;
                char l2[300];
                snprintf(l2, sizeof l2, "%s, experts MXFP4", label);
                fit(m, 1, r, models[i].card, models[i].card_name, l2, 1);
                snprintf(l2, sizeof l2, "%s, experts bf16", label);
                fit(m, 0, r, models[i].card, models[i].card_name, l2, i == 1);
            }
            if (i == 0) {   // 120b with bf16 experts: refused, and the refusal names MXFP4 experts
                char err[1024];
                model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_LORA,
                                   .checkpoint = MODEL_RECOMPUTE_FULL};
                plan_fit f;
                CHECK(plan_fit_micro_batch(m, &o, 64, plan_fit_budget(H200, H200, 1, 1), &f, err, sizeof err) == -1 &&
                      strstr(err, "--experts-dtype mxfp4 ("), "120b bf16 experts refused with the MXFP4 advice: %s", err);
            }
            printf("\n");
            model_free(m);
        }
    return test_finish("test_mxfp4_plan");
}
