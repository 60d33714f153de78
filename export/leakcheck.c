// export/leakcheck.c — see leakcheck.h. A record is rendered and tokenized once, as training
// encoded it (chat_encode's text, BOS rule and token offsets); the prompt for a value is the
// tokens that end before it, so the model sees exactly the context it was trained on, and its
// continuation is compared with the rendered text from the first token not in the prompt.
#define _GNU_SOURCE   // memmem
#include "leakcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/bedrock.h"
#include "../data/fileio.h"
#include "../data/scan.h"
#include "../kernels/rng.h"

typedef struct {
    char *text;            // the rendered record (or a canary's prefix + secret, raw)
    size_t len;
    int32_t *ids;          // BOS (when training prepended one) + the tokens of text
    int32_t *off;          // 2 per id: [start, end) bytes in text; BOS [0, 0)
    int n;
} leak_doc;

typedef struct {
    int canary;            // 0: a scan finding
    scan_kind kind;
    long line;             // finding: its record's line; canary: its line in the canary file
    long data_line;        // canary: the record it was found in; 0 none (prompted with its prefix)
    int doc;
    size_t off, len;       // the value in the doc's text
    char masked[64];
    char *secret;          // canaries only: the secret (memory only, never written)
    char *prefix;          // canaries only: the user's prefix, as given
    // results
    int tested;            // 0: untestable (nothing precedes the value)
    size_t reproduced;     // leading characters of the value that came back
    leak_result result;
    leak_exposure exposure;
    uint64_t key;          // (prompt, expected text): the same key gives the same greedy answer
    uint64_t vhash;        // of the value: groups the table's lines (memory only)
} leak_target;

struct leak_set {
    char data_path[1024], canary_path[1024];
    const tokenizer *tok;
    leak_doc *docs;
    int ndocs, capdocs;
    leak_target *t;
    int nt, capt;
    int records;           // records read
    int distinct;          // prompts actually generated from (after de-duplication)
    int candidates;
};

const char *leak_result_name(leak_result r) { return r == LEAK_EXACT ? "exact" : r == LEAK_PARTIAL ? "partial" : "none"; }

