// trainer/settings.c — see settings.h.
#include "settings.h"
#include "schedule.h"
#include "../data/fileio.h"
#include "../model/llama.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void settings_defaults(train_settings *s) {
    memset(s, 0, sizeof *s);
    s->device = "auto";
    s->lora_r = 16;
    s->lora_alpha = 32;
    s->lora_dropout = 0.0;
    s->lora_targets = "all-linear";
    s->epochs = 1;
    s->batch_size = 8;
    s->micro_batch = 0;        // 0: as large as the batch (the planner may lower it)
    s->lr = 1e-4;
    s->min_lr_ratio = 0.0;
    s->weight_decay = 0.0;
    s->beta1 = 0.9;
    s->beta2 = 0.999;
    s->eps = 1e-8;
    s->max_grad_norm = 1.0;
    s->warmup_steps = 0;
    s->schedule = SCHEDULE_LINEAR;
    s->max_seq_len = 2048;
    s->seed = 42;
    s->eval_every = 0;         // 0: once per epoch
    s->save_every = 0;         // 0: at the end of each epoch
    s->keep_checkpoints = 2;
    // Bitwise the same results as keeping everything, for a third less activation memory and
    // no GEMM run twice (model/llama.h); full recomputation is for when that is not enough.
    s->recompute = MODEL_RECOMPUTE_SELECTIVE;
}

static int parse_number(const cJSON *v, double *out) {
    if (cJSON_IsNumber(v)) { *out = v->valuedouble; return 0; }
    if (!cJSON_IsString(v) || !v->valuestring[0]) return -1;
    char *end;
    errno = 0;
    double d = strtod(v->valuestring, &end);
    while (*end == ' ') end++;
    if (*end || errno || !isfinite(d)) return -1;
    *out = d;
    return 0;
}

int settings_load_hyperparameters(train_settings *s, const char *path, char *err, size_t errlen) {
    char *text;
    size_t len;
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object (expected e.g. {\"epochCount\": \"2\", \"batchSize\": \"8\", "
                 "\"learningRate\": \"0.0001\", \"learningRateWarmupSteps\": \"10\"})", path);
        cJSON_Delete(root);
        free(text);
        return -1;
    }
    int rc = 0;
    for (const cJSON *it = root->child; it && !rc; it = it->next) {
        double v;
        int is_int = 1;
        int *idst = NULL;
        double *ddst = NULL;
        if (!strcmp(it->string, "epochCount")) idst = &s->epochs;
        else if (!strcmp(it->string, "batchSize")) idst = &s->batch_size;
        else if (!strcmp(it->string, "learningRateWarmupSteps")) idst = &s->warmup_steps;
        else if (!strcmp(it->string, "learningRate")) { ddst = &s->lr; is_int = 0; }
        else {
            snprintf(err, errlen, "%s: unknown hyperparameter \"%s\"; Bedrock's are epochCount, batchSize, "
                     "learningRate, learningRateWarmupSteps (other settings are flags: see quarry train --help)", path, it->string);
            rc = -1;
            break;
        }
        if (parse_number(it, &v) || (is_int && (v != floor(v) || v < 0 || v > 1e9))) {
            snprintf(err, errlen, "%s: \"%s\" must be a %s given as a string, e.g. \"%s\"", path, it->string,
                     is_int ? "whole number" : "number", is_int ? "2" : "0.0001");
            rc = -1;
            break;
        }
        if (idst) *idst = (int)v;
        else *ddst = v;
    }
    cJSON_Delete(root);
    free(text);
    return rc;
}

