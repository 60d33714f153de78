// trainer/settings.c — see settings.h.
#include "settings.h"
#include "schedule.h"
#include "../data/fileio.h"
#include "../model/llama.h"
#include <errno.h>
#include <limits.h>
#include <stddef.h>
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
    s->router_aux_loss_coef = -1.0;   // the config's (router_aux_loss_coef when output_router_logits)
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
    REQUIRE(s->router_aux_loss_coef >= 0 || s->router_aux_loss_coef == -1.0, "--router-aux-loss-coef must be ≥ 0");
    REQUIRE(s->max_grad_norm >= 0, "--max-grad-norm must be ≥ 0 (0 disables clipping)");
    REQUIRE(s->validation_split >= 0 && s->validation_split < 1, "--validation-split must be in [0, 1)");
    REQUIRE(!s->quantize || !strcmp(s->quantize, "nf4"), "--quantize must be nf4 (got '%s')", s->quantize);
    REQUIRE(!s->quantize || !s->full, "--quantize nf4 freezes the base in 4 bits and trains LoRA adapters over it "
            "(QLoRA); it cannot train all weights (--method full): use --method lora, or drop --quantize");
    REQUIRE(!s->no_double_quant || s->quantize, "--no-double-quant applies to --quantize nf4");
    REQUIRE(!s->experts_dtype || !strcmp(s->experts_dtype, "mxfp4") || !strcmp(s->experts_dtype, "bf16"),
            "--experts-dtype must be mxfp4 or bf16 (got '%s')", s->experts_dtype);
    int mx = s->experts_dtype && !strcmp(s->experts_dtype, "mxfp4");
    REQUIRE(!mx || !s->full, "--experts-dtype mxfp4 keeps the experts frozen as the checkpoint packs them; full "
            "fine-tuning trains them: use --experts-dtype bf16 with --method full, or --method lora");
    REQUIRE(!mx || !s->quantize, "--experts-dtype mxfp4 and --quantize nf4 both hold the experts; drop one");
    REQUIRE(s->keep_checkpoints >= 1, "--keep-checkpoints must be at least 1");
    if (s->micro_batch <= 0 || s->micro_batch > s->batch_size) s->micro_batch = s->batch_size;
    REQUIRE(s->batch_size % s->micro_batch == 0, "--batch-size %d is not a multiple of --micro-batch %d",
            s->batch_size, s->micro_batch);
    s->grad_accum = s->batch_size / s->micro_batch;
    return 0;
#undef REQUIRE
}

void settings_resolve_experts_dtype(train_settings *s, int checkpoint_mxfp4, int resumed) {
    if (s->experts_dtype) return;
    s->experts_dtype = !resumed && checkpoint_mxfp4 && !s->full && !s->quantize ? "mxfp4" : "bf16";
}

int settings_experts_mxfp4(const train_settings *s) {
    return s->experts_dtype && !strcmp(s->experts_dtype, "mxfp4");
}