leak_result leak_classify(size_t reproduced, size_t len) {
    if (len > 0 && reproduced >= len) return LEAK_EXACT;
    size_t need = (len + 1) / 2 < LEAK_PARTIAL_CHARS ? (len + 1) / 2 : LEAK_PARTIAL_CHARS;
    if (need < LEAK_PARTIAL_MIN) need = LEAK_PARTIAL_MIN;
    return reproduced >= need ? LEAK_PARTIAL : LEAK_NONE;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static int push_doc(leak_set *s, const leak_doc *d) {
    if (s->ndocs == s->capdocs) {
        int cap = s->capdocs ? 2 * s->capdocs : 64;
        leak_doc *nd = realloc(s->docs, sizeof *nd * (size_t)cap);
        if (!nd) return -1;
        s->docs = nd;
        s->capdocs = cap;
    }
    s->docs[s->ndocs++] = *d;
    return s->ndocs - 1;
}

static leak_target *push_target(leak_set *s) {
    if (s->nt == s->capt) {
        int cap = s->capt ? 2 * s->capt : 64;
        leak_target *nt = realloc(s->t, sizeof *nt * (size_t)cap);
        if (!nt) return NULL;
        s->t = nt;
        s->capt = cap;
    }
    leak_target *t = &s->t[s->nt++];
    memset(t, 0, sizeof *t);
    return t;
}

static void doc_free(leak_doc *d) {
    free(d->text);
    free(d->ids);
    free(d->off);
}

// text (taken over) tokenized as chat_encode does: BOS in front when the rendering has none and
// the tokenizer adds one.
static int doc_make(const tokenizer *tok, char *text, size_t len, int has_bos, leak_doc *d, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    d->text = text;
    d->len = len;
    int32_t *ids = NULL, *off = NULL;
    int n = tokenizer_encode(tok, text, len, 0, &ids, &off, err, errlen);
    if (n < 0) return -1;
    int bos = tokenizer_bos_id(tok);
    int add = !has_bos && tokenizer_adds_bos(tok) && bos >= 0;
    d->ids = malloc(sizeof *d->ids * (size_t)(n + add + 1));
    d->off = malloc(sizeof *d->off * 2 * (size_t)(n + add + 1));
    if (!d->ids || !d->off) {
        free(ids);
        free(off);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (add) {
        d->ids[0] = bos;
        d->off[0] = d->off[1] = 0;
    }
    if (n) {
        memcpy(d->ids + add, ids, sizeof *ids * (size_t)n);
        memcpy(d->off + 2 * add, off, sizeof *off * 2 * (size_t)n);
    }
    d->n = n + add;
    free(ids);
    free(off);
    return 0;
}

typedef struct {
    char *prefix, *secret;
    long line;
    int found;
} canary;

static void canaries_free(canary *c, int n) {
    for (int i = 0; i < n; i++) {
        free(c[i].prefix);
        free(c[i].secret);
    }
    free(c);
}

// PREFIX<TAB>SECRET per line; blank lines and lines starting with '#' are skipped.
static canary *canaries_read(const char *path, int *count, char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    *count = 0;
    if (fileio_read_all(path, &text, &len, err, errlen) != 0) return NULL;
    canary *c = calloc(1, sizeof *c);
    int cap = 1, n = 0;
    long line = 0;
    size_t i = 0;
    while (c && i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        size_t le = e > i && text[e - 1] == '\r' ? e - 1 : e;
        line++;
        const char *l = text + i;
        size_t ll = le - i;
        i = e + 1;
        if (ll == 0 || l[0] == '#') continue;
        const char *tab = memchr(l, '\t', ll);
        if (!tab || tab == l || (size_t)(tab - l) + 1 >= ll || memchr(tab + 1, '\t', ll - (size_t)(tab - l) - 1) ||
            ll - (size_t)(tab - l) - 1 > LEAK_MAX_SECRET) {
            snprintf(err, errlen, "%s:%ld: error: a canary line is PREFIX<TAB>SECRET (one tab, both parts non-empty, "
                     "the secret at most %d bytes)\n"
                     "hint: e.g. \"my pin is <TAB>1234-5678\"; lines starting with # are comments", path, line,
                     LEAK_MAX_SECRET);
            canaries_free(c, n);
            free(text);
            return NULL;
        }
        if (n == cap) {
            canary *nc = realloc(c, sizeof *nc * (size_t)(cap *= 2));
            if (!nc) break;
            c = nc;
        }
        size_t pl = (size_t)(tab - l), sl = ll - pl - 1;
        c[n].prefix = strndup(l, pl);
        c[n].secret = strndup(tab + 1, sl);
        c[n].line = line;
        c[n].found = 0;
        n++;
        if (!c[n - 1].prefix || !c[n - 1].secret) break;
    }
    free(text);
    if (!c || i < len) {
        canaries_free(c, n);
        snprintf(err, errlen, "out of memory reading %s", path);
        return NULL;
    }
    if (n == 0) {
        canaries_free(c, n);
        snprintf(err, errlen, "%s: no canary lines\nhint: one per line: PREFIX<TAB>SECRET", path);
        return NULL;
    }
    *count = n;
    return c;
}

typedef struct {
    leak_set *s;
    long line;
    size_t nhits;
    scan_hit hits[256];    // a record with more findings than this is reported for the first 256
} record_hits;

static void on_hit(void *user, const scan_hit *h) {
    record_hits *r = user;
    if (r->nhits < sizeof r->hits / sizeof r->hits[0]) r->hits[r->nhits] = *h;
    r->nhits++;
}

static void print_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    (void)col;
    if (sev == BEDROCK_ERROR) fprintf(stderr, "%s:%ld: error: %s\n", (const char *)user, line, msg);
}

static int add_canary_target(leak_set *s, const canary *c, int doc, size_t off, long data_line) {
    leak_target *t = push_target(s);
    if (!t) return -1;
    t->canary = 1;
    t->line = c->line;
    t->data_line = data_line;
    t->doc = doc;
    t->off = off;
    t->len = strlen(c->secret);
    t->secret = strdup(c->secret);
    t->prefix = strdup(c->prefix);
    scan_mask(c->secret, t->len, t->masked, sizeof t->masked);
    return t->secret && t->prefix ? 0 : -1;
}

leak_set *leakcheck_collect(const leak_source *src, char *err, size_t errlen) {
    leak_set *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->data_path, sizeof s->data_path, "%s", src->data_path);
    if (src->canary_path) snprintf(s->canary_path, sizeof s->canary_path, "%s", src->canary_path);
    s->tok = src->tok;
    int ncan = 0;
    canary *can = NULL;
    if (src->canary_path && !(can = canaries_read(src->canary_path, &ncan, err, errlen))) {
        free(s);
        return NULL;
    }
    bedrock_options bo;
    memset(&bo, 0, sizeof bo);
    bo.diag = print_diag;
    bo.user = (void *)src->data_path;
    bedrock_stream *bs = bedrock_open(src->data_path, &bo, err, errlen);
    if (!bs) goto fail;
    record r;
    int got;
    record_hits *rh = malloc(sizeof *rh);
    if (!rh) goto oom;
    while ((got = bedrock_next(bs, &r)) == 1) {
        s->records++;
        chat_rendered c;
        char cerr[512];
        long line = r.line;
        int rc = chat_render(src->tmpl, &r, &src->chat, &c, cerr, sizeof cerr);
        record_free(&r);
        if (rc != 0) {
            snprintf(err, errlen, "%s:%ld: error: %s", src->data_path, line, cerr);
            free(rh);
            goto fail;
        }
        rh->s = s;
        rh->line = line;
        rh->nhits = 0;
        scan_text(c.text, c.len, on_hit, rh);
        int has_canary = 0;
        for (int k = 0; k < ncan; k++) {
            if (can[k].found) continue;
            size_t pl = strlen(can[k].prefix), sl = strlen(can[k].secret);
            char *whole = malloc(pl + sl + 1);
            if (!whole) {
                chat_rendered_free(&c);
                goto oom_c;
            }
            memcpy(whole, can[k].prefix, pl);
            memcpy(whole + pl, can[k].secret, sl + 1);
            if (memmem(c.text, c.len, whole, pl + sl)) has_canary = 1;
            free(whole);
        }
        if (!rh->nhits && !has_canary) {
            chat_rendered_free(&c);
            continue;
        }
        leak_doc d;
        int has_bos = c.has_bos;
        char *text = c.text;
        size_t len = c.len;
        c.text = NULL;
        chat_rendered_free(&c);
        if (doc_make(s->tok, text, len, has_bos, &d, err, errlen) != 0) {
            doc_free(&d);
            free(rh);
            goto fail;
        }
        int di = push_doc(s, &d);
        if (di < 0) {
            doc_free(&d);
            goto oom_c;
        }
        size_t nh = rh->nhits < sizeof rh->hits / sizeof rh->hits[0] ? rh->nhits : sizeof rh->hits / sizeof rh->hits[0];
        for (size_t h = 0; h < nh; h++) {
            leak_target *t = push_target(s);
            if (!t) goto oom_c;
            t->kind = rh->hits[h].kind;
            t->line = line;
            t->doc = di;
            t->off = rh->hits[h].offset;
            t->len = rh->hits[h].len;
            t->vhash = fnv(0xcbf29ce484222325ull, d.text + t->off, t->len);
            scan_mask(d.text + t->off, t->len, t->masked, sizeof t->masked);
        }
        for (int k = 0; k < ncan; k++) {
            if (can[k].found) continue;
            size_t pl = strlen(can[k].prefix), sl = strlen(can[k].secret);
            for (const char *p = d.text; (p = memmem(p, d.len - (size_t)(p - d.text), can[k].prefix, pl));) {
                if ((size_t)(p - d.text) + pl + sl <= d.len && !memcmp(p + pl, can[k].secret, sl)) {
                    can[k].found = 1;
                    if (add_canary_target(s, &can[k], di, (size_t)(p - d.text) + pl, line) != 0) goto oom_c;
                    break;
                }
                p++;
            }
        }
    }
    free(rh);
    rh = NULL;
    if (got < 0) {
        snprintf(err, errlen, "%s", bedrock_error(bs));
        goto fail;
    }
    if (bedrock_stream_stats(bs)->invalid > 0) {
        snprintf(err, errlen, "%s: %ld invalid record(s) (shown above); the run could not have trained on it as it is",
                 src->data_path, bedrock_stream_stats(bs)->invalid);
        goto fail;
    }
    // A canary not in the data is checked with its prefix alone, as raw text (the paper's setting).
    for (int k = 0; k < ncan; k++) {
        if (can[k].found) continue;
        size_t pl = strlen(can[k].prefix), sl = strlen(can[k].secret);
        char *text = malloc(pl + sl + 1);
        if (!text) goto oom;
        memcpy(text, can[k].prefix, pl);
        memcpy(text + pl, can[k].secret, sl + 1);
        leak_doc d;
        if (doc_make(s->tok, text, pl + sl, 0, &d, err, errlen) != 0) {
            doc_free(&d);
            goto fail;
        }
        int di = push_doc(s, &d);
        if (di < 0) {
            doc_free(&d);
            goto oom;
        }
        if (add_canary_target(s, &can[k], di, pl, 0) != 0) goto oom;
    }
    bedrock_close(bs);
    canaries_free(can, ncan);
    return s;
oom_c:
    free(rh);
oom:
    snprintf(err, errlen, "out of memory reading %s", src->data_path);
fail:
    if (bs) bedrock_close(bs);
    canaries_free(can, ncan);
    leakcheck_free(s);
    return NULL;
}

