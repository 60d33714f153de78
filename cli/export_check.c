// cli/export_check.c — see export_check.h.
#include "export_check.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval_loss.h"
#include "model_ref.h"
#include "../export/merge.h"

// One pass of hf_export_each_tensor: each package tensor rounded to dtype, read back to f32 and
// written into the model's tensor of that name; fp16's range counted on the first pass.
typedef struct {
    model *m;
    st_dtype dtype;
    export_check *r;
    int count;                // count fp16's range on this pass
    float *back;
    uint16_t *half;
    size_t cap;
    char *err;
    size_t errlen;
} round_pass;

static int grow(round_pass *p, size_t n) {
    if (n <= p->cap) return 0;
    float *b = realloc(p->back, n * sizeof *b);
    if (b) p->back = b;
    uint16_t *h = b ? realloc(p->half, n * sizeof *h) : NULL;
    if (h) p->half = h;
    if (!b || !h) return -1;
    p->cap = n;
    return 0;
}

static int round_tensor(void *ctx, const char *name, const float *v, size_t n) {
    round_pass *p = ctx;
    model_param *mp = model_param_find(p->m, name);
    if (!mp || mp->n != n) {
        snprintf(p->err, p->errlen, "the package tensor %s is not a tensor of the model as quarry loads it", name);
        return -1;
    }
    if (grow(p, n)) {
        snprintf(p->err, p->errlen, "out of memory rounding %s", name);
        return -1;
    }
    if (p->count) {
        // fp16 bits of each value (round to nearest even, as the package is written).
        merge_convert(v, n, ST_F16, p->half);
        for (size_t i = 0; i < n; i++) {
            uint16_t h = p->half[i], mag = h & 0x7fff;
            if (mag == 0x7c00 && isfinite(v[i])) p->r->f16_overflow++;
            else if (mag == 0 && v[i] != 0.0f) p->r->f16_zero++;
            else if (mag && mag < 0x0400) p->r->f16_subnormal++;
        }
        p->r->elements += (long long)n;
    }
    if (p->dtype == ST_F32) {
        memcpy(p->back, v, n * sizeof *v);
    } else {
        merge_convert(v, n, p->dtype, p->half);
        for (size_t i = 0; i < n; i++)
            p->back[i] = p->dtype == ST_F16 ? f16_to_f32(p->half[i]) : bf16_to_f32(p->half[i]);
    }
    if (model_param_write(p->m, mp, p->back)) {
        snprintf(p->err, p->errlen, "%s: %s", name, model_error(p->m));
        return -1;
    }
    return 0;
}

static int mean_loss(model *m, const eval_data *d, double *loss, long long *tokens, char *err, size_t errlen) {
    double sum = 0;
    long long t = 0;
    if (eval_loss(m, &d->set, 1, NULL, &sum, &t, err, errlen)) return -1;
    if (!t) {
        snprintf(err, errlen, "the check records have no trained token");
        return -1;
    }
    *loss = sum / (double)t;
    if (tokens) *tokens = t;
    return 0;
}

int export_check_measure(const export_check_options *o, export_check *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->data_kind = o->data_kind;
    model_ref ref;
    eval_data d = {0};
    backend *be = NULL;
    model *m = NULL;
    round_pass p = {0};
    int rc = -1;
    if (model_ref_resolve(o->run_dir, &ref, err, errlen)) return -1;
    snprintf(ref.base_dir, sizeof ref.base_dir, "%s", o->merge->base_dir);   // --model overrides run.json's
    eval_data_options eo = {.data = o->data, .max_records = o->max_records, .quiet = 1};
    if (eval_data_load(&d, &ref, &eo, err, errlen)) goto out;
    r->records = d.set.n;
    r->file_records = d.file_records;
    if (!(be = backend_open("cpu", err, errlen))) goto out;
    model_options mo = {.batch_size = 1, .seq_len = d.max_seq_len, .train = MODEL_TRAIN_NONE};
    // The run as trained: adapter unmerged, or the full fine-tune's f32 weights.
    if (!(m = model_ref_load(&ref, be, &mo, err, errlen)) || mean_loss(m, &d, &r->loss_run, &r->tokens, err, errlen))
        goto out;
    model_free(m);
    // The base, then the package's tensors written over it, once per dtype.
    ref.lora = 0;
    ref.weights[0] = 0;
    ref.experts_mxfp4 = 0;   // the package's dense experts are written over the base's
    if (!(m = model_ref_load(&ref, be, &mo, err, errlen)) || mean_loss(m, &d, &r->loss_base, NULL, err, errlen))
        goto out;
    double gain = r->loss_base - r->loss_run;
    p = (round_pass){m, ST_F32, r, 1, NULL, NULL, 0, err, errlen};
    for (int i = 0; i < o->ndtypes && i < 3; i++) {
        p.dtype = o->dtypes[i];
        if (hf_export_each_tensor(o->merge, round_tensor, &p, err, errlen)) goto out;
        p.count = 0;
        r->f16_counted = 1;
        export_check_dtype *e = &r->d[r->n++];
        e->dtype = o->dtypes[i];
        if (mean_loss(m, &d, &e->loss, NULL, err, errlen)) goto out;
        e->finite = isfinite(e->loss);
        e->retained = gain > 0 && e->finite ? (r->loss_base - e->loss) / gain : NAN;
    }
    rc = 0;
out:
    free(p.back);
    free(p.half);
    model_free(m);
    if (be) be->destroy(be);
    eval_data_free(&d);
    return rc;
}