int settings_quant(const train_settings *s) {
    if (!s->quantize) return MODEL_QUANT_NONE;
    return s->no_double_quant ? MODEL_QUANT_NF4_PLAIN : MODEL_QUANT_NF4;
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
    STR("quantize", s->quantize);
    cJSON_AddBoolToObject(o, "no_double_quant", s->no_double_quant);
    STR("experts_dtype", s->experts_dtype);
    NUM("epochs", s->epochs);
    NUM("batch_size", s->batch_size);
    NUM("micro_batch", s->micro_batch);
    NUM("grad_accum", s->grad_accum);
    NUM("learning_rate", s->lr);
    NUM("warmup_steps", s->warmup_steps);
    STR("schedule", schedule_name(s->schedule));
    NUM("min_lr_ratio", s->min_lr_ratio);
    NUM("weight_decay", s->weight_decay);
    NUM("router_aux_loss_coef", s->router_aux_loss_coef);
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

// Every setting run.json records, by key: how it is read back, and what a resume may do with it.
typedef enum { K_STR, K_OPTSTR, K_INT, K_DBL, K_BOOL, K_SEED, K_METHOD, K_SCHEDULE, K_ON_LONG, K_TRUNCATE, K_RECOMPUTE } key_type;
typedef enum {
    R_REFUSE,      // changes the trajectory
    R_SAFE,        // run control only
    R_NO_DROPOUT,  // the micro-batch split numbers the dropout streams: safe without dropout
    R_PATH,        // the same file, or a recorded file that is gone (its content is checked by hash)
    R_IGNORE,      // not compared: the run directory itself, or derived from other settings
} resume_rule;
typedef struct {
    const char *key, *flag;
    key_type type;
    size_t off;
    resume_rule rule;
} setting_key;

#define F(field) offsetof(train_settings, field)
static const setting_key keys[] = {
    {"model", "--model", K_STR, F(model_dir), R_PATH},
    {"data", "--data", K_STR, F(data_path), R_PATH},
    {"validation", "--validation", K_OPTSTR, F(validation_path), R_PATH},
    {"out", "--out", K_STR, F(out_dir), R_IGNORE},
    {"template", "--template", K_OPTSTR, F(template_name), R_REFUSE},
    {"template_date", "--template-date", K_OPTSTR, F(template_date), R_REFUSE},
    {"device", "--device", K_STR, F(device), R_SAFE},
    {"method", "--method", K_METHOD, F(full), R_REFUSE},
    {"lora_r", "--lora-r", K_INT, F(lora_r), R_REFUSE},
    {"lora_alpha", "--lora-alpha", K_DBL, F(lora_alpha), R_REFUSE},
    {"lora_dropout", "--lora-dropout", K_DBL, F(lora_dropout), R_REFUSE},
    {"lora_targets", "--lora-targets", K_STR, F(lora_targets), R_REFUSE},
    {"rslora", "--rslora", K_BOOL, F(rslora), R_REFUSE},
    {"quantize", "--quantize", K_OPTSTR, F(quantize), R_REFUSE},
    {"no_double_quant", "--no-double-quant", K_BOOL, F(no_double_quant), R_REFUSE},
    {"experts_dtype", "--experts-dtype", K_OPTSTR, F(experts_dtype), R_REFUSE},
    {"epochs", "--epochs", K_INT, F(epochs), R_REFUSE},
    {"batch_size", "--batch-size", K_INT, F(batch_size), R_REFUSE},
    {"micro_batch", "--micro-batch", K_INT, F(micro_batch), R_NO_DROPOUT},
    {"grad_accum", "--grad-accum", K_INT, F(grad_accum), R_IGNORE},   // batch / micro-batch, both compared
    {"learning_rate", "--lr", K_DBL, F(lr), R_REFUSE},
    {"warmup_steps", "--warmup-steps", K_INT, F(warmup_steps), R_REFUSE},
    {"schedule", "--schedule", K_SCHEDULE, F(schedule), R_REFUSE},
    {"min_lr_ratio", "min_lr_ratio", K_DBL, F(min_lr_ratio), R_REFUSE},
    {"weight_decay", "--weight-decay", K_DBL, F(weight_decay), R_REFUSE},
    {"router_aux_loss_coef", "--router-aux-loss-coef", K_DBL, F(router_aux_loss_coef), R_REFUSE},
    {"beta1", "beta1", K_DBL, F(beta1), R_REFUSE},
    {"beta2", "beta2", K_DBL, F(beta2), R_REFUSE},
    {"eps", "eps", K_DBL, F(eps), R_REFUSE},
    {"max_grad_norm", "--max-grad-norm", K_DBL, F(max_grad_norm), R_REFUSE},
    {"max_steps", "--max-steps", K_INT, F(max_steps), R_SAFE},
    {"max_seq_len", "--max-seq-len", K_INT, F(max_seq_len), R_REFUSE},
    {"on_long", "--on-long", K_ON_LONG, F(on_long_error), R_REFUSE},
    {"truncate", "--truncate", K_TRUNCATE, F(truncate_left), R_REFUSE},
    // Both only refuse data that would otherwise load alike: a run that started loads the same.
    {"truncate_explicit", "--truncate", K_BOOL, F(truncate_explicit), R_SAFE},
    {"allow_extra_keys", "--allow-extra-keys", K_BOOL, F(allow_extra_keys), R_SAFE},
    {"train_on_prompt", "--train-on-prompt", K_BOOL, F(train_on_prompt), R_REFUSE},
    {"validation_split", "--validation-split", K_DBL, F(validation_split), R_REFUSE},
    {"seed", "--seed", K_SEED, F(seed), R_REFUSE},
    {"eval_every", "--eval-every", K_INT, F(eval_every), R_SAFE},
    {"save_every", "--save-every", K_INT, F(save_every), R_SAFE},
    {"keep_checkpoints", "--keep-checkpoints", K_INT, F(keep_checkpoints), R_SAFE},
    {"early_stopping_patience", "--early-stopping-patience", K_INT, F(early_stopping_patience), R_REFUSE},
    {"recompute", "--recompute", K_RECOMPUTE, F(recompute), R_SAFE},
    {"micro_batch_auto", "--micro-batch auto", K_BOOL, F(micro_batch_auto), R_NO_DROPOUT},
};
#undef F
#define NKEYS ((int)(sizeof keys / sizeof keys[0]))
#define AT(s, k, T) ((T *)((char *)(s) + (k)->off))

int settings_from_json(const cJSON *o, train_settings *s, char *err, size_t errlen) {
    settings_defaults(s);
    if (!cJSON_IsObject(o)) { snprintf(err, errlen, "no \"settings\" object"); return -1; }
    for (int i = 0; i < NKEYS; i++) {
        const setting_key *k = &keys[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k->key);
        if (!v) continue;   // LoRA keys are absent from a full fine-tune's record
        int ok = 1;
        switch (k->type) {
        case K_STR: case K_OPTSTR:
            ok = cJSON_IsString(v);
            if (ok) *AT(s, k, const char *) = k->type == K_OPTSTR && !v->valuestring[0] ? NULL : v->valuestring;
            break;
        case K_INT:
            ok = cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 2e9;
            if (ok) *AT(s, k, int) = (int)v->valuedouble;
            break;
        case K_DBL:
            ok = cJSON_IsNumber(v);
            if (ok) *AT(s, k, double) = v->valuedouble;
            break;
        case K_BOOL:
            ok = cJSON_IsBool(v);
            if (ok) *AT(s, k, int) = cJSON_IsTrue(v);
            break;
        case K_SEED:
            ok = cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble == floor(v->valuedouble);
            if (ok) *AT(s, k, unsigned long long) = (unsigned long long)v->valuedouble;
            break;
        case K_METHOD:
            ok = cJSON_IsString(v) && (!strcmp(v->valuestring, "lora") || !strcmp(v->valuestring, "full"));
            if (ok) s->full = !strcmp(v->valuestring, "full");
            break;
        case K_SCHEDULE:
            ok = cJSON_IsString(v) && schedule_parse(v->valuestring) >= 0;
            if (ok) s->schedule = schedule_parse(v->valuestring);
            break;
        case K_ON_LONG:
            ok = cJSON_IsString(v) && (!strcmp(v->valuestring, "error") || !strcmp(v->valuestring, "truncate"));
            if (ok) s->on_long_error = !strcmp(v->valuestring, "error");
            break;
        case K_TRUNCATE:
            ok = cJSON_IsString(v) && (!strcmp(v->valuestring, "left") || !strcmp(v->valuestring, "right"));
            if (ok) s->truncate_left = !strcmp(v->valuestring, "left");
            break;
        case K_RECOMPUTE: {
            model_recompute r;
            ok = cJSON_IsString(v) && !model_recompute_parse(v->valuestring, &r);
            if (ok) s->recompute = (int)r;
            break;
        }
        }
        if (!ok) { snprintf(err, errlen, "settings.%s has an unexpected value", k->key); return -1; }
    }
    return 0;
}

void settings_unset(train_settings *s) {
    memset(s, 0, sizeof *s);   // strings NULL, on/off flags off
    for (int i = 0; i < NKEYS; i++) {
        const setting_key *k = &keys[i];
        if (k->type == K_INT) *AT(s, k, int) = SETTINGS_UNSET_INT;
        else if (k->type == K_DBL) *AT(s, k, double) = NAN;
    }
}

void settings_overlay(train_settings *s, const train_settings *given) {
    for (int i = 0; i < NKEYS; i++) {
        const setting_key *k = &keys[i];
        switch (k->type) {
        case K_STR: case K_OPTSTR:
            if (*AT(given, k, const char *const)) *AT(s, k, const char *) = *AT(given, k, const char *const);
            break;
        case K_INT:
            if (*AT(given, k, const int) != SETTINGS_UNSET_INT) *AT(s, k, int) = *AT(given, k, const int);
            break;
        case K_DBL:
            if (!isnan(*AT(given, k, const double))) *AT(s, k, double) = *AT(given, k, const double);
            break;
        case K_BOOL:
            if (*AT(given, k, const int)) *AT(s, k, int) = 1;
            break;
        default:   // parsed from their own flags by the caller
            break;
        }
    }
    if (given->resume_dir) s->resume_dir = given->resume_dir;
    if (given->quiet) s->quiet = 1;
}

static const setting_key *key_named(const char *name) {
    for (int i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].key, name)) return &keys[i];
    return NULL;
}

