// data/scan_data.c — see scan_data.h.
#include "scan_data.h"
#include "bedrock.h"
#include <stdio.h>
#include <string.h>

int scan_mode_parse(const char *s) {
    if (!strcmp(s, "off")) return SCAN_OFF;
    if (!strcmp(s, "warn")) return SCAN_WARN;
    if (!strcmp(s, "error")) return SCAN_ERROR;
    return -1;
}

typedef struct {
    const char *field, *text;
    scan_field_fn fn;
    void *user;
} field_ctx;

static void on_field_hit(void *user, const scan_hit *h) {
    field_ctx *c = user;
    c->fn(c->user, c->field, c->text, h);
}

static size_t scan_one(field_ctx *c, const char *field, const char *text, size_t len) {
    c->field = field;
    c->text = text;
    return scan_text(text, len, on_field_hit, c);
}

size_t scan_record(const record *r, scan_field_fn fn, void *user) {
    field_ctx c = {NULL, NULL, fn, user};
    size_t n = 0;
    char field[48];
    if (r->system) n += scan_one(&c, "system", r->system, r->system_len);
    if (r->text) n += scan_one(&c, "input", r->text, r->text_len);
    for (int i = 0; i < r->nturns; i++) {
        if (r->format == FORMAT_PROMPT_COMPLETION) snprintf(field, sizeof field, "%s", i == 0 ? "prompt" : "completion");
        else snprintf(field, sizeof field, "messages[%d].content", i);
        n += scan_one(&c, field, r->turns[i].text, r->turns[i].len);
    }
    return n;
}

enum { SHOWN_MAX = 5 };

typedef struct {
    long by_kind[SCAN_NKINDS], total;
    char shown[SHOWN_MAX][320];
    int nshown;
    const char *path;
    long line;
} check_state;

static void on_check_hit(void *user, const char *field, const char *text, const scan_hit *h) {
    check_state *s = user;
    s->by_kind[h->kind]++;
    s->total++;
    if (s->nshown == SHOWN_MAX) return;
    char masked[64];
    scan_mask(text + h->offset, h->len, masked, sizeof masked);
    snprintf(s->shown[s->nshown++], sizeof s->shown[0], "%.200s:%ld: %s in %s: %s", s->path, s->line,
             scan_kind_name(h->kind), field, masked);
}

int scan_data_check(const char *cmd, const char *mode_arg, const char *const *paths, int npaths) {
    int mode = mode_arg ? scan_mode_parse(mode_arg) : SCAN_WARN;
    if (mode < 0) {
        fprintf(stderr, "quarry %s: error: --scan takes off, warn or error, not '%s'\n", cmd, mode_arg);
        return 2;
    }
    if (mode == SCAN_OFF) return 0;
    int refused = 0;
    for (int f = 0; f < npaths; f++) {
        if (!paths[f]) continue;
        check_state s;
        memset(&s, 0, sizeof s);
        s.path = paths[f];
        // Extra keys and per-model rules do not matter to the scan; invalid lines are skipped.
        bedrock_options bo = {FORMAT_UNKNOWN, 1, NULL, 0, NULL, NULL};
        char err[256];
        bedrock_stream *bs = bedrock_open(paths[f], &bo, err, sizeof err);
        if (!bs) continue;
        record r;
        while (bedrock_next(bs, &r) == 1) {
            s.line = r.line;
            scan_record(&r, on_check_hit, &s);
            record_free(&r);
        }
        bedrock_close(bs);
        if (!s.total) continue;
        char kinds[400] = "";
        size_t used = 0;
        for (int k = 0; k < SCAN_NKINDS && used < sizeof kinds; k++)
            if (s.by_kind[k])
                used += (size_t)snprintf(kinds + used, sizeof kinds - used, "%s%s %ld", used ? ", " : "",
                                         scan_kind_name((scan_kind)k), s.by_kind[k]);
        int error = mode == SCAN_ERROR;
        fprintf(stderr, "quarry %s: %s: %s: %ld possible secret%s or personal data (%s); a model trained on them may "
                "reproduce them\n", cmd, error ? "error" : "warning", paths[f], s.total, s.total == 1 ? "" : "s", kinds);
        for (int i = 0; i < s.nshown; i++) fprintf(stderr, "  %s\n", s.shown[i]);
        if (s.total > s.nshown) fprintf(stderr, "  ... %ld more (quarry validate %s lists them)\n", s.total - s.nshown, paths[f]);
        fprintf(stderr, "hint: `quarry validate %s --redact OUT` writes a copy with each value replaced by a placeholder; "
                "train on OUT%s\n", paths[f], error ? ", or pass --scan warn to train on the data as it is"
                                                   : " (--scan error refuses such data, --scan off skips this check)");
        if (error) refused = 1;
    }
    return refused;
}