const export_check_dtype *export_check_get(const export_check *r, st_dtype want) {
    for (int i = 0; i < r->n; i++)
        if (r->d[i].dtype == want) return &r->d[i];
    return NULL;
}

int export_check_f16_range_ok(const export_check *r) {
    return r->f16_counted && r->f16_overflow == 0 &&
           (double)r->f16_subnormal <= EXPORT_CHECK_MAX_SUBNORMAL * (double)r->elements;
}

st_dtype export_check_choose(const export_check *r, char *why, size_t whylen) {
    const export_check_dtype *h = export_check_get(r, ST_F16), *b = export_check_get(r, ST_BF16);
    if (!h || !b) {
        snprintf(why, whylen, "fp16 was not measured");
        return ST_BF16;
    }
    if (r->f16_overflow) {
        snprintf(why, whylen, "%lld weights overflow fp16's range (|x| > 65504)", r->f16_overflow);
        return ST_BF16;
    }
    if (!export_check_f16_range_ok(r)) {
        snprintf(why, whylen, "%lld weights (over %.0f%%) would be fp16 subnormals", r->f16_subnormal,
                 100 * EXPORT_CHECK_MAX_SUBNORMAL);
        return ST_BF16;
    }
    if (!h->finite) {
        snprintf(why, whylen, "the fp16 package's loss is not finite");
        return ST_BF16;
    }
    if (isnan(h->retained) || isnan(b->retained)) {
        // The run does not improve on the base over the check records: keep the closer one.
        int f16 = !b->finite || fabs(h->loss - r->loss_run) <= fabs(b->loss - r->loss_run);
        snprintf(why, whylen, "the run does not improve on the base over the check records; %s is closer to the run",
                 f16 ? "fp16" : "bf16");
        return f16 ? ST_F16 : ST_BF16;
    }
    if (h->retained >= EXPORT_CHECK_THRESHOLD) {
        snprintf(why, whylen, "fp16 fits every weight and retains %.1f%% (bf16 %.1f%%)", 100 * h->retained,
                 100 * b->retained);
        return ST_F16;
    }
    // Both below the threshold: the one that keeps more (the warning follows).
    snprintf(why, whylen, "fp16 retains %.1f%%, bf16 %.1f%%: both under %.0f%%", 100 * h->retained, 100 * b->retained,
             100 * EXPORT_CHECK_THRESHOLD);
    return h->retained > b->retained ? ST_F16 : ST_BF16;
}

static const char *kind_text(const char *kind) {
    return !strcmp(kind, "validation")   ? "the run's validation file"
           : !strcmp(kind, "check-data") ? "--check-data"
                                         : "the training data (the run has no validation file)";
}

static void fmt_retained(double v, char *buf, size_t n) {
    if (isnan(v)) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "%.1f%%", 100 * v);
}