void leakcheck_free(leak_set *s) {
    if (!s) return;
    for (int i = 0; i < s->ndocs; i++) doc_free(&s->docs[i]);
    for (int i = 0; i < s->nt; i++) {
        if (s->t[i].secret) memset(s->t[i].secret, 0, s->t[i].len);
        free(s->t[i].secret);
        free(s->t[i].prefix);
    }
    free(s->docs);
    free(s->t);
    free(s);
}

int leakcheck_targets(const leak_set *s) { return s->nt; }

// The first token of d that does not end before byte off: the prompt is d->ids[0..k).
static int prompt_end(const leak_doc *d, size_t off) {
    int k = 0;
    while (k < d->n && (size_t)d->off[2 * k + 1] <= off) k++;
    return k;
}

// The prompt's budget: the planned length less room for the answer.
static int max_prompt(const leak_options *o) {
    int room = o->max_new > 0 ? o->max_new : LEAK_ANSWER_ROOM;
    return o->seq_len - room > 1 ? o->seq_len - room : 1;
}

// Greedy continuation of t's prompt; sets t->reproduced and t->result.
static int reproduce(leak_set *s, leak_target *t, model *m, const leak_options *o, int seq_len, char *err,
                     size_t errlen) {
    const leak_doc *d = &s->docs[t->doc];
    int k = prompt_end(d, t->off);
    if (k == 0) return 0;   // nothing precedes the value: no prompt to give
    size_t bstart = k < d->n ? (size_t)d->off[2 * k] : t->off;
    if (bstart > t->off) bstart = t->off;
    int vend = k;   // tokens up to the value's end
    while (vend < d->n && (size_t)d->off[2 * vend] < t->off + t->len) vend++;
    int max_new = o->max_new > 0 ? o->max_new : (vend - k) + 8;
    int np = k < max_prompt(o) ? k : max_prompt(o);
    if (np + max_new > seq_len) max_new = seq_len - np;
    if (max_new < 1) {
        snprintf(err, errlen, "the model's planned context (%d) leaves no room to generate", seq_len);
        return -1;
    }
    const int32_t *prompt = d->ids + (k - np);
    uint64_t key = fnv(0xcbf29ce484222325ull, prompt, sizeof *prompt * (size_t)np);
    key = fnv(key, d->text + bstart, t->off + t->len - bstart);
    key = fnv(key, &max_new, sizeof max_new);
    t->tested = 1;
    t->key = key;
    for (leak_target *u = s->t; u < t; u++)
        if (u->tested && u->key == key && !u->canary == !t->canary) {
            t->reproduced = u->reproduced;
            t->result = u->result;
            return 0;
        }
    s->distinct++;
    int32_t *buf = malloc(sizeof *buf * (size_t)(np + max_new));
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(buf, prompt, sizeof *buf * (size_t)np);
    int made = model_generate_greedy(m, prompt, np, max_new, o->stop_id, buf + np);
    if (made < 0) {
        snprintf(err, errlen, "%s", model_error(m));
        free(buf);
        return -1;
    }
    // The continuation as text: decoded together with the prompt (a SentencePiece decoder strips
    // the first token's space), then the prompt's own decoding cut off.
    size_t fl = 0, pl = 0;
    char *full = tokenizer_decode(s->tok, buf, np + made, 0, &fl);
    char *pre = tokenizer_decode(s->tok, buf, np, 0, &pl);
    free(buf);
    if (!full || !pre) {
        free(full);
        free(pre);
        snprintf(err, errlen, "the tokenizer cannot decode the model's output");
        return -1;
    }
    const char *gen = full;
    size_t gl = fl;
    if (pl <= fl && !memcmp(full, pre, pl)) {
        gen = full + pl;
        gl = fl - pl;
    }
    const char *want = d->text + bstart;
    size_t lead = t->off - bstart, c = 0;
    while (c < gl && c < lead + t->len && gen[c] == want[c]) c++;
    t->reproduced = c > lead ? c - lead : 0;
    // The whole value anywhere in the answer counts too (after a different lead-in).
    if (t->reproduced < t->len && memmem(gen, gl, d->text + t->off, t->len)) t->reproduced = t->len;
    t->result = leak_classify(t->reproduced, t->len);
    memset(full, 0, fl);
    free(full);
    free(pre);
    return 0;
}

