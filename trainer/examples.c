// trainer/examples.c — see examples.h.
#include "examples.h"
#include "../data/bedrock.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *path;
    long errors, warnings;
} diag_state;

static void print_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    diag_state *d = user;
    if (sev == BEDROCK_ERROR && ++d->errors > 20) return;
    if (sev == BEDROCK_WARNING && ++d->warnings > 20) return;
    if (col > 0) fprintf(stderr, "%s:%ld:%d: %s: %s\n", d->path, line, col, sev == BEDROCK_ERROR ? "error" : "warning", msg);
    else if (line > 0) fprintf(stderr, "%s:%ld: %s: %s\n", d->path, line, sev == BEDROCK_ERROR ? "error" : "warning", msg);
    else fprintf(stderr, "%s: %s: %s\n", d->path, sev == BEDROCK_ERROR ? "error" : "warning", msg);
}

static int starts_with_bos(const example *e, const tokenizer *tok) {
    int bos = tokenizer_bos_id(tok);
    return bos >= 0 && e->len > 0 && e->ids[0] == bos;
}

int examples_encode(const examples_source *src, const record *r, example *e, char *err, size_t errlen) {
    int32_t *ids = NULL;
    int8_t *mask = NULL;
    memset(e, 0, sizeof *e);
    int len = chat_encode(src->tmpl, src->tok, r, &src->chat, &ids, &mask, err, errlen);
    if (len < 0) return -1;
    // The dataset keeps the mask as bytes; chat gives 0/1 int8.
    e->ids = ids;
    e->mask = (uint8_t *)mask;
    e->len = len;
    e->line = r->line;
    e->keep_head = starts_with_bos(e, src->tok);
    return 0;
}

int examples_load(const examples_source *src, example **out, int *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    diag_state d = {src->path, 0, 0};
    bedrock_options opts;
    memset(&opts, 0, sizeof opts);
    opts.allow_extra_keys = src->allow_extra_keys;
    opts.diag = print_diag;
    opts.user = &d;
    bedrock_stream *s = bedrock_open(src->path, &opts, err, errlen);
    if (!s) return -1;
    int cap = 1024, count = 0, rc = 0, oom = 0;
    example *ex = malloc(sizeof *ex * cap);
    record r;
    int got;
    while (ex && (got = bedrock_next(s, &r)) == 1) {
        example e;
        char cerr[512];
        int erc = examples_encode(src, &r, &e, cerr, sizeof cerr);
        long line = r.line;
        record_free(&r);
        if (erc) {
            snprintf(err, errlen, "%s:%ld: error: %s", src->path, line, cerr);
            rc = -1;
            break;
        }
        if (count == cap) {
            cap *= 2;
            example *nx = realloc(ex, sizeof *ex * cap);
            if (!nx) { free(e.ids); free(e.mask); oom = 1; break; }
            ex = nx;
        }
        ex[count++] = e;
    }
    if (!ex || oom) { snprintf(err, errlen, "out of memory reading %s", src->path); rc = -1; }
    else if (!rc && got < 0) { snprintf(err, errlen, "%s: %s", src->path, bedrock_error(s)); rc = -1; }
    const bedrock_stats *st = bedrock_stream_stats(s);
    if (!rc && st->invalid > 0) {
        snprintf(err, errlen, "%s: %ld invalid record%s (shown above%s); fix them before training "
                 "(`quarry validate %s` lists every one)", src->path, st->invalid, st->invalid == 1 ? "" : "s",
                 d.errors > 20 ? ", first 20" : "", src->path);
        rc = -1;
    }
    if (!rc && d.warnings > 20)
        fprintf(stderr, "%s: %ld warnings in all (the first 20 shown)\n", src->path, d.warnings);
    if (!rc && count == 0) { snprintf(err, errlen, "%s: no records", src->path); rc = -1; }
    bedrock_close(s);
    if (rc) {
        for (int i = 0; i < count; i++) { free(ex[i].ids); free(ex[i].mask); }
        free(ex);
        return -1;
    }
    *out = ex;
    *n = count;
    return 0;
}