void export_check_print(const export_check *r, st_dtype chosen, int auto_chosen, FILE *f) {
    fprintf(f, "retention   %d of %d records of %s, %lld trained tokens; fp32 compute on the CPU\n", r->records,
            r->file_records, kind_text(r->data_kind), r->tokens);
    fprintf(f, "  run       loss %.6f (as trained)\n  base      loss %.6f\n", r->loss_run, r->loss_base);
    for (int i = 0; i < r->n; i++) {
        char ret[32];
        fmt_retained(r->d[i].retained, ret, sizeof ret);
        fprintf(f, "  %-9s loss %.6f  retains %s of the run's improvement over the base%s\n",
                st_dtype_torch_name(r->d[i].dtype), r->d[i].loss, ret,
                r->d[i].dtype == chosen ? (auto_chosen ? "  <- chosen (--dtype auto)" : "  <- written") : "");
    }
    if (r->f16_counted)
        fprintf(f, "  fp16 range: %lld of %lld weights overflow, %lld subnormal (%.3f%%), %lld round to zero\n",
                r->f16_overflow, r->elements, r->f16_subnormal,
                r->elements ? 100.0 * (double)r->f16_subnormal / (double)r->elements : 0.0, r->f16_zero);
    const export_check_dtype *c = export_check_get(r, chosen);
    if (!c) return;
    if (!c->finite) {
        fprintf(stderr, "quarry export: warning: the %s package's loss over the check records is not finite\n"
                        "hint: export with --dtype bf16 or fp32\n", st_dtype_torch_name(chosen));
    } else if (isnan(c->retained)) {
        fprintf(stderr, "quarry export: warning: the run does not improve on the base over the check records "
                        "(loss %.6f vs %.6f); nothing to retain\n", r->loss_run, r->loss_base);
    } else if (c->retained < EXPORT_CHECK_THRESHOLD) {
        const export_check_dtype *h = export_check_get(r, ST_F16);
        fprintf(stderr,
                "quarry export: warning: the %s package retains %.1f%% of the run's improvement over the base "
                "(under %.0f%%): rounding the merged weights to %s throws the rest away\n",
                st_dtype_torch_name(chosen), 100 * c->retained, 100 * EXPORT_CHECK_THRESHOLD, st_dtype_torch_name(chosen));
        if (chosen == ST_BF16 && !h)
            fprintf(stderr, "hint: export with --dtype auto (measures fp16, which keeps 3 more mantissa bits of the "
                            "update), or train longer / at a higher learning rate (larger updates survive)\n");
        else if (chosen == ST_BF16 && !export_check_f16_range_ok(r))
            fprintf(stderr, "hint: fp16 cannot hold these weights; train longer / at a higher learning rate (larger "
                            "updates survive bf16), or use --format peft where the adapter stays apart\n");
        else
            fprintf(stderr, "hint: train longer / at a higher learning rate (larger updates survive the rounding), or "
                            "use --format peft where the adapter stays apart (--dtype fp32 does not help: CMI "
                            "converts fp32 to bf16 itself)\n");
    }
}

cJSON *export_check_to_json(const export_check *r, st_dtype chosen, int auto_chosen) {
    cJSON *o = cJSON_CreateObject(), *cd = cJSON_CreateObject(), *ds = cJSON_CreateObject();
    int ok = o && cd && ds;
    ok = ok && cJSON_AddBoolToObject(o, "measured", 1) && cJSON_AddStringToObject(cd, "kind", r->data_kind) &&
         cJSON_AddNumberToObject(cd, "records", r->records) &&
         cJSON_AddNumberToObject(cd, "file_records", r->file_records) &&
         cJSON_AddNumberToObject(cd, "trained_tokens", (double)r->tokens) && cJSON_AddItemToObject(o, "check_data", cd);
    if (ok) cd = NULL;
    ok = ok && cJSON_AddStringToObject(o, "compute", "fp32 on the CPU") &&
         cJSON_AddNumberToObject(o, "loss_run", r->loss_run) && cJSON_AddNumberToObject(o, "loss_base", r->loss_base) &&
         cJSON_AddNumberToObject(o, "threshold", EXPORT_CHECK_THRESHOLD);
    for (int i = 0; ok && i < r->n; i++) {
        cJSON *e = cJSON_CreateObject();
        ok = e && cJSON_AddNumberToObject(e, "loss", r->d[i].loss) &&
             (isnan(r->d[i].retained) ? cJSON_AddNullToObject(e, "retained") != NULL
                                      : cJSON_AddNumberToObject(e, "retained", r->d[i].retained) != NULL) &&
             cJSON_AddItemToObject(ds, st_dtype_torch_name(r->d[i].dtype), e);
        if (!ok) cJSON_Delete(e);
    }
    ok = ok && cJSON_AddItemToObject(o, "dtypes", ds);
    if (ok) ds = NULL;
    const export_check_dtype *c = export_check_get(r, chosen);
    ok = ok && cJSON_AddStringToObject(o, "dtype", st_dtype_torch_name(chosen)) &&
         cJSON_AddStringToObject(o, "dtype_chosen_by", auto_chosen ? "auto" : "--dtype") &&
         (c && !isnan(c->retained) ? cJSON_AddNumberToObject(o, "retained", c->retained) != NULL
                                   : cJSON_AddNullToObject(o, "retained") != NULL);
    if (ok && r->f16_counted) {
        cJSON *f = cJSON_CreateObject();
        ok = f && cJSON_AddNumberToObject(f, "weights", (double)r->elements) &&
             cJSON_AddNumberToObject(f, "overflow", (double)r->f16_overflow) &&
             cJSON_AddNumberToObject(f, "subnormal", (double)r->f16_subnormal) &&
             cJSON_AddNumberToObject(f, "zero", (double)r->f16_zero) && cJSON_AddItemToObject(o, "fp16_range", f);
        if (!ok) cJSON_Delete(f);
    }
    cJSON_Delete(cd);
    cJSON_Delete(ds);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