int settings_check(train_settings *s, char *err, size_t errlen) {
#define REQUIRE(cond, ...) do { if (!(cond)) { snprintf(err, errlen, __VA_ARGS__); return -1; } } while (0)
    REQUIRE(s->epochs >= 1, "--epochs must be at least 1 (got %d)", s->epochs);
    REQUIRE(s->batch_size >= 1, "--batch-size must be at least 1 (got %d)", s->batch_size);
    REQUIRE(s->lr > 0 && s->lr < 1, "--lr must be in (0, 1) (got %g)", s->lr);
    REQUIRE(s->warmup_steps >= 0, "--warmup-steps must be ≥ 0");
    REQUIRE(s->max_seq_len >= 8 && s->max_seq_len <= 1 << 20, "--max-seq-len must be in [8, 1048576] (got %d)", s->max_seq_len);
    REQUIRE(s->full || (s->lora_r >= 1 && s->lora_r <= 4096), "--lora-r must be in [1, 4096] (got %d)", s->lora_r);
    REQUIRE(s->lora_alpha > 0, "--lora-alpha must be positive");
    REQUIRE(s->lora_dropout >= 0 && s->lora_dropout < 1, "--lora-dropout must be in [0, 1)");
    REQUIRE(s->weight_decay >= 0, "--weight-decay must be ≥ 0");
    REQUIRE(s->max_grad_norm >= 0, "--max-grad-norm must be ≥ 0 (0 disables clipping)");
    REQUIRE(s->validation_split >= 0 && s->validation_split < 1, "--validation-split must be in [0, 1)");
    REQUIRE(s->keep_checkpoints >= 1, "--keep-checkpoints must be at least 1");
    if (s->micro_batch <= 0 || s->micro_batch > s->batch_size) s->micro_batch = s->batch_size;
    REQUIRE(s->batch_size % s->micro_batch == 0, "--batch-size %d is not a multiple of --micro-batch %d",
            s->batch_size, s->micro_batch);
    s->grad_accum = s->batch_size / s->micro_batch;
    return 0;
#undef REQUIRE
}

cJSON *settings_to_json(const train_settings *s) {
    cJSON *o = cJSON_CreateObject();
#define STR(k, v) cJSON_AddStringToObject(o, k, (v) ? (v) : "")
#define NUM(k, v) cJSON_AddNumberToObject(o, k, (double)(v))
    STR("model", s->model_dir);
    STR("data", s->data_path);
    STR("validation", s->validation_path);
    STR("out", s->out_dir);
    STR("template", s->template_name);
    STR("template_date", s->template_date);
    STR("device", s->device);
    STR("method", s->full ? "full" : "lora");
    if (!s->full) {
        NUM("lora_r", s->lora_r);
        NUM("lora_alpha", s->lora_alpha);
        NUM("lora_dropout", s->lora_dropout);
        STR("lora_targets", s->lora_targets);
        cJSON_AddBoolToObject(o, "rslora", s->rslora);
    }
    NUM("epochs", s->epochs);
    NUM("batch_size", s->batch_size);
    NUM("micro_batch", s->micro_batch);
    NUM("grad_accum", s->grad_accum);
    NUM("learning_rate", s->lr);
    NUM("warmup_steps", s->warmup_steps);
    STR("schedule", schedule_name(s->schedule));
    NUM("min_lr_ratio", s->min_lr_ratio);
    NUM("weight_decay", s->weight_decay);
    NUM("beta1", s->beta1);
    NUM("beta2", s->beta2);
    NUM("eps", s->eps);
    NUM("max_grad_norm", s->max_grad_norm);
    NUM("max_steps", s->max_steps);
    NUM("max_seq_len", s->max_seq_len);
    STR("on_long", s->on_long_error ? "error" : "truncate");
    STR("truncate", s->truncate_left ? "left" : "right");
    cJSON_AddBoolToObject(o, "truncate_explicit", s->truncate_explicit);
    cJSON_AddBoolToObject(o, "allow_extra_keys", s->allow_extra_keys);
    cJSON_AddBoolToObject(o, "train_on_prompt", s->train_on_prompt);
    NUM("validation_split", s->validation_split);
    NUM("seed", (double)s->seed);
    NUM("eval_every", s->eval_every);
    NUM("save_every", s->save_every);
    NUM("keep_checkpoints", s->keep_checkpoints);
    NUM("early_stopping_patience", s->early_stopping_patience);
    STR("recompute", model_recompute_name((model_recompute)s->recompute));
    cJSON_AddBoolToObject(o, "micro_batch_auto", s->micro_batch_auto);
#undef STR
#undef NUM
    return o;
}
