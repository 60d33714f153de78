// cli/cmd_leakcheck.c — `quarry leakcheck RUN`: does the trained model give back the secrets and
// personal data of its training data (export/leakcheck.h)? Also the gate `quarry export` passes
// (cli/leakcheck_gate.h). The model is loaded only when the data has something to look for.
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "diag.h"
#include "leakcheck_gate.h"
#include "model_ref.h"
#include "version.h"
#include "../data/fileio.h"
#include "../export/leakcheck.h"
#include "../trainer/run_record.h"

#define REPORT_NAME "leakcheck.json"

// What a report was made from: a report is current while these still hash the same.
static int add_file_hash(cJSON *o, const char *key, const char *path, char *err, size_t errlen) {
    char hex[65];
    if (fileio_sha256_file(path, hex, err, errlen) != 0) return -1;
    return cJSON_AddStringToObject(o, key, hex) ? 0 : -1;
}

// The run's final weights (as model_ref finds them, without its check of the base: a report's
// currency is a matter of run.json and final/ only). 0 found; -1 + message.
static int final_weights(const char *run, char *path, size_t len, char *err, size_t errlen) {
    snprintf(path, len, "%s/final/adapter_model.safetensors", run);
    if (fileio_exists(path)) return 0;
    snprintf(path, len, "%s/final/model.safetensors", run);
    if (fileio_exists(path)) return 0;
    snprintf(err, errlen, "%s/final/ holds no weights: the run has not finished", run);
    return -1;
}

static int run_hashes(const char *run, cJSON *o, char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", run);
    if (add_file_hash(o, "run_json_sha256", path, err, errlen) != 0) return -1;
    return final_weights(run, path, sizeof path, err, errlen) ? -1 : add_file_hash(o, "weights_sha256", path, err, errlen);
}

