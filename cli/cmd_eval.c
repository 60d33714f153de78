// cli/cmd_eval.c — `quarry eval`: loss and perplexity of a checkpoint or a trained run over the
// trained tokens of a Bedrock file, through the path training takes (trainer/examples: the same
// rendering, masks and truncation; dataset packing without shuffle; forward only), so that a
// run's validation file gives the validation loss `quarry train` logged. Per-record sums come
// from the per-row losses of each packed batch.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "diag.h"
#include "model_ref.h"
#include "data/chat.h"
#include "data/dataset.h"
#include "data/fileio.h"
#include "data/tokenizer.h"
#include "trainer/examples.h"

typedef struct {
    double sum;      // Σ −log p over the record's trained tokens
    long tokens;
} record_loss;

// Runs every packed row (file order, no shuffle) through the model; attributes each row's
// per-position losses to its documents, which packing lays out in file order. 0 ok.
static int evaluate(model *m, const example_set *set, int micro, record_loss *per, double *sum, long long *tokens,
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
            const packed_row *pr = &e.rows[r + i];
            for (int t = 0; t < pr->used; t++) {
                size_t at = (size_t)i * (size_t)T + (size_t)t;
                if (doc[at] == t) k++;   // a document starts here
                if (k < 0 || k >= set->n) {
                    snprintf(err, errlen, "internal: packed rows hold more documents than the %d examples", set->n);
                    goto out;
                }
                if (tg[at] != -1) {
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

int cmd_eval(int argc, char **argv) {
    const char *model_arg = NULL, *data = NULL, *device = "auto", *tmpl_name = NULL, *date = NULL, *side_arg = NULL;
    const char *attention = NULL;
    int json = 0, max_seq_len = 0, micro = 1, train_on_prompt = 0, allow_extra = 0;
    const arg_spec specs[] = {
        {"model", ARG_STRING, &model_arg, "DIR|RUN", "a Hugging Face checkpoint directory, or a run written by quarry train"},
        {"data", ARG_STRING, &data, "FILE", "Bedrock JSONL data (any of the four formats)"},
        {"json", ARG_FLAG, &json, NULL, "write a JSON document with per-record losses"},
        {"max-seq-len", ARG_INT, &max_seq_len, "T", "sequence length; longer records are truncated (default: the run's, else 2048)"},
        {"truncate", ARG_STRING, &side_arg, "right|left", "which end of a long record goes (default: the run's, else right; "
         "refused when right would drop records)"},
        {"allow-extra-keys", ARG_FLAG, &allow_extra, NULL, "unknown keys in the data are warnings (default: the run's)"},
        {"micro-batch", ARG_INT, &micro, "B", "packed rows per forward (default 1)"},
        {"template", ARG_STRING, &tmpl_name, "NAME", "chat template family (default: the run's, else detected)"},
        {"template-date", ARG_STRING, &date, "DATE", "pin the Llama 3.1+ date line (default: the run's)"},
        {"train-on-prompt", ARG_FLAG, &train_on_prompt, NULL, "score every token, not only the answers (default: the run's)"},
        {"device", ARG_STRING, &device, "cpu|cuda|cuda:N|auto", "the device (default auto)"},
        {"attention", ARG_STRING, &attention, "auto|cudnn|quarry", "attention on cuda: cuDNN when found (auto), cuDNN "
         "required, or quarry's kernel"},
    };
    const arg_parser p = {
        "eval",
        "quarry eval --model DIR|RUN --data FILE [--json] [--max-seq-len T] [--micro-batch B] [--device DEV]",
        "Loss (mean −log p per trained token) and perplexity over the trained tokens of a Bedrock file,\n"
        "rendered, masked and truncated as `quarry train` does; for a run, with the run's settings. On a\n"
        "run's validation file it gives the validation loss the run logged. --json adds each record's loss.",
        specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    const char *usage_err = NULL;
    if (!model_arg) usage_err = "--model DIR|RUN is required";
    else if (!data) usage_err = "--data FILE is required";
    else if (max_seq_len < 0 || max_seq_len == 1) usage_err = "--max-seq-len must be ≥ 2";
    else if (micro < 1) usage_err = "--micro-batch must be ≥ 1";
    else if (side_arg && truncate_side_parse(side_arg) < 0) usage_err = "--truncate must be right or left";
    if (usage_err) {
        fprintf(stderr, "quarry eval: error: %s\nusage: %s\n", usage_err, p.usage);
        return 2;
    }

    char err[2048] = "";
    int status = 1;
    model_ref ref;
    tokenizer *tok = NULL;
    chat_template *tmpl = NULL;
    backend *be = NULL;
    model *m = NULL;
    cJSON *settings = NULL;
    example_set set = {0};
    int have_set = 0;
    record_loss *per = NULL;
    truncation trunc = {0, TRUNCATE_RIGHT, 0, ON_LONG_TRUNCATE};
    if (side_arg) {
        trunc.side = (truncate_side)truncate_side_parse(side_arg);
        trunc.side_explicit = 1;
    }
    if (model_ref_resolve(model_arg, &ref, err, sizeof err) != 0) goto fail;
    // A run's own settings are the defaults, so that its validation data scores as it did.
    char run_date[64] = "";
    if (ref.run_dir[0] && (settings = read_run_settings(ref.run_dir)) != NULL) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(settings, "max_seq_len");
        if (!max_seq_len && cJSON_IsNumber(v)) max_seq_len = v->valueint;
        v = cJSON_GetObjectItemCaseSensitive(settings, "train_on_prompt");
        if (cJSON_IsTrue(v)) train_on_prompt = 1;
        v = cJSON_GetObjectItemCaseSensitive(settings, "allow_extra_keys");
        if (cJSON_IsTrue(v)) allow_extra = 1;
        // The run's truncation stands as chosen: explicitly when its --truncate was given.
        v = cJSON_GetObjectItemCaseSensitive(settings, "truncate");
        if (!side_arg && cJSON_IsString(v) && truncate_side_parse(v->valuestring) >= 0) {
            trunc.side = (truncate_side)truncate_side_parse(v->valuestring);
            trunc.side_explicit = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(settings, "truncate_explicit"));
        }
        v = cJSON_GetObjectItemCaseSensitive(settings, "template_date");
        if (!date && cJSON_IsString(v) && v->valuestring[0]) {
            snprintf(run_date, sizeof run_date, "%s", v->valuestring);
            date = run_date;
        }
    }
    if (!max_seq_len) max_seq_len = 2048;
    tok = tokenizer_load(ref.base_dir, err, sizeof err);
    if (!tok) goto fail;
    tmpl = chat_template_load(ref.base_dir, tmpl_name ? tmpl_name : ref.template_name[0] ? ref.template_name : NULL, err,
                              sizeof err);
    if (!tmpl) goto fail;
    examples_source src = {data, tok, tmpl, {date, 0, train_on_prompt}, 0, ref.base_dir, allow_extra};
    trunc.seq_len = max_seq_len;
    example *ex = NULL;
    int nex = 0;
    if (examples_load(&src, &ex, &nex, err, sizeof err) != 0) goto fail;
    if (example_set_init(&set, ex, nex, &trunc, data, err, sizeof err) != 0) goto fail;
    have_set = 1;
    if (set.report.truncated || set.report.dropped) example_report_print(&set.report, data, "quarry eval", 5, stderr);
    if (set.n == 0) {
        snprintf(err, sizeof err, "%s: no records to evaluate", data);
        goto fail;
    }
    per = calloc((size_t)set.n, sizeof *per);
    if (!per) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    be = backend_open(device, err, sizeof err);
    if (!be) goto fail;
    if (!backend_set_attention(be, attention, err, sizeof err)) goto fail;
    model_options mo = {.batch_size = micro, .seq_len = max_seq_len, .train = MODEL_TRAIN_NONE};
    m = model_ref_load(&ref, be, &mo, err, sizeof err);
    if (!m) goto fail;
    double sum = 0;
    long long tokens = 0;
    if (evaluate(m, &set, micro, per, &sum, &tokens, err, sizeof err) != 0) goto fail;
    double loss = tokens ? sum / (double)tokens : NAN;
    char desc[8400];
    model_ref_describe(&ref, desc, sizeof desc);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", desc);
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddStringToObject(o, "template", tmpl->name);
        cJSON_AddNumberToObject(o, "max_seq_len", max_seq_len);
        cJSON_AddNumberToObject(o, "records", set.n);
        cJSON_AddNumberToObject(o, "truncated_records", set.truncated);
        cJSON_AddItemToObject(o, "records_report", example_report_to_json(&set.report, 100));
        cJSON_AddNumberToObject(o, "trained_tokens", (double)tokens);
        cJSON_AddNumberToObject(o, "loss_sum", sum);
        if (tokens) {
            cJSON_AddNumberToObject(o, "loss", loss);
            cJSON_AddNumberToObject(o, "perplexity", exp(loss));
        } else {
            cJSON_AddNullToObject(o, "loss");
            cJSON_AddNullToObject(o, "perplexity");
        }
        cJSON *arr = cJSON_AddArrayToObject(o, "per_record");
        for (int i = 0; arr && i < set.n; i++) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddNumberToObject(r, "line", (double)set.examples[i].line);
            cJSON_AddNumberToObject(r, "tokens", (double)per[i].tokens);
            cJSON_AddNumberToObject(r, "loss_sum", per[i].sum);
            if (per[i].tokens)
                cJSON_AddNumberToObject(r, "loss", per[i].sum / (double)per[i].tokens);
            else
                cJSON_AddNullToObject(r, "loss");
            cJSON_AddItemToArray(arr, r);
        }
        char *text = cJSON_Print(o);
        cJSON_Delete(o);
        if (!text || puts(text) < 0) {
            free(text);
            snprintf(err, sizeof err, "cannot write the JSON output");
            goto fail;
        }
        free(text);
    } else {
        printf("model       %s\n", desc);
        printf("data        %s: %d records, %lld trained tokens", data, set.n, tokens);
        if (set.truncated || set.report.dropped)
            printf(" (%d records truncated, %ld dropped at %d tokens, --truncate %s)", set.truncated, set.report.dropped,
                   max_seq_len, truncate_side_name(trunc.side));
        printf("\nloss        %.6f\nperplexity  %.4f\n", loss, exp(loss));
    }
    status = 0;
    goto done;
fail:
    cli_error("eval", "%s", err);
done:
    free(per);
    model_free(m);
    if (be) be->destroy(be);
    if (have_set) example_set_free(&set);
    chat_template_free(tmpl);
    tokenizer_free(tok);
    cJSON_Delete(settings);
    return status;
}
