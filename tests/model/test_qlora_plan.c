// tests/model/test_qlora_plan.c — the memory plan of QLoRA (model_options.quant), from published
// configs without weights (examples/configs): the NF4 bytes are exactly the codes, the 8-bit
// absmax and the nested f32 absmax of every decoder linear (each buffer rounded to 64 bytes, as
// the arenas take them), the bf16 linears leave the weights, the dequantisation workspace is the
// largest linear in bf16; and the plans the issue asks for, printed as PLANS (what quarry would
// allocate, not measurements): Llama-3.3-70B QLoRA r16 on one 80 GB card at seq 2048 and 8192
// with full recomputation (both fit; bf16 LoRA does not, and its refusal suggests --quantize
// nf4), Llama-3.1-8B QLoRA beside bf16 LoRA; with NF4 experts, Qwen3-30B-A3B and Mixtral-8x7B
// QLoRA r16 on one 80 GB card at 2048 and 8192 (check_moe_plans).
#include "test.h"
#include "config_plan.h"
#include "kernels/nf4_format.h"
#include "model/plan_fit.h"

static const size_t H100_80GB = (size_t)81559 << 20;   // what an H100 80GB reports (quarry plan's card)

// The NF4 bytes of a config's decoder linears, computed here from the format alone: per layer
// q, k, v, o and the dense MLP's gate, up, down, or on a sparse MoE layer each expert's three.
static void nf4_expected(const model_config *c, size_t *nf4, size_t *bf16_linears, size_t *largest) {
    size_t C = (size_t)c->hidden_size, Q = (size_t)c->num_heads * (size_t)c->head_dim;
    size_t K = (size_t)c->num_kv_heads * (size_t)c->head_dim, F = (size_t)c->intermediate_size;
    size_t I = (size_t)c->moe_intermediate_size;
    *nf4 = *bf16_linears = *largest = 0;
    for (int l = 0; l < c->num_layers; l++) {
        int moe = model_config_layer_is_moe(c, l);
        size_t n[7] = {Q * C, K * C, K * C, C * Q, (moe ? I : F) * C, (moe ? I : F) * C, C * (moe ? I : F)};
        for (int i = 0; i < 7; i++) {
            size_t copies = moe && i >= 4 ? (size_t)c->n_experts : 1;
            *nf4 += copies * (r64(nf4_packed_bytes(n[i])) + r64(nf4_n_blocks(n[i])) + r64(nf4_n_nested(n[i]) * 4));
            *bf16_linears += copies * r64(n[i] * 2);
            if (n[i] > *largest) *largest = n[i];
        }
    }
}

static model_memory plan_of(model *m, int seq, model_recompute rc, model_quant q, const char *label) {
    model_options o = {.batch_size = 1, .seq_len = seq, .train = MODEL_TRAIN_LORA, .checkpoint = rc, .quant = q};
    model_memory p = plan_printed(m, &o, label);
    printf("  exact bytes: weights %zu (NF4 %zu), masters %zu, grads %zu, AdamW %zu, activations %zu "
           "(NF4 workspace %zu), total %zu\n\n", p.weights, p.nf4, p.masters, p.grads, p.moments, p.activations,
           p.nf4_workspace, p.total);
    return p;
}

static void check_counts(model *m, const model_config *c, const char *name) {
    size_t nf4, lin, largest;
    nf4_expected(c, &nf4, &lin, &largest);
    char label[256];
    snprintf(label, sizeof label, "%s bf16 LoRA r16, seq 2048, recompute full, micro-batch 1", name);
    model_memory d = plan_of(m, 2048, MODEL_RECOMPUTE_FULL, MODEL_QUANT_NONE, label);
    snprintf(label, sizeof label, "%s QLoRA r16, seq 2048, recompute full, micro-batch 1", name);
    model_memory q = plan_of(m, 2048, MODEL_RECOMPUTE_FULL, MODEL_QUANT_NF4, label);
    CHECK(q.nf4 == nf4, "%s: plan NF4 %zu bytes, the format says %zu", name, q.nf4, nf4);
    CHECK(q.weights == d.weights - lin + nf4, "%s: weights %zu = %zu − bf16 linears %zu + NF4 %zu", name, q.weights,
          d.weights, lin, nf4);
    CHECK(q.nf4_workspace == r64(largest * 2), "%s: workspace %zu, the largest linear in bf16 is %zu", name,
          q.nf4_workspace, largest * 2);
    CHECK(q.activations == d.activations + q.nf4_workspace && q.masters == d.masters && q.grads == d.grads &&
          q.moments == d.moments, "%s: only the weights and the workspace differ", name);
    // Plain absmax: f32 per block instead of a byte (and no nested absmax).
    char err[256];
    model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_LORA, .quant = MODEL_QUANT_NF4_PLAIN};
    model_memory pl;
    CHECK(model_plan(m, &o, &pl, err, sizeof err) == 0 && pl.nf4 > q.nf4, "%s: plain absmax %zu > %zu", name, pl.nf4,
          q.nf4);
}