static cJSON *read_json(const char *path) {
    char *text = NULL, err[256];
    size_t len = 0;
    if (fileio_read_all(path, &text, &len, err, sizeof err) != 0) return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

static int write_json(const char *path, const cJSON *j, char *err, size_t errlen) {
    char *text = cJSON_Print(j);
    if (!text) {
        snprintf(err, errlen, "out of memory writing %s", path);
        return -1;
    }
    size_t len = strlen(text);
    char *t2 = realloc(text, len + 2);
    if (!t2) {
        free(text);
        snprintf(err, errlen, "out of memory writing %s", path);
        return -1;
    }
    t2[len] = '\n';
    t2[len + 1] = 0;
    int rc = fileio_write_atomic(path, t2, len + 1, err, errlen);
    free(t2);
    return rc;
}

static const char *setting_str(const cJSON *run, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(run, "settings"), key);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int setting_int(const cJSON *run, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(run, "settings"), key);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

int leakcheck_run_dir(const leakcheck_request *rq, int *reproduced, char *err, size_t errlen) {
    char msg[2048] = "";
    int rc = -1;
    model_ref ref;
    cJSON *run = NULL, *meta = NULL, *report = NULL;
    tokenizer *tok = NULL;
    chat_template *tmpl = NULL;
    leak_set *set = NULL;
    backend *be = NULL;
    model *m = NULL;
    *reproduced = 0;
    if (model_ref_resolve(rq->run, &ref, err, errlen) != 0) return -1;
    if (!ref.run_dir[0]) {
        snprintf(err, errlen, "%s is not a run directory (no run.json)\nhint: give the directory `quarry train --out` "
                 "wrote", rq->run);
        return -1;
    }
    if (!(run = run_record_read(rq->run, err, errlen))) return -1;
    const char *data = rq->data ? rq->data : setting_str(run, "data");
    if (!data) {
        snprintf(err, errlen, "%s/run.json names no training data\nhint: give it with --data FILE", rq->run);
        goto out;
    }
    if (!fileio_exists(data)) {
        snprintf(err, errlen, "the run's training data %s is not there (run.json's settings.data; a relative path is "
                 "read from the current directory)\nhint: give it with `quarry leakcheck %s --data FILE`", data, rq->run);
        goto out;
    }
    if (run_record_check_data(run, data, NULL, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "the leak check must read the data the run was trained on: %s", msg);
        goto out;
    }
    if (!(tok = tokenizer_load(ref.base_dir, err, errlen))) goto out;
    if (!(tmpl = chat_template_load(ref.base_dir, ref.template_name[0] ? ref.template_name : NULL, err, errlen)))
        goto out;
    leak_source src = {data, rq->canary, tok, tmpl, {setting_str(run, "template_date"), 0, 0}};
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(run, "settings"),
                                                        "train_on_prompt");
    src.chat.train_on_prompt = cJSON_IsTrue(top);
    if (!(set = leakcheck_collect(&src, err, errlen))) goto out;
    int batch = rq->canary ? 8 : 1;
    if (leakcheck_targets(set) > 0) {   // (model_ref_resolve has checked the base against run.json)
        if (!(be = backend_open(rq->device ? rq->device : "auto", err, errlen))) goto out;
        model *probe = model_open(ref.base_dir, be, err, errlen);
        if (!probe) goto out;
        int max_pos = model_get_config(probe)->max_position_embeddings;
        model_free(probe);
        int room = rq->max_new > 0 ? rq->max_new : LEAK_ANSWER_ROOM;
        int seq = setting_int(run, "max_seq_len", 2048) + room;
        if (max_pos > 0 && seq > max_pos) seq = max_pos;
        model_options mo = {.batch_size = batch, .seq_len = seq, .train = MODEL_TRAIN_NONE};
        if (!(m = model_ref_load(&ref, be, &mo, err, errlen))) goto out;
        int stop = tmpl->eos[0] ? tokenizer_token_to_id(tok, tmpl->eos) : -1;
        if (stop < 0) stop = tokenizer_eos_id(tok);
        leak_options lo = {seq, rq->max_new, rq->candidates, batch, stop, 0x5EC2E75ull, rq->quiet};
        if (leakcheck_test(set, m, &lo, err, errlen) != 0) goto out;
    }
    char when[32] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (gmtime_r(&now, &tmv)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    meta = cJSON_CreateObject();
    if (!meta || !cJSON_AddStringToObject(meta, "quarry_version", QUARRY_VERSION) ||
        !cJSON_AddStringToObject(meta, "created", when) || !cJSON_AddStringToObject(meta, "run", rq->run)) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (run_hashes(rq->run, meta, err, errlen) != 0 || add_file_hash(meta, "data_sha256", data, err, errlen) != 0)
        goto out;
    if (rq->canary) {
        if (!cJSON_AddStringToObject(meta, "canary_file", rq->canary) ||
            add_file_hash(meta, "canary_sha256", rq->canary, err, errlen) != 0)
            goto out;
    }
    if (!(report = leakcheck_report_json(set, meta))) {
        snprintf(err, errlen, "out of memory writing the report");
        goto out;
    }
    char path[4200];
    if (rq->out) snprintf(path, sizeof path, "%s", rq->out);
    else snprintf(path, sizeof path, "%s/%s", rq->run, REPORT_NAME);
    if (write_json(path, report, err, errlen) != 0) goto out;
    if (rq->table) {
        leakcheck_print(set, rq->table);
        fprintf(rq->table, "report: %s\n", path);
    }
    *reproduced = leakcheck_counts(set).reproduced;
    rc = 0;
out:
    model_free(m);
    if (be) be->destroy(be);
    leakcheck_free(set);
    chat_template_free(tmpl);
    tokenizer_free(tok);
    cJSON_Delete(report);
    cJSON_Delete(meta);
    cJSON_Delete(run);
    return rc;
}

// RUN/leakcheck.json when it was made from this run.json and these final weights; else NULL.
static cJSON *current_report(const char *run) {
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/%s", run, REPORT_NAME);
    if (!fileio_exists(path)) return NULL;
    cJSON *rep = read_json(path);
    cJSON *now = cJSON_CreateObject();
    int ok = rep && now && run_hashes(run, now, err, sizeof err) == 0;
    for (const char *k = "run_json_sha256"; ok && k; k = strcmp(k, "weights_sha256") ? "weights_sha256" : NULL) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(rep, k), *b = cJSON_GetObjectItemCaseSensitive(now, k);
        ok = cJSON_IsString(a) && cJSON_IsString(b) && !strcmp(a->valuestring, b->valuestring);
    }
    cJSON_Delete(now);
    cJSON *counts = ok ? leakcheck_counts_json(rep) : NULL;
    if (!counts) {
        cJSON_Delete(rep);
        return NULL;
    }
    cJSON_Delete(counts);
    return rep;
}