// Two paths name the same file (both resolved); an unresolvable one equals only itself.
static int same_file(const char *a, const char *b) {
    char ra[4096], rb[4096];
    if (!a || !b) return a == b;
    if (!realpath(a, ra) || !realpath(b, rb)) return !strcmp(a, b);
    return !strcmp(ra, rb);
}

static void value_text(const cJSON *v, char *out, size_t n) {
    if (!v) snprintf(out, n, "(none)");
    else if (cJSON_IsString(v)) snprintf(out, n, "%s", v->valuestring[0] ? v->valuestring : "(none)");
    else if (cJSON_IsBool(v)) snprintf(out, n, "%s", cJSON_IsTrue(v) ? "on" : "off");
    else snprintf(out, n, "%.17g", v->valuedouble);
}

int settings_resume_changes(const train_settings *recorded, const train_settings *now, cJSON **changed, char *err,
                            size_t errlen) {
    cJSON *a = settings_to_json(recorded), *b = settings_to_json(now);
    cJSON *ch = cJSON_CreateObject();
    int refused = 0;
    size_t used = 0;
    err[0] = 0;
    // Dropout draws a stream per micro-batch: only without dropout may the split change.
    int dropout = !recorded->full && recorded->lora_dropout > 0;
    for (const cJSON *bv = b ? b->child : NULL; bv; bv = bv->next) {
        const cJSON *av = cJSON_GetObjectItemCaseSensitive(a, bv->string);
        if (!av) continue;   // LoRA keys of one side when the method differs: "method" says it
        const setting_key *k = key_named(bv->string);
        resume_rule rule = k ? k->rule : R_REFUSE;   // a setting nobody declared safe is refused
        if (rule == R_IGNORE) continue;
        int same = cJSON_Compare(av, bv, 1);
        if (!same && rule == R_PATH && cJSON_IsString(av) && cJSON_IsString(bv))
            same = same_file(av->valuestring[0] ? av->valuestring : NULL, bv->valuestring[0] ? bv->valuestring : NULL);
        if (same) continue;
        int ok = rule == R_SAFE || (rule == R_NO_DROPOUT && !dropout) ||
                 (rule == R_PATH && cJSON_IsString(av) && av->valuestring[0] && !fileio_exists(av->valuestring) &&
                  cJSON_IsString(bv) && bv->valuestring[0]);
        if (ok) {
            cJSON *c = cJSON_AddObjectToObject(ch, bv->string);
            cJSON_AddItemToObject(c, "from", cJSON_Duplicate(av, 1));
            cJSON_AddItemToObject(c, "to", cJSON_Duplicate(bv, 1));
            continue;
        }
        char was[256], is[256];
        value_text(av, was, sizeof was);
        value_text(bv, is, sizeof is);
        int w = snprintf(err + used, used < errlen ? errlen - used : 0, "%s%s: the run has %s, given %s%s",
                         refused ? "; " : "", k ? k->flag : bv->string, was, is,
                         rule == R_NO_DROPOUT ? " (--lora-dropout draws per micro-batch)" : "");
        if (w > 0) used += (size_t)w;
        if (used >= errlen) used = errlen - 1;
        refused++;
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    if (refused) {
        cJSON_Delete(ch);
        *changed = NULL;
        return -1;
    }
    *changed = ch;
    return 0;
}