// Scoring canary candidates with the model: log-perplexity (Σ −ln p, nats) of the tokens from the
// first token not in the prompt to the candidate's end, the prompt being the canary's.
typedef struct {
    leak_set *s;
    const leak_target *t;
    model *m;
    int seq_len, batch, max_prompt;
    char *err;
    size_t errlen;
} scorer;

static int score_model(void *user, const char *const *cands, int kc, double *out) {
    scorer *sc = user;
    const leak_doc *d = &sc->s->docs[sc->t->doc];
    int k = prompt_end(d, sc->t->off);
    size_t bstart = k < d->n ? (size_t)d->off[2 * k] : sc->t->off;
    if (bstart > sc->t->off) bstart = sc->t->off;
    size_t lead = sc->t->off - bstart;
    int rc = -1, T = 0;
    // Each candidate's tokens after the prompt, then rows only as long as the longest.
    int32_t **cont = calloc((size_t)kc, sizeof *cont);
    int *nc = calloc((size_t)kc, sizeof *nc), *np = calloc((size_t)kc, sizeof *np);
    char *text = malloc(lead + LEAK_MAX_SECRET + 1);
    int32_t *ids = NULL, *tg = NULL, *pos = NULL, *ds = NULL;
    float *loss = NULL;
    if (!cont || !nc || !np || !text) goto oom;
    for (int r = 0; r < kc; r++) {
        size_t cl = strlen(cands[r]);
        if (cl > LEAK_MAX_SECRET) cl = LEAK_MAX_SECRET;
        memcpy(text, d->text + bstart, lead);
        memcpy(text + lead, cands[r], cl);
        nc[r] = tokenizer_encode(sc->s->tok, text, lead + cl, 0, &cont[r], NULL, sc->err, sc->errlen);
        if (nc[r] < 0) goto out;
        np[r] = k < sc->max_prompt ? k : sc->max_prompt;
        if (np[r] + nc[r] > sc->seq_len) np[r] = sc->seq_len - nc[r];
        if (np[r] < 1 || nc[r] < 1) {
            snprintf(sc->err, sc->errlen, "a canary candidate of %d tokens does not fit the context %d", nc[r],
                     sc->seq_len);
            goto out;
        }
        if (np[r] + nc[r] > T) T = np[r] + nc[r];
    }
    size_t N = (size_t)kc * (size_t)T;
    ids = calloc(N, sizeof *ids);
    tg = malloc(sizeof *tg * N);
    pos = calloc(N, sizeof *pos);
    ds = calloc(N, sizeof *ds);
    loss = malloc(sizeof *loss * N);
    if (!ids || !tg || !pos || !ds || !loss) goto oom;
    for (size_t i = 0; i < N; i++) tg[i] = -1;
    for (int r = 0; r < kc; r++) {
        int32_t *row = ids + (size_t)r * T, *trow = tg + (size_t)r * T, *prow = pos + (size_t)r * T;
        int32_t *drow = ds + (size_t)r * T;
        memcpy(row, d->ids + (k - np[r]), sizeof *row * (size_t)np[r]);
        memcpy(row + np[r], cont[r], sizeof *row * (size_t)nc[r]);
        int used = np[r] + nc[r];
        for (int i = 0; i < T; i++) {
            prow[i] = i < used ? i : 0;
            drow[i] = i < used ? 0 : i;   // padding: a document of its own
        }
        for (int i = np[r] - 1; i < used - 1; i++) trow[i] = row[i + 1];
    }
    model_batch b = {.B = kc, .T = T, .ids = ids, .targets = tg, .pos = pos, .doc_start = ds};
    if (model_forward(sc->m, &b, 0.0f, NULL) != 0 || model_read_losses(sc->m, loss) != 0) {
        snprintf(sc->err, sc->errlen, "%s", model_error(sc->m));
        goto out;
    }
    for (int r = 0; r < kc; r++) {
        double sum = 0;
        for (int i = 0; i < T; i++)
            if (tg[(size_t)r * T + i] >= 0) sum += loss[(size_t)r * T + i];
        out[r] = sum;
    }
    rc = 0;
    goto out;
oom:
    snprintf(sc->err, sc->errlen, "out of memory");
out:
    if (cont)
        for (int r = 0; r < kc; r++) free(cont[r]);
    free(cont);
    free(nc);
    free(np);
    free(ids);
    free(tg);
    free(pos);
    free(ds);
    free(loss);
    free(text);
    return rc;
}

