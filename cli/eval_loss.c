// cli/eval_loss.c — see eval_loss.h.
#include "eval_loss.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/fileio.h"
#include "../trainer/example_store.h"

int eval_loss(model *m, const example_set *set, int micro, eval_record_loss *per, double *sum, long long *tokens,
              char *err, size_t errlen) {
    packed_epoch e;
    if (dataset_pack_epoch(set, 0, 0, 0, &e, err, errlen) != 0) return -1;
    int T = e.seq_len;
    size_t n = (size_t)micro * (size_t)T;
    int32_t *buf = malloc(n * 4 * sizeof *buf);
    float *losses = malloc(n * sizeof *losses);
    int rc = -1;
    if (!buf || !losses) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    int32_t *ids = buf, *tg = buf + n, *pos = buf + 2 * n, *doc = buf + 3 * n;
    int k = -1;   // current document (example index)
    *sum = 0;
    *tokens = 0;
    for (int r = 0; r < e.nrows; r += micro) {
        int rows = e.nrows - r < micro ? e.nrows - r : micro;
        dataset_fill_batch(&e, r, rows, ids, tg, pos, doc);
        model_batch b = {rows, T, ids, tg, pos, doc, 0};
        model_loss l;
        if (model_forward(m, &b, 0.0f, &l) != 0 || model_read_losses(m, losses) != 0) {
            snprintf(err, errlen, "evaluation: %s", model_error(m));
            goto out;
        }
        *sum += l.sum;
        *tokens += l.tokens;
        for (int i = 0; i < rows; i++) {
            int used = dataset_row_used(&e, r + i);
            for (int t = 0; t < used; t++) {
                size_t at = (size_t)i * (size_t)T + (size_t)t;
                if (doc[at] == t) k++;   // a document starts here
                if (k < 0 || k >= set->n) {
                    snprintf(err, errlen, "internal: packed rows hold more documents than the %d examples", set->n);
                    goto out;
                }
                if (per && tg[at] != -1) {
                    per[k].sum += losses[at];
                    per[k].tokens++;
                }
            }
        }
    }
    if (k != set->n - 1) {
        snprintf(err, errlen, "internal: %d documents in the packed rows, %d examples", k + 1, set->n);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    free(losses);
    packed_epoch_free(&e);
    return rc;
}

static cJSON *read_run_settings(const char *run_dir) {
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    char *text = NULL;
    size_t len = 0;
    if (fileio_read_all(path, &text, &len, err, sizeof err) != 0) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    cJSON *s = j ? cJSON_DetachItemFromObjectCaseSensitive(j, "settings") : NULL;
    cJSON_Delete(j);
    return s;
}

// The documents to evaluate: max evenly spaced ones of n (the first, then every n/max-th), or all
// of them (NULL) when max is 0 or not fewer; *count says how many (0 with NULL: out of memory).
static int32_t *sample_docs(long n, int max, int *count) {
    *count = (int)n;
    if (max <= 0 || n <= max) return NULL;
    int32_t *docs = malloc(sizeof *docs * (size_t)max);
    if (!docs) { *count = 0; return NULL; }
    int kept = 0;
    for (long i = 0; i < n && kept < max; i++)
        if ((long long)i * max >= (long long)kept * n) docs[kept++] = (int32_t)i;
    *count = kept;
    return docs;
}

int eval_data_load(eval_data *d, const model_ref *ref, const eval_data_options *o, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    int max_seq_len = o->max_seq_len, train_on_prompt = o->train_on_prompt, allow_extra = o->allow_extra;
    const char *date = o->date;
    char run_date[64] = "";
    d->trunc = (truncation){0, TRUNCATE_RIGHT, 0, ON_LONG_TRUNCATE};
    if (o->side) {
        d->trunc.side = (truncate_side)truncate_side_parse(o->side);
        d->trunc.side_explicit = 1;
    }
    // A run's own settings are the defaults, so that its validation data scores as it did.
    cJSON *settings = ref->run_dir[0] ? read_run_settings(ref->run_dir) : NULL;
    if (settings) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(settings, "max_seq_len");
        if (!max_seq_len && cJSON_IsNumber(v)) max_seq_len = v->valueint;
        v = cJSON_GetObjectItemCaseSensitive(settings, "train_on_prompt");
        if (cJSON_IsTrue(v)) train_on_prompt = 1;
        v = cJSON_GetObjectItemCaseSensitive(settings, "allow_extra_keys");
        if (cJSON_IsTrue(v)) allow_extra = 1;
        // The run's truncation stands as chosen: explicitly when its --truncate was given.
        v = cJSON_GetObjectItemCaseSensitive(settings, "truncate");
        if (!o->side && cJSON_IsString(v) && truncate_side_parse(v->valuestring) >= 0) {
            d->trunc.side = (truncate_side)truncate_side_parse(v->valuestring);
            d->trunc.side_explicit = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(settings, "truncate_explicit"));
        }
        v = cJSON_GetObjectItemCaseSensitive(settings, "template_date");
        if (!date && cJSON_IsString(v) && v->valuestring[0]) {
            snprintf(run_date, sizeof run_date, "%s", v->valuestring);
            date = run_date;
        }
    }
    cJSON_Delete(settings);
    if (!max_seq_len) max_seq_len = 2048;
    d->max_seq_len = max_seq_len;
    d->tok = tokenizer_load(ref->base_dir, err, errlen);
    if (!d->tok) goto fail;
    const char *tn = o->template_name ? o->template_name : ref->template_name[0] ? ref->template_name : NULL;
    d->tmpl = chat_template_load(ref->base_dir, tn, err, errlen);
    if (!d->tmpl) goto fail;
    examples_source src = {.path = o->data, .tok = d->tok, .tmpl = d->tmpl, .chat = {date, 0, train_on_prompt},
                           .quiet = o->quiet, .model_dir = ref->base_dir, .allow_extra_keys = allow_extra,
                           .threads = o->data_threads};
    d->trunc.seq_len = max_seq_len;
    token_store *store = example_store_open(&src, err, errlen);
    if (!store) goto fail;
    d->file_records = (int)token_store_ndocs(store);
    int nsample = 0;
    int32_t *docs = sample_docs(token_store_ndocs(store), o->max_records, &nsample);
    int bad = nsample < d->file_records && !docs;
    if (bad) snprintf(err, errlen, "out of memory");
    bad = bad || example_set_open(&d->set, store, docs, nsample, &d->trunc, o->data, err, errlen) != 0;
    free(docs);
    token_store_release(store);
    if (bad) goto fail;
    d->have_set = 1;
    if (o->report_as && (d->set.report.truncated || d->set.report.dropped))
        example_report_print(&d->set.report, o->data, o->report_as, 5, stderr);
    if (d->set.n == 0) {
        snprintf(err, errlen, "%s: no records to evaluate", o->data);
        goto fail;
    }
    return 0;
fail:
    eval_data_free(d);
    return -1;
}

void eval_data_free(eval_data *d) {
    if (d->have_set) example_set_free(&d->set);
    chat_template_free(d->tmpl);
    tokenizer_free(d->tok);
    memset(d, 0, sizeof *d);
}
