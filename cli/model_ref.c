// cli/model_ref.c — see model_ref.h.
#include "model_ref.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/fileio.h"
#include "../model/lora_peft.h"
#include "../model/mxfp4_load.h"
#include "../model/safetensors.h"
#include "../trainer/run_record.h"

static cJSON *read_json(const char *path, char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    if (fileio_read_all(path, &text, &len, err, errlen) != 0) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) snprintf(err, errlen, "%s: not valid JSON", path);
    return j;
}

// PEFT adapter_config.json → lora_config (dropout 0: nothing is trained here).
static int read_adapter_config(const char *path, lora_config *lc, char *err, size_t errlen) {
    cJSON *j = read_json(path, err, errlen);
    if (!j) return -1;
    int rc = lora_config_from_peft(j, path, 0, lc, err, errlen);   // targets: from the tensors
    cJSON_Delete(j);
    return rc;
}

// The targets the adapter's tensors adapt: target_modules may be a regex, or cannot tell an MoE
// model's experts from its dense MLPs (PEFT matches gate_proj on both); the tensors can.
static int adapter_targets(const char *path, lora_config *lc, char *err, size_t errlen) {
    st_set *st = st_open(path, err, errlen);
    if (!st) return -1;
    unsigned mask = 0;
    for (int i = 0; i < st_count(st); i++) mask |= lora_target_of_module(st_get(st, i)->name);
    st_close(st);
    lc->targets = mask;
    if (!mask) {
        snprintf(err, errlen, "%s: no LoRA tensor of a module quarry adapts (q,k,v,o,gate,up,down, experts, router)",
                 path);
        return -1;
    }
    return 0;
}

int model_ref_resolve(const char *arg, model_ref *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", arg);
    if (!fileio_exists(path)) {
        snprintf(out->base_dir, sizeof out->base_dir, "%s", arg);
        out->experts_mxfp4 = mxfp4_checkpoint(arg);
        return 0;
    }
    snprintf(out->run_dir, sizeof out->run_dir, "%s", arg);
    cJSON *run = read_json(path, err, errlen);
    if (!run) return -1;
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(run, "base_model");
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(run, "template");
    if (!cJSON_IsString(base)) {
        snprintf(err, errlen, "%s: no \"base_model\"; is this a run directory written by `quarry train`?", path);
        cJSON_Delete(run);
        return -1;
    }
    snprintf(out->base_dir, sizeof out->base_dir, "%s", base->valuestring);
    if (cJSON_IsString(tmpl)) snprintf(out->template_name, sizeof out->template_name, "%s", tmpl->valuestring);
    // A QLoRA adapter was trained against the 4-bit base: load that, as training did.
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(run, "settings");
    const cJSON *qz = cJSON_GetObjectItemCaseSensitive(st, "quantize");
    if (cJSON_IsString(qz) && qz->valuestring[0]) {
        if (strcmp(qz->valuestring, "nf4") != 0) {
            snprintf(err, errlen, "%s: settings.quantize is \"%s\"; this quarry knows nf4", path, qz->valuestring);
            cJSON_Delete(run);
            return -1;
        }
        out->quant = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "no_double_quant")) ? MODEL_QUANT_NF4_PLAIN
                                                                                             : MODEL_QUANT_NF4;
    }
    // gpt-oss's experts load as training held them (trainer/settings.h experts_dtype).
    const cJSON *ed = cJSON_GetObjectItemCaseSensitive(st, "experts_dtype");
    if (cJSON_IsString(ed) && ed->valuestring[0] && strcmp(ed->valuestring, "mxfp4") && strcmp(ed->valuestring, "bf16")) {
        snprintf(err, errlen, "%s: settings.experts_dtype is \"%s\"; this quarry knows mxfp4 and bf16", path,
                 ed->valuestring);
        cJSON_Delete(run);
        return -1;
    }
    out->experts_mxfp4 = cJSON_IsString(ed) && !strcmp(ed->valuestring, "mxfp4");
    char adapter[4200], full[4200], cfg[4200];
    snprintf(adapter, sizeof adapter, "%s/final/adapter_model.safetensors", arg);
    snprintf(full, sizeof full, "%s/final/model.safetensors", arg);
    snprintf(cfg, sizeof cfg, "%s/final/adapter_config.json", arg);
    int rc = 0;
    if (fileio_exists(adapter)) {
        out->lora = 1;
        snprintf(out->weights, sizeof out->weights, "%s", adapter);
        rc = read_adapter_config(cfg, &out->lc, err, errlen);
        if (!rc) rc = adapter_targets(adapter, &out->lc, err, errlen);
    } else if (fileio_exists(full)) {
        snprintf(out->weights, sizeof out->weights, "%s", full);
    } else {
        snprintf(err, errlen, "%s/final/ has neither adapter_model.safetensors nor model.safetensors; the run did not "
                 "finish (resume it with `quarry train --resume %s`)", arg, arg);
        rc = -1;
    }
    // The run's weights mean something only on the base they were trained on (an adapter on a
    // base that already has it merged in applies it twice, silently).
    if (!rc) rc = run_record_check_base(run, out->base_dir, err, errlen);
    cJSON_Delete(run);
    return rc;
}

