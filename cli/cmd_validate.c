// cli/cmd_validate.c — `quarry validate FILE... [options]`: reads Bedrock JSONL training data,
// applies Bedrock's rules (data/bedrock), scans for sensitive values (data/scan), checks the
// base model's limits (data/limits), and prints a summary with a cost preview (data/prices).
// With --model and --max-seq-len, each record is rendered and tokenized as `quarry train` does
// (trainer/examples) and its fate at that length is counted with the same accounting, from the
// same token store (trainer/example_store): a following `train` over the file finds it cached.
// Exit 0 valid (warnings allowed), 1 invalid records, 2 usage error or unreadable file.
#include "args.h"
#include "commands.h"
#include "../data/bedrock.h"
#include "../data/limits.h"
#include "../data/prices.h"
#include "../data/redact.h"
#include "../data/scan_data.h"
#include "../data/tokenizer.h"
#include "../trainer/example_store.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    // options
    const char *path;
    int max_errors, json, epochs, max_seq_len;
    scan_mode scan;
    const base_model_limits *limits;
    // diagnostics
    long shown_errors, shown_warnings, hidden;
    long errors, warnings;      // including scan findings and file-level ones
    long record_diags;          // data/bedrock's own (not the scan's, not the file's)
    cJSON *diags;               // the shown ones, for --json
    // summary
    long by_format[5];
    long user_turns, assistant_turns, systems;
    unsigned long long chars_total;
    long long chars_min, chars_max;
    long scan_by_kind[SCAN_NKINDS];
    long line;                  // of the record being scanned
    // tokens
    int32_t *tokens;            // per valid record
    long ntokens, cap_tokens;
    long over_limit;
} vstate;

static void emit(vstate *v, long line, int col, bedrock_severity sev, const char *msg) {
    if (sev == BEDROCK_ERROR) v->errors++;
    else v->warnings++;
    long *shown = sev == BEDROCK_ERROR ? &v->shown_errors : &v->shown_warnings;
    if (*shown >= v->max_errors) { v->hidden++; return; }
    (*shown)++;
    const char *kind = sev == BEDROCK_ERROR ? "error" : "warning";
    char where[64] = "";
    if (line > 0 && col > 0) snprintf(where, sizeof where, "%ld:%d:", line, col);
    else if (line > 0) snprintf(where, sizeof where, "%ld:", line);
    fprintf(stderr, "%s:%s %s: %s\n", v->path, where, kind, msg);
    if (v->diags) {
        cJSON *d = cJSON_CreateObject();
        if (!d) return;
        if (line > 0) cJSON_AddNumberToObject(d, "line", (double)line);
        else cJSON_AddNullToObject(d, "line");
        if (col > 0) cJSON_AddNumberToObject(d, "column", col);
        else cJSON_AddNullToObject(d, "column");
        cJSON_AddStringToObject(d, "severity", kind);
        cJSON_AddStringToObject(d, "message", msg);
        cJSON_AddItemToArray(v->diags, d);
    }
}

static void on_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    ((vstate *)user)->record_diags++;
    emit(user, line, col, sev, msg);
}

static void on_hit(void *user, const char *field, const char *text, const scan_hit *h) {
    vstate *v = user;
    v->scan_by_kind[h->kind]++;
    char masked[64], msg[256];
    scan_mask(text + h->offset, h->len, masked, sizeof masked);
    snprintf(msg, sizeof msg, "possible %s in %s: %s (the model may memorise it; remove or replace it)",
             scan_kind_name(h->kind), field, masked);
    emit(v, v->line, 0, v->scan == SCAN_ERROR ? BEDROCK_ERROR : BEDROCK_WARNING, msg);
}