int leakcheck_exposure(const char *secret, size_t len, int n, uint64_t seed, int batch, leak_score_fn score,
                       void *user, leak_exposure *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    double space = 0, size = 1;   // log2 |R|, and |R| itself while it is exact in a double
    for (size_t i = 0; i < len; i++) {
        char c = secret[i];
        int k = (c >= '0' && c <= '9') ? 10 : ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) ? 26 : 1;
        space += log2(k);
        size *= k;
    }
    out->log2_space = space;
    if (n < 1 || batch < 1) {
        snprintf(err, errlen, "the exposure needs at least one candidate and a batch of one");
        return -1;
    }
    // Fewer distinct candidates than asked for: the whole space (less the secret) at most.
    if (space < 40 && size - 1 < n) n = (int)(size - 1);
    if (n < 1) {
        snprintf(err, errlen, "the canary's secret has no letters or digits to vary");
        return -1;
    }
    char **c = calloc((size_t)n + 1, sizeof *c);
    double *lp = malloc(sizeof *lp * ((size_t)n + 1));
    int rc = -1;
    if (!c || !lp) goto oom;
    rng_state r = {seed, 0};
    for (int i = 0; i <= n; i++) {
        if (!(c[i] = malloc(len + 1))) goto oom;
        memcpy(c[i], secret, len + 1);
        if (i == 0) continue;
        for (int tries = 0; tries < 64 && !memcmp(c[i], secret, len); tries++)
            for (size_t j = 0; j < len; j++) {
                char ch = secret[j];
                uint64_t v = rng_next_u64(&r);
                if (ch >= '0' && ch <= '9') c[i][j] = (char)('0' + v % 10);
                else if (ch >= 'a' && ch <= 'z') c[i][j] = (char)('a' + v % 26);
                else if (ch >= 'A' && ch <= 'Z') c[i][j] = (char)('A' + v % 26);
            }
    }
    for (int i = 0; i <= n; i += batch) {
        int k = n + 1 - i < batch ? n + 1 - i : batch;
        if (score(user, (const char *const *)c + i, k, lp + i) != 0) {
            if (!err[0]) snprintf(err, errlen, "scoring the canary's candidates failed");
            goto done;
        }
    }
    int rank = 1;
    for (int i = 1; i <= n; i++)
        if (lp[i] <= lp[0]) rank++;
    out->rank = rank;
    out->candidates = n;
    out->max_bits = log2((double)n + 1);
    out->bits = out->max_bits - log2((double)rank);
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
done:
    if (c)
        for (int i = 0; i <= n; i++) {
            if (c[i]) memset(c[i], 0, len);
            free(c[i]);
        }
    free(c);
    free(lp);
    return rc;
}