// NF4 experts: Qwen3-30B-A3B and Mixtral-8x7B QLoRA r16 on one 80 GB card (PLANS). Each
// expert's matrices are NF4; the router, norms, embeddings and lm_head stay bf16. Mixtral's bf16
// weights alone (93 GB) do not fit; in NF4 it fits at 2048 and 8192.
static void check_moe_plans(size_t budget) {
    static const char *files[2] = {"Qwen3-30B-A3B.json", "Mixtral-8x7B-v0.1.json"};
    static const char *names[2] = {"Qwen3-30B-A3B", "Mixtral-8x7B"};
    for (int i = 0; i < 2; i++) {
        model_config c;
        model *m = open_config_lora16(files[i], &c, LORA_ALL_LINEAR);
        if (!m) continue;
        check_counts(m, &c, names[i]);
        char label[256], err[512], line[320];
        for (int seq = 2048; seq <= 8192; seq *= 4) {
            snprintf(label, sizeof label, "%s QLoRA r16, seq %d, recompute full, micro-batch 1", names[i], seq);
            model_memory p = plan_of(m, seq, MODEL_RECOMPUTE_FULL, MODEL_QUANT_NF4, label);
            CHECK(p.total <= budget, "%s QLoRA at %d fits one 80 GB card: %zu > %zu", names[i], seq, p.total, budget);
            model_options o = {.batch_size = 1, .seq_len = seq, .train = MODEL_TRAIN_LORA,
                               .checkpoint = MODEL_RECOMPUTE_FULL, .quant = MODEL_QUANT_NF4};
            plan_fit f;
            CHECK(plan_fit_micro_batch(m, &o, 64, budget, &f, err, sizeof err) == 0, "%s QLoRA %d: %s", names[i], seq,
                  err);
            plan_fit_describe(&f, line, sizeof line);
            printf("PLAN: %s QLoRA r16 seq %d recompute full on an H100 80GB (81559 MiB): %s\n", names[i], seq, line);
        }
        if (i == 1) {   // Mixtral in bf16 LoRA is refused, with the QLoRA advice
            model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_LORA,
                               .checkpoint = MODEL_RECOMPUTE_FULL, .quant = MODEL_QUANT_NONE};
            plan_fit f;
            CHECK(plan_fit_micro_batch(m, &o, 64, budget, &f, err, sizeof err) == -1 && strstr(err, "--quantize nf4 ("),
                  "Mixtral bf16 LoRA refused with the QLoRA advice: %s", err);
            printf("Mixtral-8x7B bf16 LoRA on an H100 80GB: %s\n\n", err);
        }
        model_free(m);
    }
}

int main(void) {
    char err[1024];
    size_t budget = plan_fit_budget(H100_80GB, H100_80GB, 1, 1);
    model_config c70;
    model *m = open_config_lora16("Llama-3.3-70B-Instruct.json", &c70, LORA_ALL_LINEAR);
    if (m) {
        check_counts(m, &c70, "Llama-3.3-70B");
        model_memory p8k = plan_of(m, 8192, MODEL_RECOMPUTE_FULL, MODEL_QUANT_NF4,
                                   "Llama-3.3-70B QLoRA r16, seq 8192, recompute full, micro-batch 1");
        CHECK(p8k.total <= budget, "70B QLoRA at 8192 fits one 80 GB card: %zu > %zu", p8k.total, budget);
        model_options o = {.batch_size = 1, .seq_len = 2048, .train = MODEL_TRAIN_LORA,
                           .checkpoint = MODEL_RECOMPUTE_FULL, .quant = MODEL_QUANT_NF4};
        plan_fit f;
        CHECK(plan_fit_micro_batch(m, &o, 64, budget, &f, err, sizeof err) == 0, "70B QLoRA 2048: %s", err);
        char line[320];
        plan_fit_describe(&f, line, sizeof line);
        printf("PLAN: 70B QLoRA r16 seq 2048 recompute full on an H100 80GB (81559 MiB): %s\n", line);
        o.seq_len = 8192;
        CHECK(plan_fit_micro_batch(m, &o, 64, budget, &f, err, sizeof err) == 0, "70B QLoRA 8192: %s", err);
        plan_fit_describe(&f, line, sizeof line);
        printf("PLAN: 70B QLoRA r16 seq 8192 recompute full on an H100 80GB (81559 MiB): %s\n", line);
        // bf16 LoRA does not fit, and the refusal names QLoRA with what it would take.
        o.quant = MODEL_QUANT_NONE;
        o.seq_len = 2048;
        CHECK(plan_fit_micro_batch(m, &o, 64, budget, &f, err, sizeof err) == -1 && strstr(err, "--quantize nf4 ("),
              "70B bf16 LoRA refused with the QLoRA advice: %s", err);
        printf("70B bf16 LoRA on an H100 80GB: %s\n\n", err);
    }
    model_free(m);
    model_config c8;
    m = open_config_lora16("Llama-3.1-8B.json", &c8, LORA_ALL_LINEAR);
    if (m) {
        check_counts(m, &c8, "Llama-3.1-8B");
        model_memory l = plan_of(m, 2048, MODEL_RECOMPUTE_SELECTIVE, MODEL_QUANT_NONE,
                                 "Llama-3.1-8B bf16 LoRA r16, seq 2048, recompute selective, micro-batch 1");
        model_memory q = plan_of(m, 2048, MODEL_RECOMPUTE_SELECTIVE, MODEL_QUANT_NF4,
                                 "Llama-3.1-8B QLoRA r16, seq 2048, recompute selective, micro-batch 1");
        // The linears' 14 GiB in bf16 become 3.35 GiB of NF4: more than 9 GiB saved.
        CHECK(q.total + ((size_t)9 << 30) < l.total, "8B: QLoRA %zu saves > 9 GiB over LoRA %zu", q.total, l.total);
    }
    model_free(m);
    check_moe_plans(budget);
    return test_finish("test_qlora_plan");
}