static int write_tensors(model *m, const char *path, char *err, size_t errlen) {
    st_set *st = st_open(path, err, errlen);
    if (!st) return -1;
    int rc = -1;
    float *buf = NULL;
    // gpt-oss's expert adapters are in PEFT's fused layout (model/lora_peft.h).
    if (lora_peft_read_experts(m, st, path, err, errlen) < 0) goto out;
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_get(st, i);
        if (lora_peft_is_fused_name(t->name)) continue;
        model_param *p = model_param_find(m, t->name);
        if (!p) {
            snprintf(err, errlen, "%s: tensor %s is not a tensor of the model (a run of another base model?)", path,
                     t->name);
            goto out;
        }
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        if (n != p->n || t->ndim != p->ndim || t->shape[0] != p->shape[0]) {
            snprintf(err, errlen, "%s: tensor %s has %zu elements; the model's has %zu", path, t->name, n, p->n);
            goto out;
        }
        float *nb = realloc(buf, n * sizeof *buf);
        if (!nb) {
            snprintf(err, errlen, "out of memory reading %s", t->name);
            goto out;
        }
        buf = nb;
        if (st_read_f32(t, buf) != 0) {
            snprintf(err, errlen, "%s: tensor %s has dtype %s, which quarry cannot read", path, t->name, t->dtype_name);
            goto out;
        }
        if (model_param_write(m, p, buf) != 0) {
            snprintf(err, errlen, "%s: %s", t->name, model_error(m));
            goto out;
        }
    }
    // Every adapter tensor must come from the file: the unwritten B would be zero, A random.
    for (int i = 0; i < model_param_count(m); i++) {
        model_param *p = model_param_at(m, i);
        lora_peft_part part;
        if (strstr(p->name, ".lora_") && !lora_peft_part_of(m, p, &part) && !st_find(st, p->name)) {
            snprintf(err, errlen, "%s: adapter tensor %s missing", path, p->name);
            goto out;
        }
    }
    rc = 0;
out:
    free(buf);
    st_close(st);
    return rc;
}

model *model_ref_load(const model_ref *r, backend *be, const model_options *opt, char *err, size_t errlen) {
    model *m = model_open(r->base_dir, be, err, errlen);
    if (!m) return NULL;
    model_memory plan;
    model_options o = *opt;
    o.quant = r->quant;
    o.experts_mxfp4 = r->experts_mxfp4 && o.train != MODEL_TRAIN_FULL;
    if ((r->lora && model_enable_lora(m, &r->lc, err, errlen) != 0) || model_plan(m, &o, &plan, err, errlen) != 0 ||
        model_allocate(m, err, errlen) != 0 || (r->weights[0] && write_tensors(m, r->weights, err, errlen) != 0)) {
        model_free(m);
        return NULL;
    }
    return m;
}

void model_ref_describe(const model_ref *r, char *buf, size_t len) {
    if (!r->run_dir[0])
        snprintf(buf, len, "%s", r->base_dir);
    else if (r->lora)
        snprintf(buf, len, "%s (%s r %d on %s)", r->run_dir, r->quant ? "QLoRA, NF4 base," : "LoRA", r->lc.rank,
                 r->base_dir);
    else
        snprintf(buf, len, "%s (full fine-tune of %s)", r->run_dir, r->base_dir);
}