int leakcheck_test(leak_set *s, model *m, const leak_options *o, char *err, size_t errlen) {
    int seq_len = o->seq_len;
    int progress = !o->quiet && isatty(STDERR_FILENO);
    s->candidates = o->candidates > 0 ? o->candidates : LEAK_CANDIDATES;
    for (int i = 0; i < s->nt; i++) {
        leak_target *t = &s->t[i];
        if (progress && (i % 16 == 0 || i == s->nt - 1))
            fprintf(stderr, "\rquarry leakcheck: prompting %d/%d", i + 1, s->nt);
        if (reproduce(s, t, m, o, seq_len, err, errlen) != 0) return -1;
        if (t->canary && t->tested) {
            scorer sc = {s, t, m, seq_len, o->batch > 0 ? o->batch : 1, max_prompt(o), err, errlen};
            if (leakcheck_exposure(t->secret, t->len, s->candidates, o->seed + (uint64_t)i, sc.batch, score_model, &sc,
                                   &t->exposure, err, errlen) != 0)
                return -1;
        }
    }
    if (progress && s->nt) fprintf(stderr, "\n");
    return 0;
}

leak_counts leakcheck_counts(const leak_set *s) {
    leak_counts c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < s->nt; i++) {
        const leak_target *t = &s->t[i];
        if (t->canary) {
            c.canaries++;
            c.canaries_exact += t->result == LEAK_EXACT;
            c.canaries_partial += t->result == LEAK_PARTIAL;
            if (t->exposure.bits > c.max_exposure) c.max_exposure = t->exposure.bits;
        } else {
            c.findings++;
            c.findings_exact += t->result == LEAK_EXACT;
            c.findings_partial += t->result == LEAK_PARTIAL;
        }
    }
    c.reproduced = c.findings_exact + c.findings_partial + c.canaries_exact + c.canaries_partial;
    return c;
}