static unsigned long long count_chars(const char *s, size_t n) {
    unsigned long long c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static int add_tokens(const tokenizer *t, const char *s, size_t n, long *total, char *err, size_t errlen) {
    int32_t *ids = NULL;
    int m = tokenizer_encode(t, s, n, 0, &ids, NULL, err, errlen);
    free(ids);
    if (m < 0) return -1;
    *total += m;
    return 0;
}

// Content tokens of a record: its texts without chat-template tokens (data/chat adds those).
static long record_tokens(const tokenizer *t, const record *r, char *err, size_t errlen) {
    long total = 0;
    if (r->system && add_tokens(t, r->system, r->system_len, &total, err, errlen)) return -1;
    if (r->text && add_tokens(t, r->text, r->text_len, &total, err, errlen)) return -1;
    for (int i = 0; i < r->nturns; i++)
        if (add_tokens(t, r->turns[i].text, r->turns[i].len, &total, err, errlen)) return -1;
    return total;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void record_summary(vstate *v, const record *r) {
    v->by_format[r->format]++;
    unsigned long long chars = 0;
    v->line = r->line;
    if (r->system) {
        v->systems++;
        chars += count_chars(r->system, r->system_len);
    }
    if (r->text) chars += count_chars(r->text, r->text_len);
    for (int i = 0; i < r->nturns; i++) {
        const record_turn *t = &r->turns[i];
        if (t->role == ROLE_USER) v->user_turns++;
        else v->assistant_turns++;
        chars += count_chars(t->text, t->len);
    }
    if (v->scan != SCAN_OFF) scan_record(r, on_hit, v);
    v->chars_total += chars;
    if (v->chars_min < 0 || (long long)chars < v->chars_min) v->chars_min = (long long)chars;
    if ((long long)chars > v->chars_max) v->chars_max = (long long)chars;
}

static cJSON *limits_json(const base_model_limits *l) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", l->id);
    cJSON_AddStringToObject(o, "name", l->name);
    if (l->min_records >= 0) cJSON_AddNumberToObject(o, "min_records", (double)l->min_records);
    else cJSON_AddNullToObject(o, "min_records");
    if (l->max_records >= 0) cJSON_AddNumberToObject(o, "max_records", (double)l->max_records);
    else cJSON_AddNullToObject(o, "max_records");
    if (l->max_tokens >= 0) cJSON_AddNumberToObject(o, "max_tokens_per_record", (double)l->max_tokens);
    else cJSON_AddNullToObject(o, "max_tokens_per_record");
    cJSON_AddStringToObject(o, "source", l->source);
    cJSON_AddStringToObject(o, "date", l->date);
    return o;
}

typedef struct {
    const char *format, *base_model, *scan, *model, *truncate, *redact;
    int allow_extra, max_errors, json, epochs, max_seq_len, force, data_threads;
    long long max_record_bytes;
} vopts;

// The record's fate at --max-seq-len, as training would see it. 0, or -1 (message in err).
static int fit_record(const examples_source *src, const truncation *t, const record *r, example_report *rep, char *err,
                      size_t errlen) {
    example e;
    if (examples_encode(src, r, &e, err, errlen)) return -1;
    example_note note;
    example_fit(&e, t, &note);
    free(e.ids);
    free(e.mask);
    if (example_report_add(rep, &note)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

// The fates of the file's records from its token store, tokenized as `quarry train` does (on
// --data-threads threads, into the token cache a following train over the same data and model
// reads). Only for a file train would read as validate did: no diagnostic of its records (the
// stream would print them again), no invalid or media record, every record tokenized. rep NULL:
// only the store (the cache filled for train; without --max-seq-len there are no fates). 0, or
// -1 when the store cannot be had (a record the template refuses: the caller goes record by record).
static int fit_from_store(const examples_source *src, const truncation *t, example_report *rep) {
    char err[1024];
    token_store *st = example_store_open(src, err, sizeof err);
    if (!st) return -1;
    int rc = rep ? example_report_store(rep, st, t) : 0;
    token_store_release(st);
    return rc;
}

// The fates record by record, from a second read of the file (its diagnostics already given):
// each record the template refuses is an error at its line, as training would stop there.
static int fit_by_record(vstate *v, const bedrock_options *bo0, const tokenizer *tok, const examples_source *src,
                         const truncation *t, example_report *rep) {
    bedrock_options bo = *bo0;
    bo.diag = NULL;
    bo.user = NULL;
    char err[256];
    bedrock_stream *s = bedrock_open(v->path, &bo, err, sizeof err);
    if (!s) return -1;
    record r;
    int rc;
    while ((rc = bedrock_next(s, &r)) == 1) {
        char ferr[512];
        // A record the tokenizer failed on is already an error of its own.
        if (record_tokens(tok, &r, ferr, sizeof ferr) >= 0 && fit_record(src, t, &r, rep, ferr, sizeof ferr)) {
            char msg[600];
            snprintf(msg, sizeof msg, "rendering it as training does: %s", ferr);
            emit(v, r.line, 0, BEDROCK_ERROR, msg);
        }
        record_free(&r);
    }
    bedrock_close(s);
    return rc < 0 ? -1 : 0;
}

// A file that cannot be read as JSONL (cannot open, read error, UTF-16): the message, and its JSON section.
static int unreadable(const char *path, const char *err, cJSON *files) {
    fprintf(stderr, "%s: error: %s\n", path, err);
    cJSON *f = files ? cJSON_CreateObject() : NULL;
    if (f) {
        cJSON_AddStringToObject(f, "path", path);
        cJSON_AddBoolToObject(f, "valid", 0);
        cJSON_AddStringToObject(f, "error", err);
        cJSON_AddItemToArray(files, f);
    }
    return 2;
}

// Validates one file; adds its JSON section to files (when --json). Returns 0, 1 or 2.
static int validate_file(const char *path, const vopts *o, record_format force, scan_mode sm,
                         const base_model_limits *lim, const tokenizer *tok, const examples_source *fit,
                         const truncation *trunc, cJSON *files) {
    example_report fit_rep = {.seq_len = trunc->seq_len, .side = trunc->side};
    vstate v;
    memset(&v, 0, sizeof v);
    v.path = path;
    v.max_errors = o->max_errors;
    v.json = o->json;
    v.scan = sm;
    v.limits = lim;
    v.epochs = o->epochs;
    v.max_seq_len = o->max_seq_len;
    v.chars_min = -1;
    if (o->json) v.diags = cJSON_CreateArray();

    bedrock_options bo = {force, o->allow_extra, lim, (size_t)o->max_record_bytes, on_diag, &v};
    char err[256];
    bedrock_stream *s = bedrock_open(path, &bo, err, sizeof err);
    if (!s) {
        cJSON_Delete(v.diags);
        return unreadable(path, err, files);
    }
    record r;
    int rc;
    long token_errors = 0;
    // stdin is read once: its fates are counted as the records go by.
    int counting = fit && trunc->seq_len > 0;   // fates at --max-seq-len (else fit only fills the store)
    const examples_source *fit_inline = counting && !strcmp(path, "-") ? fit : NULL;
    while ((rc = bedrock_next(s, &r)) == 1) {
        record_summary(&v, &r);
        if (tok) {
            char terr[256];
            long n = record_tokens(tok, &r, terr, sizeof terr);
            if (n < 0) {
                char msg[320];
                snprintf(msg, sizeof msg, "tokenizer failed: %s", terr);
                emit(&v, r.line, 0, BEDROCK_ERROR, msg);
                token_errors++;
            } else {
                if (v.ntokens == v.cap_tokens) {
                    long ncap = v.cap_tokens ? v.cap_tokens * 2 : 1024;
                    int32_t *nt = realloc(v.tokens, (size_t)ncap * sizeof *nt);
                    if (!nt) { rc = -1; record_free(&r); break; }
                    v.tokens = nt;
                    v.cap_tokens = ncap;
                }
                v.tokens[v.ntokens++] = (int32_t)(n > INT32_MAX ? INT32_MAX : n);
                char ferr[512];
                if (fit_inline && fit_record(fit_inline, trunc, &r, &fit_rep, ferr, sizeof ferr)) {
                    char msg[600];
                    snprintf(msg, sizeof msg, "rendering it as training does: %s", ferr);
                    emit(&v, r.line, 0, BEDROCK_ERROR, msg);
                }
                if (lim && lim->max_tokens > 0 && n > lim->max_tokens) {
                    char msg[256];
                    snprintf(msg, sizeof msg, "the record has %ld tokens, over the %ld tokens per record %s allows", n,
                             lim->max_tokens, lim->name);
                    emit(&v, r.line, 0, BEDROCK_ERROR, msg);
                    v.over_limit++;
                }
            }
        }
        record_free(&r);
    }
    if (rc < 0) {
        rc = unreadable(path, rc == -1 && *bedrock_error(s) ? bedrock_error(s) : "out of memory", files);
        bedrock_close(s);
        free(v.tokens);
        cJSON_Delete(v.diags);
        example_report_free(&fit_rep);
        return rc;
    }
    const bedrock_stats *st = bedrock_stream_stats(s);
    if (fit && strcmp(path, "-") != 0) {
        int clean = !v.record_diags && !st->invalid && !st->media_records && !token_errors && st->valid;
        if (!counting) {
            if (clean) fit_from_store(fit, trunc, NULL);   // a miss only costs the next train the tokenizing
        } else if (!clean || fit_from_store(fit, trunc, &fit_rep)) {
            example_report_free(&fit_rep);
            fit_rep = (example_report){.seq_len = trunc->seq_len, .side = trunc->side};
            if (fit_by_record(&v, &bo, tok, fit, trunc, &fit_rep)) {
                fprintf(stderr, "%s: error: cannot read the file again for --max-seq-len\n", path);
                v.errors++;
            }
        }
    }
    if (counting && fit_rep.records) {
        char why[1024];
        if (example_report_check(&fit_rep, trunc, "quarry train would refuse this file", why, sizeof why))
            emit(&v, 0, 0, BEDROCK_WARNING, why);
    }
    long nrec = st->valid + st->invalid;
    if (nrec == 0) emit(&v, 0, 0, BEDROCK_ERROR, "the file has no records");
    if (lim) {
        char msg[320];
        if (lim->min_records >= 0 && st->valid < lim->min_records) {
            snprintf(msg, sizeof msg, "%ld valid records; %s needs at least %ld (Bedrock, %s)", st->valid, lim->name,
                     lim->min_records, lim->date);
            emit(&v, 0, 0, BEDROCK_ERROR, msg);
        }
        if (lim->max_records >= 0 && st->valid > lim->max_records) {
            snprintf(msg, sizeof msg, "%ld valid records; %s takes at most %ld (Bedrock, %s)", st->valid, lim->name,
                     lim->max_records, lim->date);
            emit(&v, 0, 0, BEDROCK_ERROR, msg);
        }
        if (st->media_records) {
            snprintf(msg, sizeof msg, "%ld record%s hold%s images or videos: valid for Bedrock's %s job, but `quarry train` "
                     "refuses them (the open models quarry trains are text-only)", st->media_records,
                     st->media_records == 1 ? "" : "s", st->media_records == 1 ? "s" : "", lim->name);
            emit(&v, 0, 0, BEDROCK_WARNING, msg);
        }
        if (st->format != FORMAT_UNKNOWN && !(lim->formats & (1u << st->format))) {
            // Bedrock refuses the job, so this is an error under --base-model (issue 22).
            char takes[96] = "";
            for (int k = 1; k <= 4; k++)
                if (lim->formats & (1u << k))
                    snprintf(takes + strlen(takes), sizeof takes - strlen(takes), "%s%s", *takes ? ", " : "",
                             record_format_name((record_format)k));
            char fmsg[640];
            snprintf(fmsg, sizeof fmsg, "the file is %s records, but Bedrock's %s jobs take only %s (%s); Bedrock would "
                     "refuse the job\nhint: rewrite the records as %s, or drop --base-model to validate for `quarry train` "
                     "only (it trains any format)", record_format_name(st->format), lim->name, takes, lim->source, takes);
            emit(&v, 0, 0, BEDROCK_ERROR, fmsg);
        }
    }
    int valid = v.errors == 0 && st->invalid == 0;
    long scan_total = 0;
    for (int k = 0; k < SCAN_NKINDS; k++) scan_total += v.scan_by_kind[k];
    if (v.hidden) fprintf(stderr, "%s: %ld more diagnostic%s not shown (--max-errors %d)\n", path, v.hidden,
                          v.hidden == 1 ? "" : "s", o->max_errors);

    // Token statistics
    double tmin = 0, tmed = 0, tp95 = 0, tmax = 0, ttotal = 0;
    long over_seq = 0;
    if (v.ntokens) {
        for (long i = 0; i < v.ntokens; i++) {
            ttotal += v.tokens[i];
            if (o->max_seq_len > 0 && v.tokens[i] > o->max_seq_len) over_seq++;
        }
        qsort(v.tokens, (size_t)v.ntokens, sizeof *v.tokens, cmp_i32);
        tmin = v.tokens[0];
        tmax = v.tokens[v.ntokens - 1];
        tmed = v.tokens[(v.ntokens - 1) / 2];
        tp95 = v.tokens[(long)ceil(0.95 * (double)v.ntokens) - 1];
    }
    const char *token_note = tok ? (token_errors ? "the tokenizer failed on some records" : "no valid records")
                                 : "pass --model DIR for token statistics";
    // Cost preview
    const price_row *price = lim ? prices_find(lim->id) : NULL;
    double training_tokens = v.ntokens ? ttotal * o->epochs : NAN;
    double usd = price && v.ntokens ? prices_training_cost(price, ttotal, o->epochs) : NAN;
    char cost_line[400], cmi_line[1200] = "";
    if (!lim) snprintf(cost_line, sizeof cost_line, "pass --base-model ID for a Bedrock cost preview");
    else if (!price || !prices_known(price->train_per_1k.usd))
        snprintf(cost_line, sizeof cost_line, "%s: Bedrock's price per 1K training tokens is not published in any source "
                 "quarry's table cites (give it to `quarry cost --price-per-1k-tokens USD`)", lim->id);
    else if (!v.ntokens)
        snprintf(cost_line, sizeof cost_line, "%s: $%.6g per 1K training tokens (%s, %s); the total needs token counts (--model DIR)",
                 lim->id, price->train_per_1k.usd, price->train_per_1k.source, price->train_per_1k.date);
    else
        snprintf(cost_line, sizeof cost_line, "%s: %.0f tokens x %d epoch%s x $%.6g per 1K = $%.2f (%s, %s)", lim->id, ttotal,
                 o->epochs, o->epochs == 1 ? "" : "s", price->train_per_1k.usd, usd, price->train_per_1k.source,
                 price->train_per_1k.date);
    // Serving the tuned weights through Custom Model Import, where the model can be imported.
    const cmi_price_row *cmi = prices_cmi(NULL);
    price_fig cmus = {NAN, NULL, NULL, 0};
    if (price && price->importable)
        cmus = prices_known(price->cmus.usd) ? price->cmus : prices_cmu_estimate(price->params_b);
    if (cmi && prices_known(cmus.usd))
        snprintf(cmi_line, sizeof cmi_line, "CMI serving %.3g CMU%s x $%.4g per CMU-minute = $%.4g per active hour, "
                 "storage $%.2f per month (%s, %s; CMUs %s)", cmus.usd, cmus.usd == 1 ? "" : "s", cmi->per_cmu_minute.usd,
                 cmus.usd * cmi->per_cmu_minute.usd * 60, cmus.usd * cmi->storage_per_cmu_month.usd,
                 cmi->per_cmu_minute.source, cmi->per_cmu_minute.date,
                 prices_known(price->cmus.usd) ? "as AWS lists them" : "an estimate from the parameter count");

    if (!o->json) {
        printf("%s: %s\n", path, valid ? "valid" : "INVALID");
        printf("  records:    %ld valid, %ld invalid (%ld lines, %llu bytes)\n", st->valid, st->invalid, st->lines, st->bytes);
        for (int f = 1; f <= 4; f++)
            if (v.by_format[f]) printf("  format:     %s: %ld records\n", record_format_name((record_format)f), v.by_format[f]);
        printf("  turns:      %ld user, %ld assistant; %ld records with a system prompt\n", v.user_turns, v.assistant_turns,
               v.systems);
        printf("  characters: %llu total", v.chars_total);
        if (st->valid) printf(", per record min %lld, mean %.0f, max %lld", v.chars_min, (double)v.chars_total / (double)st->valid,
                              v.chars_max);
        printf("\n");
        if (v.ntokens) {
            printf("  tokens:     per record min %.0f, median %.0f, p95 %.0f, max %.0f; total %.0f", tmin, tmed, tp95, tmax, ttotal);
            if (o->max_seq_len > 0) printf("; %ld over --max-seq-len %d", over_seq, o->max_seq_len);
            printf("\n  training:   %.0f tokens (%d epoch%s)\n", training_tokens, o->epochs, o->epochs == 1 ? "" : "s");
            if (counting) example_report_print(&fit_rep, path, "  fit", 5, stdout);
        } else
            printf("  tokens:     %s\n", token_note);
        if (sm == SCAN_OFF) printf("  scan:       off\n");
        else {
            printf("  scan:       %ld finding%s", scan_total, scan_total == 1 ? "" : "s");
            int first = 1;
            for (int k = 0; k < SCAN_NKINDS; k++)
                if (v.scan_by_kind[k]) {
                    printf("%s%s %ld", first ? " (" : ", ", scan_kind_name((scan_kind)k), v.scan_by_kind[k]);
                    first = 0;
                }
            printf("%s\n", first ? "" : ")");
        }
        if (lim) {
            char tokl[96];
            if (lim->max_tokens < 0) snprintf(tokl, sizeof tokl, "tokens per record unknown");
            else snprintf(tokl, sizeof tokl, "at most %ld tokens per record%s", lim->max_tokens,
                          v.ntokens ? "" : " (not checked: needs --model)");
            printf("  base model: %s (%s): %ld-%ld records, %s (Bedrock documentation, %s)\n", lim->id, lim->name,
                   lim->min_records, lim->max_records, tokl, lim->date);
        } else
            printf("  base model: none given (--base-model ID enforces Bedrock's counts and limits)\n");
        printf("  cost:       %s\n", cost_line);
        if (cmi_line[0]) printf("              %s\n", cmi_line);
        printf("  %ld error%s, %ld warning%s\n", v.errors, v.errors == 1 ? "" : "s", v.warnings, v.warnings == 1 ? "" : "s");
    } else {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", path);
        cJSON_AddBoolToObject(f, "valid", valid);
        cJSON_AddNumberToObject(f, "lines", (double)st->lines);
        cJSON_AddNumberToObject(f, "bytes", (double)st->bytes);
        cJSON *rec = cJSON_AddObjectToObject(f, "records");
        cJSON_AddNumberToObject(rec, "valid", (double)st->valid);
        cJSON_AddNumberToObject(rec, "invalid", (double)st->invalid);
        cJSON *bf = cJSON_AddObjectToObject(rec, "by_format");
        for (int k = 1; k <= 4; k++) cJSON_AddNumberToObject(bf, record_format_name((record_format)k), (double)v.by_format[k]);
        if (st->format != FORMAT_UNKNOWN) cJSON_AddStringToObject(f, "format", record_format_name(st->format));
        else cJSON_AddNullToObject(f, "format");
        cJSON *tu = cJSON_AddObjectToObject(f, "turns");
        cJSON_AddNumberToObject(tu, "user", (double)v.user_turns);
        cJSON_AddNumberToObject(tu, "assistant", (double)v.assistant_turns);
        cJSON_AddNumberToObject(f, "system_prompts", (double)v.systems);
        cJSON *ch = cJSON_AddObjectToObject(f, "characters");
        cJSON_AddNumberToObject(ch, "total", (double)v.chars_total);
        cJSON_AddNumberToObject(ch, "min", st->valid ? (double)v.chars_min : 0);
        cJSON_AddNumberToObject(ch, "mean", st->valid ? (double)v.chars_total / (double)st->valid : 0);
        cJSON_AddNumberToObject(ch, "max", (double)v.chars_max);
        if (v.ntokens) {
            cJSON *t = cJSON_AddObjectToObject(f, "tokens");
            cJSON_AddNumberToObject(t, "min", tmin);
            cJSON_AddNumberToObject(t, "median", tmed);
            cJSON_AddNumberToObject(t, "p95", tp95);
            cJSON_AddNumberToObject(t, "max", tmax);
            cJSON_AddNumberToObject(t, "total", ttotal);
            if (o->max_seq_len > 0) cJSON_AddNumberToObject(t, "max_seq_len", o->max_seq_len);
            cJSON_AddNumberToObject(t, "over_max_seq_len", (double)over_seq);
            cJSON_AddNumberToObject(t, "epochs", o->epochs);
            cJSON_AddNumberToObject(t, "training_tokens", training_tokens);
            if (counting) cJSON_AddItemToObject(f, "truncation", example_report_to_json(&fit_rep, 100));
        } else {
            cJSON_AddNullToObject(f, "tokens");
            cJSON_AddStringToObject(f, "tokens_note", token_note);
        }
        cJSON *sc = cJSON_AddObjectToObject(f, "scan");
        cJSON_AddStringToObject(sc, "mode", sm == SCAN_OFF ? "off" : sm == SCAN_WARN ? "warn" : "error");
        cJSON_AddNumberToObject(sc, "findings", (double)scan_total);
        cJSON *bk = cJSON_AddObjectToObject(sc, "by_kind");
        for (int k = 0; k < SCAN_NKINDS; k++) cJSON_AddNumberToObject(bk, scan_kind_name((scan_kind)k), (double)v.scan_by_kind[k]);
        if (lim) cJSON_AddItemToObject(f, "base_model", limits_json(lim));
        else cJSON_AddNullToObject(f, "base_model");
        cJSON *co = cJSON_AddObjectToObject(f, "cost");
        if (price && prices_known(price->train_per_1k.usd))
            cJSON_AddNumberToObject(co, "price_per_1k_tokens_usd", price->train_per_1k.usd);
        else cJSON_AddNullToObject(co, "price_per_1k_tokens_usd");
        if (v.ntokens) cJSON_AddNumberToObject(co, "training_tokens", training_tokens);
        else cJSON_AddNullToObject(co, "training_tokens");
        if (!isnan(usd)) cJSON_AddNumberToObject(co, "usd", usd);
        else cJSON_AddNullToObject(co, "usd");
        if (price && price->train_per_1k.source) {
            cJSON_AddStringToObject(co, "source", price->train_per_1k.source);
            cJSON_AddStringToObject(co, "date", price->train_per_1k.date);
        }
        if (cmi_line[0]) cJSON_AddStringToObject(co, "serving", cmi_line);
        cJSON_AddStringToObject(co, "note", cost_line);
        cJSON_AddNumberToObject(f, "errors", (double)v.errors);
        cJSON_AddNumberToObject(f, "warnings", (double)v.warnings);
        cJSON_AddItemToObject(f, "diagnostics", v.diags);
        v.diags = NULL;
        cJSON_AddNumberToObject(f, "diagnostics_not_shown", (double)v.hidden);
        cJSON_AddItemToArray(files, f);
    }
    bedrock_close(s);
    free(v.tokens);
    cJSON_Delete(v.diags);
    example_report_free(&fit_rep);
    return valid ? 0 : 1;
}

// --redact: writes OUT and says what was replaced. Returns 0, or 1 when nothing was written.
static int redact_report(const char *in, const char *out, int force, FILE *to) {
    redact_stats st;
    char err[4400];
    if (redact_file(in, out, force, &st, err, sizeof err)) {
        fprintf(stderr, "quarry validate: error: --redact: %s\n", err);
        return 1;
    }
    long total = 0;
    for (int k = 0; k < SCAN_NKINDS; k++) total += st.replaced[k];
    fprintf(to, "%s: wrote %s (mode 0600): %ld line%s, %ld changed; %ld value%s replaced\n", in, out, st.lines,
            st.lines == 1 ? "" : "s", st.lines_changed, total, total == 1 ? "" : "s");
    for (int k = 0; k < SCAN_NKINDS; k++)
        if (st.replaced[k]) {
            const char *ph = redact_placeholder_prefix((scan_kind)k);
            fprintf(to, "  %-18s %ld occurrence%s of %ld value%s -> %s1]", scan_kind_name((scan_kind)k), st.replaced[k],
                    st.replaced[k] == 1 ? "" : "s", st.distinct[k], st.distinct[k] == 1 ? "" : "s", ph);
            if (st.distinct[k] > 1) fprintf(to, "..%s%ld]", ph, st.distinct[k]);
            fprintf(to, "\n");
        }
    if (st.raw_lines)
        fprintf(to, "  %ld line%s not JSON: redacted in the raw text\n", st.raw_lines, st.raw_lines == 1 ? "" : "s");
    return 0;
}

int cmd_validate(int argc, char **argv) {
    vopts o = {0};
    o.max_errors = 50;
    o.epochs = 1;
    o.max_record_bytes = 16ll << 20;
    const arg_spec specs[] = {
        {"format", ARG_STRING, &o.format, "NAME", "force one format: prompt-completion, messages, converse, continued-pretraining"},
        {"allow-extra-keys", ARG_FLAG, &o.allow_extra, NULL, "unknown keys are warnings, not errors"},
        {"base-model", ARG_STRING, &o.base_model, "ID", "enforce this Bedrock base model's limits (e.g. meta.llama3-1-8b-instruct-v1:0)"},
        {"scan", ARG_STRING, &o.scan, "off|warn|error", "sensitive data scan (default warn)"},
        {"max-errors", ARG_INT, &o.max_errors, "N", "print at most N errors and N warnings (default 50)"},
        {"max-record-bytes", ARG_BYTES, &o.max_record_bytes, "SIZE", "longest record accepted (default 16MiB)"},
        {"model", ARG_STRING, &o.model, "DIR", "a model dir (tokenizer.json) for token statistics"},
        {"max-seq-len", ARG_INT, &o.max_seq_len, "N", "count records with more tokens than N; with --model, what training "
         "at N does to each record (whole, truncated, dropped)"},
        {"truncate", ARG_STRING, &o.truncate, "right|left", "which end of a long record goes, as `quarry train --truncate` "
         "(default right)"},
        {"epochs", ARG_INT, &o.epochs, "N", "epochs for the training-token total and cost preview (default 1)"},
        {"data-threads", ARG_INT, &o.data_threads, "N", "threads tokenizing for --max-seq-len (default: "
         "$QUARRY_DATA_THREADS, else every core)"},
        {"json", ARG_FLAG, &o.json, NULL, "print one JSON document on stdout"},
        {"redact", ARG_STRING, &o.redact, "OUT", "write a copy of FILE with each finding replaced by a placeholder ([EMAIL_1], ...)"},
        {"force", ARG_FLAG, &o.force, NULL, "--redact may replace an existing OUT (never the input)"},
    };
    const arg_parser p = {"validate", "quarry validate FILE... [options]",
                          "Checks Amazon Bedrock JSONL training data (prompt-completion, messages, converse,\n"
                          "continued pre-training) against Bedrock's rules, scans it for secrets and personal\n"
                          "data, and summarises records, turns, characters (and tokens with --model).\n"
                          "Diagnostics go to stderr as FILE:LINE: error|warning: MESSAGE. FILE - reads stdin.\n"
                          "Exit 0 valid (warnings allowed), 1 invalid records, 2 usage error or unreadable file.",
                          specs, (int)(sizeof specs / sizeof specs[0]), 1, 64};
    const char *pos[64];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;

    record_format force = FORMAT_UNKNOWN;
    if (o.format) {
        force = bedrock_format_from_name(o.format);
        if (force == FORMAT_UNKNOWN) {
            fprintf(stderr, "quarry validate: error: unknown --format '%s'; use prompt-completion, messages, converse or continued-pretraining\n", o.format);
            return 2;
        }
    }
    scan_mode sm = SCAN_WARN;
    if (o.scan) {
        int m = scan_mode_parse(o.scan);
        if (m < 0) {
            fprintf(stderr, "quarry validate: error: --scan takes off, warn or error, not '%s'\n", o.scan);
            return 2;
        }
        sm = (scan_mode)m;
    }
    if (o.redact && (npos != 1 || !strcmp(pos[0], "-"))) {
        fprintf(stderr, "quarry validate: error: --redact OUT takes exactly one input FILE (not stdin)\n");
        return 2;
    }
    if (o.force && !o.redact) {
        fprintf(stderr, "quarry validate: error: --force only applies to --redact OUT\n");
        return 2;
    }
    if (o.max_errors < 0 || o.epochs < 1 || o.max_seq_len < 0 || o.max_record_bytes < 1 || o.data_threads < 0 ||
        o.data_threads > 1024) {
        fprintf(stderr, "quarry validate: error: --max-errors, --max-seq-len must be >= 0, --epochs >= 1, "
                "--max-record-bytes >= 1, --data-threads 1..1024\n");
        return 2;
    }
    const base_model_limits *lim = NULL;
    if (o.base_model) {
        lim = limits_find(o.base_model);
        const char *family = lim ? NULL : limits_import_only_family(o.base_model);
        if (family) {
            fprintf(stderr,
                    "quarry validate: error: --base-model '%s': Bedrock has no fine-tuning for %s models (its "
                    "customization jobs take Nova, Titan, Claude 3 Haiku and Llama 3.x), so there are no Bedrock "
                    "limits to check\nhint: %s is trained with `quarry train` and imported with Custom Model Import: "
                    "validate without --base-model (add --model DIR for token counts), then run `quarry preflight` "
                    "on the export\n",
                    o.base_model, family, family);
            return 2;
        }
        if (!lim) {
            int n;
            const base_model_limits *t = limits_table(&n);
            fprintf(stderr, "quarry validate: error: unknown --base-model '%s'; quarry knows:\n", o.base_model);
            for (int i = 0; i < n; i++) fprintf(stderr, "  %s  (%s)\n", t[i].id, t[i].name);
            return 2;
        }
    }
    truncation trunc = {o.max_seq_len, TRUNCATE_RIGHT, 0, ON_LONG_TRUNCATE};
    if (o.truncate) {
        int side = truncate_side_parse(o.truncate);
        if (side < 0) {
            fprintf(stderr, "quarry validate: error: --truncate must be right or left (got '%s')\n", o.truncate);
            return 2;
        }
        trunc.side = (truncate_side)side;
        trunc.side_explicit = 1;
    }
    if (o.max_seq_len == 1) {
        fprintf(stderr, "quarry validate: error: --max-seq-len must be at least 2\n");
        return 2;
    }
    tokenizer *tk = NULL;
    chat_template *tmpl = NULL;
    if (o.model) {
        char err[512];
        tk = tokenizer_load(o.model, err, sizeof err);
        if (!tk) {
            fprintf(stderr, "quarry validate: error: %s: %s\n", o.model, err);
            return 2;
        }
        // The template renders the records as training does: their fates at --max-seq-len, and the
        // token store a following `train` reads. Without --max-seq-len a model dir with no usable
        // template (a bare tokenizer) still gives token statistics.
        tmpl = chat_template_load(o.model, NULL, err, sizeof err);
        if (o.max_seq_len > 0 && !tmpl) {
            fprintf(stderr, "quarry validate: error: %s: %s\n", o.model, err);
            tokenizer_free(tk);
            return 2;
        }
    }
    // As `quarry train --model DIR` with its default template and options, so that both name
    // the same token cache entry.
    examples_source fit = {.tok = tk, .tmpl = tmpl, .chat = {NULL, 0, 0}, .quiet = 1, .model_dir = o.model,
                           .allow_extra_keys = o.allow_extra, .threads = o.data_threads};
    cJSON *doc = o.json ? cJSON_CreateObject() : NULL;
    cJSON *files = doc ? cJSON_AddArrayToObject(doc, "files") : NULL;
    if (o.json && (!doc || !files)) { fprintf(stderr, "quarry validate: error: out of memory\n"); return 2; }
    int worst = 0;
    for (int i = 0; i < npos; i++) {
        fit.path = pos[i];
        int r = validate_file(pos[i], &o, force, sm, lim, tk, tmpl ? &fit : NULL, &trunc, files);
        if (r > worst) worst = r;
    }
    chat_template_free(tmpl);
    tokenizer_free(tk);
    if (o.redact) {
        int r = redact_report(pos[0], o.redact, o.force, o.json ? stderr : stdout);
        if (r > worst) worst = r;
    }
    if (doc) {
        cJSON_AddBoolToObject(doc, "valid", worst == 0);
        char *s = cJSON_Print(doc);
        cJSON_Delete(doc);
        if (!s) { fprintf(stderr, "quarry validate: error: out of memory\n"); return 2; }
        printf("%s\n", s);
        free(s);
    }
    return worst;
}