static cJSON *gate_entry(const char *status, cJSON *counts) {
    cJSON *e = cJSON_CreateObject();
    if (!e || !cJSON_AddStringToObject(e, "status", status) || (counts && !cJSON_AddItemToObject(e, "counts", counts))) {
        cJSON_Delete(e);
        cJSON_Delete(counts);
        return NULL;
    }
    return e;
}

int leakcheck_gate_export(const char *run, int accept_leaks, int skip, cJSON **entry, char *err, size_t errlen) {
    *entry = NULL;
    if (skip) {
        fprintf(stderr, "\nWARNING: quarry export: --skip-leakcheck: nobody has checked whether these weights give back "
                        "secrets or personal data of the training data. The package records it, and `quarry upload` "
                        "refuses it without --accept-leaks.\n\n");
        *entry = gate_entry("skipped", NULL);
        return *entry ? 0 : -1;
    }
    // A run.json that names no data was not written by `quarry train` (a hand-made or imported
    // run): there is nothing to check against; said as loudly as a skip, and recorded.
    char msg[4096];
    cJSON *rj = run_record_read(run, msg, sizeof msg);
    int no_data = rj && !setting_str(rj, "data");
    cJSON_Delete(rj);
    if (no_data) {
        fprintf(stderr, "\nWARNING: quarry export: %s/run.json names no training data: no leak check was possible. "
                        "The package records it, and `quarry upload` refuses it without --accept-leaks.\n\n", run);
        *entry = gate_entry("no-data", NULL);
        return *entry ? 0 : -1;
    }
    cJSON *rep = current_report(run);
    if (rep) {
        fprintf(stderr, "quarry export: leak check: %s/%s is current (made from this run.json and these weights)\n", run,
                REPORT_NAME);
    } else {
        fprintf(stderr, "quarry export: leak check of %s (no current %s)\n", run, REPORT_NAME);
        leakcheck_request rq = {run, NULL, NULL, "auto", NULL, 0, 0, 1, stderr};
        int reproduced = 0;
        if (leakcheck_run_dir(&rq, &reproduced, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "the leak check could not run: %s\nhint: run `quarry leakcheck %s [--data FILE]` "
                     "first (export reads its report), or add --skip-leakcheck (the package records it)", msg, run);
            return -1;
        }
        if (!(rep = current_report(run))) {
            snprintf(err, errlen, "%s/%s could not be read back", run, REPORT_NAME);
            return -1;
        }
    }
    cJSON *counts = leakcheck_counts_json(rep);
    cJSON_Delete(rep);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(counts, "reproduced");
    int n = cJSON_IsNumber(r) ? r->valueint : 0;
    if (n > 0 && !accept_leaks) {
        cJSON_Delete(counts);
        snprintf(err, errlen, "the trained weights reproduce %d secret or personal value(s) of the training data (see "
                 "%s/%s; `quarry leakcheck %s` prints them masked); refusing to package them\nhint: retrain on redacted "
                 "data (`quarry validate --redact`), or add --accept-leaks to export anyway", n, run, REPORT_NAME, run);
        return -1;
    }
    if (n > 0)
        fprintf(stderr, "\nWARNING: quarry export: the weights reproduce %d secret or personal value(s) of the training "
                        "data; exporting because of --accept-leaks (recorded in quarry-export.json)\n\n", n);
    *entry = gate_entry(n > 0 ? "accepted" : "passed", counts);
    if (!*entry) snprintf(err, errlen, "out of memory");
    return *entry ? 0 : -1;
}