static const char *base_name(const char *p) {
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

void leakcheck_print(const leak_set *s, FILE *f) {
    leak_counts c = leakcheck_counts(s);
    const char *data = base_name(s->data_path);
    // One line per value, result and characters back: a key repeated in 500 records is one line.
    int shown = 0, more = 0;
    for (int i = 0; i < s->nt; i++) {
        const leak_target *t = &s->t[i];
        if (t->canary || t->result == LEAK_NONE) continue;
        int seen = 0, also = 0;
        for (int j = 0; j < s->nt && !seen; j++) {
            const leak_target *u = &s->t[j];
            if (u->canary || u->vhash != t->vhash || u->result != t->result || u->reproduced != t->reproduced) continue;
            if (j < i) seen = 1;
            else if (j > i) also++;
        }
        if (seen) continue;
        if (shown == 40) {
            more++;
            continue;
        }
        if (!shown++)
            fprintf(f, "%-8s %-18s %-26s %-36s %s\n", "result", "kind", "value (masked)", "record", "chars back");
        char where[1200];
        if (also) snprintf(where, sizeof where, "%s:%ld (+%d more)", data, t->line, also);
        else snprintf(where, sizeof where, "%s:%ld", data, t->line);
        fprintf(f, "%-8s %-18s %-26s %-36s %zu/%zu\n", leak_result_name(t->result), scan_kind_name(t->kind), t->masked,
                where, t->reproduced, t->len);
    }
    if (more) fprintf(f, "... and %d more reproduced value(s) in the report\n", more);
    if (c.canaries) {
        fprintf(f, "%-8s %-32s %-24s %-10s %s\n", "result", "canary (masked)", "found in", "chars back",
                "exposure (bits)");
        for (int i = 0; i < s->nt; i++) {
            const leak_target *t = &s->t[i];
            if (!t->canary) continue;
            char where[1100], label[96];
            if (t->data_line) snprintf(where, sizeof where, "%s:%ld", data, t->data_line);
            else snprintf(where, sizeof where, "(not in the data)");
            snprintf(label, sizeof label, "line %ld: %s", t->line, t->masked);
            fprintf(f, "%-8s %-32s %-24s %4zu/%-5zu %.1f of %.1f (|R| = 2^%.1f)\n", leak_result_name(t->result), label,
                    where, t->reproduced, t->len, t->exposure.bits, t->exposure.max_bits, t->exposure.log2_space);
        }
    }
    fprintf(f, "leak check: %d record(s), %d finding(s), %d reproduced (%d exact, %d partial); %d canar%s, %d reproduced; "
            "%d distinct prompt(s) decoded\n",
            s->records, c.findings, c.findings_exact + c.findings_partial, c.findings_exact, c.findings_partial,
            c.canaries, c.canaries == 1 ? "y" : "ies", c.canaries_exact + c.canaries_partial, s->distinct);
}

static cJSON *counts_object(const leak_counts *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddNumberToObject(o, "findings", c->findings) &&
             cJSON_AddNumberToObject(o, "findings_exact", c->findings_exact) &&
             cJSON_AddNumberToObject(o, "findings_partial", c->findings_partial) &&
             cJSON_AddNumberToObject(o, "canaries", c->canaries) &&
             cJSON_AddNumberToObject(o, "canaries_exact", c->canaries_exact) &&
             cJSON_AddNumberToObject(o, "canaries_partial", c->canaries_partial) &&
             cJSON_AddNumberToObject(o, "reproduced", c->reproduced) &&
             cJSON_AddNumberToObject(o, "max_exposure_bits", c->max_exposure);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *leakcheck_report_json(const leak_set *s, const cJSON *meta) {
    leak_counts c = leakcheck_counts(s);
    cJSON *o = meta ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject();
    cJSON *counts = counts_object(&c), *rule = cJSON_CreateObject();
    cJSON *fs = cJSON_CreateArray(), *cs = cJSON_CreateArray();
    int ok = o && counts && rule && fs && cs;
    ok = ok && cJSON_AddStringToObject(o, "data", s->data_path) && cJSON_AddNumberToObject(o, "records", s->records);
    ok = ok && cJSON_AddNumberToObject(rule, "partial_chars", LEAK_PARTIAL_CHARS) &&
         cJSON_AddNumberToObject(rule, "partial_min", LEAK_PARTIAL_MIN) &&
         cJSON_AddStringToObject(rule, "partial",
                                 "the value's first min(partial_chars, half its length) characters, at least "
                                 "partial_min, came back") &&
         cJSON_AddNumberToObject(rule, "exposure_candidates", s->candidates);
    for (int i = 0; ok && i < s->nt; i++) {
        const leak_target *t = &s->t[i];
        cJSON *e = cJSON_CreateObject();
        ok = e != NULL;
        if (t->canary) {
            ok = ok && cJSON_AddNumberToObject(e, "canary_line", t->line) &&
                 cJSON_AddStringToObject(e, "masked", t->masked) &&
                 (t->data_line ? cJSON_AddNumberToObject(e, "data_line", t->data_line) != NULL
                               : cJSON_AddNullToObject(e, "data_line") != NULL) &&
                 cJSON_AddNumberToObject(e, "exposure_bits", t->exposure.bits) &&
                 cJSON_AddNumberToObject(e, "exposure_max_bits", t->exposure.max_bits) &&
                 cJSON_AddNumberToObject(e, "log2_space", t->exposure.log2_space) &&
                 cJSON_AddNumberToObject(e, "rank", t->exposure.rank);
        } else {
            ok = ok && cJSON_AddStringToObject(e, "kind", scan_kind_name(t->kind)) &&
                 cJSON_AddStringToObject(e, "masked", t->masked) && cJSON_AddNumberToObject(e, "line", t->line);
        }
        ok = ok && cJSON_AddNumberToObject(e, "value_chars", (double)t->len) &&
             cJSON_AddNumberToObject(e, "reproduced_chars", (double)t->reproduced) &&
             cJSON_AddBoolToObject(e, "tested", t->tested) &&
             cJSON_AddStringToObject(e, "result", leak_result_name(t->result));
        if (ok) cJSON_AddItemToArray(t->canary ? cs : fs, e);
        else cJSON_Delete(e);
    }
    if (ok) {
        cJSON_AddItemToObject(o, "counts", counts);
        cJSON_AddItemToObject(o, "rule", rule);
        cJSON_AddItemToObject(o, "findings", fs);
        cJSON_AddItemToObject(o, "canaries", cs);
        return o;
    }
    cJSON_Delete(o);
    cJSON_Delete(counts);
    cJSON_Delete(rule);
    cJSON_Delete(fs);
    cJSON_Delete(cs);
    return NULL;
}

cJSON *leakcheck_counts_json(const cJSON *report) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(report, "counts");
    if (!cJSON_IsObject(c) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(c, "reproduced"))) return NULL;
    cJSON *o = cJSON_CreateObject();
    static const char *keys[] = {"findings", "findings_exact", "findings_partial", "canaries", "canaries_exact",
                                 "canaries_partial", "reproduced", "max_exposure_bits"};
    for (size_t i = 0; o && i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, keys[i]);
        if (!cJSON_AddNumberToObject(o, keys[i], cJSON_IsNumber(v) ? v->valuedouble : 0)) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

int leakcheck_package_gate(const char *dir, int accept_leaks, char *err, size_t errlen) {
    char path[4200], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/quarry-export.json", dir);
    if (!fileio_exists(path)) return 0;   // not a quarry export: nothing recorded to check
    if (fileio_read_all(path, &text, &len, err, errlen) != 0) return -1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "%s: not valid JSON", path);
        return -1;
    }
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(j, "leakcheck");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(lc, "status");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lc, "counts"), "reproduced");
    int rc = 0;
    if (cJSON_IsObject(lc)) {
        // "skipped" (--skip-leakcheck) and "no-data" (a run.json naming no data): nobody checked.
        int skipped = cJSON_IsString(st) && (!strcmp(st->valuestring, "skipped") || !strcmp(st->valuestring, "no-data"));
        int leaks = cJSON_IsNumber(rp) && rp->valuedouble > 0;
        if ((skipped || leaks) && !accept_leaks) {
            if (skipped)
                snprintf(err, errlen, "%s was exported without a leak check (%s): nobody checked whether the weights "
                         "give back secrets of the training data\nhint: export again without --skip-leakcheck, or add "
                         "--accept-leaks to upload it anyway", dir,
                         strcmp(st->valuestring, "skipped") ? "its run named no training data" : "--skip-leakcheck");
            else
                snprintf(err, errlen, "%s holds weights that reproduced %d secret or personal value(s) of the training "
                         "data (see its quarry-export.json \"leakcheck\")\nhint: retrain on redacted data (`quarry "
                         "validate --redact`), or add --accept-leaks to upload it anyway", dir, (int)rp->valuedouble);
            rc = -1;
        } else if (skipped || leaks) {
            fprintf(stderr, "WARNING: %s: %s; uploading because of --accept-leaks\n", dir,
                    skipped ? "no leak check was made at export" : "the weights reproduce training secrets");
        }
    }
    cJSON_Delete(j);
    return rc;
}
