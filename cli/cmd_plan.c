// cli/cmd_plan.c — `quarry plan CONFIG`: the memory plan of a fine-tune from a config.json alone
// (no weights, no device): the bytes `quarry train` would allocate for weights, masters,
// gradients, AdamW state and activations, and the largest micro-batch that fits each GPU size
// asked about — the answer to "will it fit on my card?" before anything is downloaded.
#include "args.h"
#include "commands.h"
#include "../data/fileio.h"
#include "../model/bnb4.h"
#include "../model/config.h"
#include "../model/llama.h"
#include "../model/mxfp4_load.h"
#include "../model/plan_fit.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// What nvidia-smi reports as the total of the cards quarry is measured on (docs/BENCHMARKS.md).
static const struct { const char *name; long long bytes; } known_cards[] = {
    {"H100 80GB (81559 MiB)", 81559LL << 20},
    {"H200 (143771 MiB)", 143771LL << 20},
};

static cJSON *plan_json(const model_memory *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "weights", (double)p->weights);
    cJSON_AddNumberToObject(o, "masters", (double)p->masters);
    cJSON_AddNumberToObject(o, "grads", (double)p->grads);
    cJSON_AddNumberToObject(o, "optimizer", (double)p->moments);
    cJSON_AddNumberToObject(o, "activations", (double)p->activations);
    cJSON_AddNumberToObject(o, "total", (double)p->total);
    if (p->quant != MODEL_QUANT_NONE) {   // parts of weights and activations
        cJSON_AddNumberToObject(o, "nf4", (double)p->nf4);
        cJSON_AddNumberToObject(o, "nf4_workspace", (double)p->nf4_workspace);
    }
    if (p->experts_mxfp4) {
        cJSON_AddNumberToObject(o, "mxfp4", (double)p->mxfp4);
        cJSON_AddNumberToObject(o, "mxfp4_workspace", (double)p->mxfp4_workspace);
    }
    cJSON_AddNumberToObject(o, "params_total", (double)p->params_total);
    cJSON_AddNumberToObject(o, "params_trained", (double)p->params_trained);
    cJSON_AddNumberToObject(o, "params_trained_experts", (double)p->params_trained_experts);
    return o;
}