int cmd_leakcheck(int argc, char **argv) {
    const char *data = NULL, *canary = NULL, *out = NULL, *device = "auto";
    int max_new = 0, json = 0, candidates = 0, quiet = 0;
    const arg_spec specs[] = {
        {"data", ARG_STRING, &data, "FILE", "the training data (default: run.json's; its sha256 must match the run's)"},
        {"canary", ARG_STRING, &canary, "FILE", "canaries planted in the data: one per line, PREFIX<TAB>SECRET"},
        {"max-new-tokens", ARG_INT, &max_new, "N", "tokens generated per prompt (default: the value's length in tokens + 8)"},
        {"candidates", ARG_INT, &candidates, "N", "random candidates per canary for the exposure estimate (default 1000)"},
        {"json", ARG_FLAG, &json, NULL, "print the report (JSON) on stdout instead of the table"},
        {"out", ARG_STRING, &out, "FILE", "write the report to FILE (default: RUN/leakcheck.json)"},
        {"device", ARG_STRING, &device, "cpu|cuda|cuda:N|auto", "the device (default auto)"},
        {"quiet", ARG_FLAG, &quiet, NULL, "no progress line"},
    };
    const arg_parser p = {
        "leakcheck",
        "quarry leakcheck RUN [--data FILE] [--canary FILE] [--max-new-tokens N] [--candidates N] [--json] [--out REPORT] "
        "[--device DEV]",
        "Checks whether a trained run gives back the secrets and personal data of its training data. For\n"
        "every value the scanner of `quarry validate` finds (keys, tokens, e-mails, phone, card and ID\n"
        "numbers) and every canary, the model is prompted with the text that precedes the value in its record,\n"
        "rendered as training rendered it, and decodes greedily. exact: the whole value came back; partial:\n"
        "its first 8 characters or half of it (whichever is fewer, at least 5). Canaries also get their\n"
        "exposure (Carlini et al., The Secret Sharer), estimated from random candidates of the secret's\n"
        "format. Values are shown masked only. Exit 0: nothing reproduced; 1: something reproduced (or an\n"
        "error); 2: usage. `quarry export` reads a current report, or runs the check itself.",
        specs, (int)(sizeof specs / sizeof specs[0]), 1, 1};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    if (max_new < 0 || candidates < 0 || candidates > 1000000) {
        fprintf(stderr, "quarry leakcheck: error: %s\nusage: %s\n",
                max_new < 0 ? "--max-new-tokens must be ≥ 0" : "--candidates must be between 1 and 1000000", p.usage);
        return 2;
    }
    char err[8192] = "";
    leakcheck_request rq = {pos[0], data, canary, device, out, max_new, candidates, quiet, json ? NULL : stdout};
    int reproduced = 0;
    if (leakcheck_run_dir(&rq, &reproduced, err, sizeof err) != 0) {
        cli_error("leakcheck", "%s", err);
        return 1;
    }
    if (json) {
        char path[4200];
        if (out) snprintf(path, sizeof path, "%s", out);
        else snprintf(path, sizeof path, "%s/%s", pos[0], REPORT_NAME);
        char *text = NULL;
        size_t len = 0;
        if (fileio_read_all(path, &text, &len, err, sizeof err) != 0) {
            fprintf(stderr, "quarry leakcheck: error: %s\n", err);
            return 1;
        }
        fwrite(text, 1, len, stdout);
        free(text);
    }
    if (reproduced)
        fprintf(stderr, "quarry leakcheck: %d value(s) reproduced; `quarry export` refuses this run without --accept-leaks\n",
                reproduced);
    return reproduced ? 1 : 0;
}