int cmd_plan(int argc, char **argv) {
    const char *method = "lora", *targets = "all-linear", *recompute = "selective", *dtype_s = "bf16";
    const char *quantize = NULL, *experts_dtype = NULL;
    int lora_r = 16, seq_len = 2048, micro = 1, batch = 64, json = 0, no_double_quant = 0;
    long long gpu_memory = 0;
    const arg_spec specs[] = {
        {"method", ARG_STRING, &method, "lora|full", "LoRA adapters (default) or all weights"},
        {"lora-r", ARG_INT, &lora_r, "R", "LoRA rank (default 16)"},
        {"lora-targets", ARG_STRING, &targets, "LIST",
         "all-linear (default), attention, experts, or q,k,v,o,gate,up,down,experts,router (gpt-oss: all-linear "
         "= attention + the fused experts as PEFT's target_parameters)"},
        {"quantize", ARG_STRING, &quantize, "nf4", "QLoRA: the frozen decoder linears in 4-bit NF4 (double quant)"},
        {"no-double-quant", ARG_FLAG, &no_double_quant, NULL, "with --quantize nf4: plain f32 absmax"},
        {"experts-dtype", ARG_STRING, &experts_dtype, "mxfp4|bf16", "gpt-oss: the experts kept in MXFP4 (default for "
         "LoRA when config.json's quantization_config is mxfp4, as published) or dequantised to bf16"},
        {"max-seq-len", ARG_INT, &seq_len, "T", "tokens per sequence (default 2048)"},
        {"micro-batch", ARG_INT, &micro, "N", "sequences per forward pass for the plan printed (default 1)"},
        {"batch-size", ARG_INT, &batch, "N", "upper end of the micro-batch search per card (default 64)"},
        {"recompute", ARG_STRING, &recompute, "none|selective|full", "activations the backward recomputes (default selective)"},
        {"dtype", ARG_STRING, &dtype_s, "bf16|fp32", "activation dtype: bf16 as on GPUs (default), fp32 as on the CPU"},
        {"gpu-memory", ARG_BYTES, &gpu_memory, "SIZE", "the card's memory (e.g. 48GiB); default: an H100 80GB and an H200"},
        {"json", ARG_FLAG, &json, NULL, "the plan and the fits as JSON"},
    };
    const arg_parser p = {"plan", "quarry plan CONFIG [options]",
                          "Prints the memory plan quarry train would allocate for CONFIG (a config.json, or a\n"
                          "checkpoint directory holding one), from the config alone, and the largest micro-batch\n"
                          "whose plan fits each card (its memory less 5% and 256 MiB, as --micro-batch auto judges).\n"
                          "A plan, not a measurement: it counts quarry's allocations, not the CUDA context or\n"
                          "cuBLAS workspaces.",
                          specs, (int)(sizeof specs / sizeof specs[0]), 1, 1};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;

    model_options o = {.batch_size = micro, .seq_len = seq_len};
    if (!strcmp(method, "lora")) o.train = MODEL_TRAIN_LORA;
    else if (!strcmp(method, "full")) o.train = MODEL_TRAIN_FULL;
    else { fprintf(stderr, "quarry plan: error: --method must be lora or full (got '%s')\n", method); return 2; }
    if (quantize && strcmp(quantize, "nf4")) {
        fprintf(stderr, "quarry plan: error: --quantize must be nf4 (got '%s')\n", quantize);
        return 2;
    }
    if (no_double_quant && !quantize) {
        fprintf(stderr, "quarry plan: error: --no-double-quant applies to --quantize nf4\n");
        return 2;
    }
    o.quant = !quantize ? MODEL_QUANT_NONE : no_double_quant ? MODEL_QUANT_NF4_PLAIN : MODEL_QUANT_NF4;
    model_recompute r;
    if (model_recompute_parse(recompute, &r)) {
        fprintf(stderr, "quarry plan: error: --recompute must be none, selective or full (got '%s')\n", recompute);
        return 2;
    }
    o.checkpoint = r;
    dtype act = DTYPE_BF16;
    if (!strcmp(dtype_s, "fp32")) act = DTYPE_F32;
    else if (strcmp(dtype_s, "bf16")) { fprintf(stderr, "quarry plan: error: --dtype must be bf16 or fp32\n"); return 2; }
    if (micro < 1 || batch < 1 || seq_len < 1 || gpu_memory < 0) {
        fprintf(stderr, "quarry plan: error: --micro-batch, --batch-size and --max-seq-len must be positive\n");
        return 2;
    }

    char err[1024];
    // A checkpoint in bitsandbytes' 4-bit layout loads as QLoRA whatever the flags say.
    char cj[4200];
    snprintf(cj, sizeof cj, "%s/config.json", pos[0]);
    int dq = 0, four = fileio_exists(cj) ? bnb4_detect(pos[0], &dq, err, sizeof err) : 0;
    if (four < 0) { fprintf(stderr, "quarry plan: error: %s\n", err); return 1; }
    if (four) o.quant = dq ? MODEL_QUANT_NF4 : MODEL_QUANT_NF4_PLAIN;
    model_config cfg;
    if (model_config_load(&cfg, pos[0], err, sizeof err)) { fprintf(stderr, "quarry plan: error: %s\n", err); return 1; }
    if (seq_len > cfg.max_position_embeddings) {
        fprintf(stderr, "quarry plan: error: --max-seq-len %d is longer than this model's context (%d)\n", seq_len,
                cfg.max_position_embeddings);
        return 1;
    }
    if (experts_dtype && strcmp(experts_dtype, "mxfp4") && strcmp(experts_dtype, "bf16")) {
        fprintf(stderr, "quarry plan: error: --experts-dtype must be mxfp4 or bf16 (got '%s')\n", experts_dtype);
        return 2;
    }
    // As quarry train resolves it (trainer/settings.h): MXFP4 kept for LoRA on an MXFP4 checkpoint.
    o.experts_mxfp4 = experts_dtype ? !strcmp(experts_dtype, "mxfp4")
                                    : mxfp4_checkpoint(pos[0]) && o.train == MODEL_TRAIN_LORA && !quantize && !four;
    model *m = model_open_config(&cfg, act, err, sizeof err);
    if (!m) { fprintf(stderr, "quarry plan: error: %s\n", err); return 1; }
    int status = 1;
    cJSON *out = cJSON_CreateObject();
    if (o.train == MODEL_TRAIN_LORA) {
        lora_config lc = lora_config_default();
        lc.rank = lora_r;
        if (lora_targets_parse(targets, &lc.targets, err, sizeof err) || model_enable_lora(m, &lc, err, sizeof err))
            goto done;
    }
    model_memory plan;
    if (model_plan(m, &o, &plan, err, sizeof err)) goto done;
    if (json) cJSON_AddItemToObject(out, "plan", plan_json(&plan));
    else {
        printf("%s, %s, seq %d, micro-batch %d, recompute %s, %s activations\n", cfg.architecture,
               o.train != MODEL_TRAIN_LORA ? "full fine-tune" : o.quant ? "QLoRA (NF4 base)" : o.experts_mxfp4 ? "LoRA (MXFP4 experts)" : "LoRA", seq_len, micro, recompute, dtype_s);
        model_memory_print(&plan, stdout);
    }
    cJSON *fits = cJSON_AddArrayToObject(out, "fits");
    int ncards = gpu_memory ? 1 : (int)(sizeof known_cards / sizeof known_cards[0]);
    for (int i = 0; i < ncards; i++) {
        char name[64];
        long long bytes = gpu_memory ? gpu_memory : known_cards[i].bytes;
        if (gpu_memory) snprintf(name, sizeof name, "%.2f GiB", gpu_memory / 1073741824.0);
        else snprintf(name, sizeof name, "%s", known_cards[i].name);
        plan_fit f;
        char line[320];
        cJSON *fj = cJSON_CreateObject();
        cJSON_AddItemToArray(fits, fj);
        cJSON_AddStringToObject(fj, "card", name);
        cJSON_AddNumberToObject(fj, "memory_bytes", (double)bytes);
        if (plan_fit_micro_batch(m, &o, batch, plan_fit_budget((size_t)bytes, (size_t)bytes, 1, 1), &f, line,
                                 sizeof line)) {
            cJSON_AddNullToObject(fj, "largest_micro_batch");
            cJSON_AddStringToObject(fj, "why", line);
            if (!json) printf("%s: does not fit: %s\n", name, line);
            continue;
        }
        cJSON_AddNumberToObject(fj, "largest_micro_batch", f.largest);
        cJSON_AddNumberToObject(fj, "micro_batch", f.micro_batch);   // --micro-batch auto's even split of --batch-size
        cJSON_AddNumberToObject(fj, "plan_bytes", (double)f.plan_bytes);
        plan_fit_describe(&f, line, sizeof line);
        if (!json) printf("%s: %s\n", name, line);
    }
    if (json) {
        char *text = cJSON_Print(out);
        if (text) printf("%s\n", text);
        free(text);
    }
    status = 0;
done:
    if (status) fprintf(stderr, "quarry plan: error: %s\n", err);
    cJSON_Delete(out);
    model_free(m);
    return status;
}
