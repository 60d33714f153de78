// data/dataset.c — see dataset.h.
#include "dataset.h"
#include "token_store.h"
#include "../kernels/rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void example_free(example *e) {
    free(e->ids);
    free(e->mask);
    e->ids = NULL;
    e->mask = NULL;
}

int truncate_side_parse(const char *name) {
    if (!strcmp(name, "right")) return TRUNCATE_RIGHT;
    if (!strcmp(name, "left")) return TRUNCATE_LEFT;
    return -1;
}

const char *truncate_side_name(truncate_side side) { return side == TRUNCATE_LEFT ? "left" : "right"; }

const char *example_fate_name(example_fate f) {
    static const char *const names[] = {"whole", "truncated", "empty", "no_answer", "answer_cut"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "?";
}

static int answer_tokens(const example *e) {
    int n = 0;
    for (int t = 1; t < e->len; t++) n += e->mask[t] != 0;
    return n;
}

// A document of len tokens as trained at T: doc[0, head) then doc[from, len), view_len in all.
//   right: the first T tokens; left: the first keep_head (BOS) and the last T − head.
typedef struct { int head, from, len, view_len; } trunc_view;

static trunc_view view_of(int len, int keep_head, int T, truncate_side side) {
    trunc_view v = {len, len, len, len};
    if (len > T) {
        int head = side == TRUNCATE_LEFT ? (keep_head > 0 && keep_head < T ? keep_head : 0) : T;
        v.head = head;
        v.from = len - (T - head);
        v.view_len = T;
    }
    return v;
}

static example_fate fate_of(const example_note *note) {
    if (note->tokens < 2) return FATE_DROPPED_EMPTY;
    if (note->answer == 0) return FATE_DROPPED_NO_ANSWER;
    if (note->kept_answer == 0) return FATE_DROPPED_CUT;
    return note->kept_tokens < note->tokens ? FATE_TRUNCATED : FATE_WHOLE;
}

example_fate example_fit(example *e, const truncation *t, example_note *note) {
    memset(note, 0, sizeof *note);
    note->line = e->line;
    note->tokens = e->len;
    note->answer = answer_tokens(e);
    trunc_view v = view_of(e->len, e->keep_head, t->seq_len, t->side);
    int tail = v.len - v.from;
    memmove(e->ids + v.head, e->ids + v.from, sizeof *e->ids * (size_t)tail);
    memmove(e->mask + v.head, e->mask + v.from, (size_t)tail);
    e->len = v.view_len;
    note->kept_tokens = e->len;
    note->kept_answer = answer_tokens(e);
    note->fate = fate_of(note);
    return note->fate;
}

int example_report_add(example_report *r, const example_note *note) {
    r->records++;
    r->by_fate[note->fate]++;
    if (note->fate == FATE_WHOLE) r->whole++;
    else if (note->fate == FATE_TRUNCATED) r->truncated++;
    else r->dropped++;
    r->answer_tokens += note->answer;
    if (note->fate == FATE_WHOLE || note->fate == FATE_TRUNCATED) r->kept_answer_tokens += note->kept_answer;
    if (note->fate == FATE_WHOLE) return 0;
    if (r->nnotes == r->cap) {
        long cap = r->cap ? 2 * r->cap : 64;
        example_note *n = realloc(r->notes, sizeof *n * (size_t)cap);
        if (!n) return -1;
        r->notes = n;
        r->cap = cap;
    }
    r->notes[r->nnotes++] = *note;
    return 0;
}

void example_report_free(example_report *r) {
    free(r->notes);
    memset(r, 0, sizeof *r);
}

// "12, 40, 41, ..." : the lines of the first `max` notes with fate f.
static void lines_of(const example_report *r, example_fate f, int max, char *out, size_t outlen) {
    size_t at = 0;
    int listed = 0;
    out[0] = 0;
    for (long i = 0; i < r->nnotes && at < outlen; i++) {
        if (r->notes[i].fate != f) continue;
        if (listed == max) { snprintf(out + at, outlen - at, ", ..."); return; }
        int w = snprintf(out + at, outlen - at, "%s%ld", listed ? ", " : "", r->notes[i].line);
        if (w < 0) return;
        at += (size_t)w;
        listed++;
    }
}

int example_report_check(const example_report *r, const truncation *t, const char *source, char *err, size_t errlen) {
    long cut = r->by_fate[FATE_DROPPED_CUT];
    char lines[160];
    if (cut > 0 && !t->side_explicit && t->side == TRUNCATE_RIGHT) {
        lines_of(r, FATE_DROPPED_CUT, 5, lines, sizeof lines);
        snprintf(err, errlen, "%s: %ld of %ld records would be dropped: --max-seq-len %d cuts off every answer token "
                 "(line%s %s)\nhint: --truncate left keeps the answers (cuts the prompt's start), --truncate right "
                 "drops those records, or raise --max-seq-len", source, cut, r->records, r->seq_len, cut == 1 ? "" : "s",
                 lines);
        return -1;
    }
    if (r->records > 0 && r->whole + r->truncated == 0) {
        char why[256];
        snprintf(why, sizeof why, "%ld empty, %ld without an answer token, %ld with every answer token cut by --truncate %s "
                 "at --max-seq-len %d", r->by_fate[FATE_DROPPED_EMPTY], r->by_fate[FATE_DROPPED_NO_ANSWER], cut,
                 truncate_side_name(r->side), r->seq_len);
        snprintf(err, errlen, "%s: no record left to train on: all %ld were dropped (%s)%s", source, r->records, why,
                 cut ? "\nhint: --truncate left keeps the answers, or raise --max-seq-len" : "");
        return -1;
    }
    return 0;
}

static void note_describe(const example_note *n, const example_report *r, char *out, size_t outlen) {
    switch (n->fate) {
    case FATE_TRUNCATED:
        snprintf(out, outlen, "truncated (%s) from %d to %d tokens; %d of %d answer tokens kept", truncate_side_name(r->side),
                 n->tokens, n->kept_tokens, n->kept_answer, n->answer);
        break;
    case FATE_DROPPED_CUT:
        snprintf(out, outlen, "dropped: %d tokens, all %d answer tokens cut off by --truncate %s at %d", n->tokens, n->answer,
                 truncate_side_name(r->side), r->seq_len);
        break;
    case FATE_DROPPED_EMPTY:
        snprintf(out, outlen, "dropped: %d token%s, nothing to predict", n->tokens, n->tokens == 1 ? "" : "s");
        break;
    case FATE_DROPPED_NO_ANSWER:
        snprintf(out, outlen, "dropped: no answer token among its %d tokens", n->tokens);
        break;
    default:
        snprintf(out, outlen, "trained whole");
    }
}

void example_report_print(const example_report *r, const char *source, const char *prefix, int max_listed, FILE *out) {
    fprintf(out, "%s: %s: %ld record%s at --max-seq-len %d (--truncate %s): %ld whole, %ld truncated (%lld of %lld answer "
            "tokens kept), %ld dropped", prefix, source, r->records, r->records == 1 ? "" : "s", r->seq_len,
            truncate_side_name(r->side), r->whole, r->truncated, r->kept_answer_tokens, r->answer_tokens, r->dropped);
    if (r->dropped)
        fprintf(out, " (%ld empty, %ld without an answer, %ld with the answer cut off)", r->by_fate[FATE_DROPPED_EMPTY],
                r->by_fate[FATE_DROPPED_NO_ANSWER], r->by_fate[FATE_DROPPED_CUT]);
    fputc('\n', out);
    char what[200];
    for (long i = 0; i < r->nnotes && i < max_listed; i++) {
        note_describe(&r->notes[i], r, what, sizeof what);
        fprintf(out, "  %s:%ld: %s\n", source, r->notes[i].line, what);
    }
    if (r->nnotes > max_listed)
        fprintf(out, "  ... and %ld more truncated or dropped record%s\n", r->nnotes - max_listed,
                r->nnotes - max_listed == 1 ? "" : "s");
}

cJSON *example_report_to_json(const example_report *r, int max_listed) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "max_seq_len", r->seq_len);
    cJSON_AddStringToObject(o, "truncate", truncate_side_name(r->side));
    cJSON_AddNumberToObject(o, "records", (double)r->records);
    cJSON_AddNumberToObject(o, "whole", (double)r->whole);
    cJSON_AddNumberToObject(o, "truncated", (double)r->truncated);
    cJSON_AddNumberToObject(o, "dropped", (double)r->dropped);
    cJSON *why = cJSON_AddObjectToObject(o, "dropped_by_reason");
    for (int f = FATE_DROPPED_EMPTY; f <= FATE_DROPPED_CUT; f++)
        cJSON_AddNumberToObject(why, example_fate_name((example_fate)f), (double)r->by_fate[f]);
    cJSON_AddNumberToObject(o, "answer_tokens", (double)r->answer_tokens);
    cJSON_AddNumberToObject(o, "answer_tokens_kept", (double)r->kept_answer_tokens);
    static const char *const lists[2] = {"dropped_records", "truncated_records"};
    for (int k = 0; k < 2; k++) {
        cJSON *a = cJSON_AddArrayToObject(o, lists[k]);
        long listed = 0, all = k ? r->truncated : r->dropped;
        for (long i = 0; a && i < r->nnotes && listed < max_listed; i++) {
            const example_note *n = &r->notes[i];
            if ((n->fate == FATE_TRUNCATED) != (k == 1)) continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "line", (double)n->line);
            if (!k) cJSON_AddStringToObject(e, "reason", example_fate_name(n->fate));
            cJSON_AddNumberToObject(e, "tokens", n->tokens);
            if (k) cJSON_AddNumberToObject(e, "kept_tokens", n->kept_tokens);
            cJSON_AddNumberToObject(e, "answer_tokens", n->answer);
            if (k) cJSON_AddNumberToObject(e, "answer_tokens_kept", n->kept_answer);
            cJSON_AddItemToArray(a, e);
            listed++;
        }
        char key[40];
        snprintf(key, sizeof key, "%s_not_listed", lists[k]);
        cJSON_AddNumberToObject(o, key, (double)(all - listed));
    }
    return o;
}

// The trained positions p ≥ 1 of document doc's view v (the first token is never a target), read
// from its mask runs; with targets, targets[p − 1] = ids[p] for each (ids, targets: the view's).
static int view_mask(const token_store *st, long doc, const trunc_view *v, const int32_t *ids, int32_t *targets) {
    int n, count = 0;
    const uint32_t *runs = token_store_runs(st, doc, &n);
    for (int k = 0; k < n; k++) {
        int a = (int)runs[2 * k], b = (int)runs[2 * k + 1];
        // segment 1: doc[0, head) at view 0; segment 2: doc[from, len) at view head
        int lo[2] = {a, a > v->from ? a : v->from}, hi[2] = {b < v->head ? b : v->head, b};
        int shift[2] = {0, v->head - v->from};
        for (int g = 0; g < 2; g++)
            for (int p = lo[g] + shift[g]; p < hi[g] + shift[g]; p++) {
                if (p < 1) continue;
                count++;
                if (targets) targets[p - 1] = ids[p];
            }
    }
    return count;
}

static trunc_view doc_view(const example_set *s, long doc) {
    const token_store_doc *d = token_store_doc_at(s->store, doc);
    return view_of(token_store_doc_len(d), token_store_doc_keep_head(d), s->seq_len, s->side);
}

// Document i's fate at t, as example_fit gives it for the same example in memory.
static void doc_note(const token_store *st, long i, const truncation *t, example_note *note) {
    const token_store_doc *d = token_store_doc_at(st, i);
    int len = token_store_doc_len(d);
    *note = (example_note){.line = (long)d->line, .tokens = len};
    note->answer = token_store_mask_count(st, i, 1, len);
    trunc_view v = view_of(len, token_store_doc_keep_head(d), t->seq_len, t->side);
    note->kept_tokens = v.view_len;
    note->kept_answer = view_mask(st, i, &v, NULL, NULL);
    note->fate = fate_of(note);
}

int example_report_store(example_report *r, const token_store *st, const truncation *t) {
    for (long i = 0; i < token_store_ndocs(st); i++) {
        example_note note;
        doc_note(st, i, t, &note);
        if (example_report_add(r, &note)) return -1;
    }
    return 0;
}

static int kept_len(const example_set *s, int i) {
    int len = token_store_doc_len(token_store_doc_at(s->store, s->docs[i]));
    return len < s->seq_len ? len : s->seq_len;
}

int example_set_open(example_set *s, token_store *st, const int32_t *docs, int n, const truncation *t,
                     const char *source_name, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->seq_len = t->seq_len;
    s->side = t->side;
    s->store = st;
    s->report.seq_len = t->seq_len;
    s->report.side = t->side;
    if (!docs) n = (int)token_store_ndocs(st);
    int kept = 0, rc = 0;
    int32_t *keep = malloc(sizeof *keep * (size_t)(n ? n : 1));
    if (!keep) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (t->seq_len < 2) {
        snprintf(err, errlen, "max sequence length %d is too small (need at least 2)", t->seq_len);
        rc = -1;
    }
    for (int k = 0; !rc && k < n; k++) {
        long i = docs ? docs[k] : k;
        const token_store_doc *d = token_store_doc_at(st, i);
        int len = token_store_doc_len(d);
        if (len > t->seq_len && t->on_long == ON_LONG_ERROR) {
            snprintf(err, errlen, "%s:%ld: record has %d tokens, more than --max-seq-len %d\n"
                     "hint: raise --max-seq-len, shorten the record, or use --on-long truncate",
                     source_name, (long)d->line, len, t->seq_len);
            rc = -1;
            break;
        }
        example_note note;
        doc_note(st, i, t, &note);
        if (example_report_add(&s->report, &note)) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        if (note.fate != FATE_WHOLE && note.fate != FATE_TRUNCATED) continue;   // no target inside the sequence
        s->truncated += note.fate == FATE_TRUNCATED;
        s->total_tokens += note.kept_tokens;
        s->trained_tokens += note.kept_answer;
        keep[kept++] = (int32_t)i;
    }
    if (!rc) rc = example_report_check(&s->report, t, source_name, err, errlen);
    if (rc) {
        free(keep);
        example_report_free(&s->report);
        memset(s, 0, sizeof *s);
        return -1;
    }
    s->store = token_store_retain(st);
    s->docs = keep;
    s->n = kept;
    return 0;
}

int example_set_init(example_set *s, example *ex, int n, const truncation *t, const char *source_name,
                     char *err, size_t errlen) {
    int32_t top = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < ex[i].len; k++) top = ex[i].ids[k] > top ? ex[i].ids[k] : top;
    token_store_writer *w = token_store_writer_open(NULL, top + 1, err, errlen);
    int bad = !w;
    for (int i = 0; i < n; i++) {
        if (!bad && token_store_writer_append(w, ex[i].ids, ex[i].mask, ex[i].len, ex[i].line, ex[i].keep_head)) {
            snprintf(err, errlen, "%s", token_store_writer_error(w));
            bad = 1;
        }
        example_free(&ex[i]);
    }
    free(ex);
    if (bad) {
        token_store_writer_abort(w);
        memset(s, 0, sizeof *s);
        return -1;
    }
    token_store *st = token_store_writer_commit(w, err, errlen);
    if (!st) { memset(s, 0, sizeof *s); return -1; }
    int rc = example_set_open(s, st, NULL, 0, t, source_name, err, errlen);
    token_store_release(st);
    return rc;
}

void example_set_free(example_set *s) {
    free(s->docs);
    token_store_release(s->store);
    example_report_free(&s->report);
    memset(s, 0, sizeof *s);
}

long example_set_line(const example_set *s, int i) { return (long)token_store_doc_at(s->store, s->docs[i])->line; }

int example_set_view(const example_set *s, int i, int32_t *ids, uint8_t *mask) {
    long doc = s->docs[i];
    trunc_view v = doc_view(s, doc);
    if (ids) {
        token_store_read_ids(s->store, doc, 0, v.head, ids);
        token_store_read_ids(s->store, doc, v.from, v.len - v.from, ids + v.head);
    }
    if (mask) {
        token_store_read_mask(s->store, doc, 0, v.head, mask);
        token_store_read_mask(s->store, doc, v.from, v.len - v.from, mask + v.head);
    }
    return v.view_len;
}

// Fisher–Yates with the shared counter-based generator.
static void shuffle_indices(int32_t *idx, int n, uint64_t seed) {
    rng_state r = {seed, 0};
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next_u64(&r) % (uint64_t)(i + 1));
        int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static void recount(example_set *s) {
    s->total_tokens = s->trained_tokens = 0;
    for (int i = 0; i < s->n; i++) {
        trunc_view v = doc_view(s, s->docs[i]);
        s->total_tokens += v.view_len;
        s->trained_tokens += view_mask(s->store, s->docs[i], &v, NULL, NULL);
    }
}

int example_set_split(example_set *s, example_set *val, double fraction, uint64_t seed, char *err, size_t errlen) {
    memset(val, 0, sizeof *val);
    int nval = (int)(s->n * fraction + 0.5);
    if (fraction <= 0 || fraction >= 1 || nval < 1 || nval >= s->n) {
        char dropped[160] = "";
        if (s->report.dropped)
            snprintf(dropped, sizeof dropped, " (%ld of the %ld records were dropped at --max-seq-len %d, listed above)",
                     s->report.dropped, s->report.records, s->report.seq_len);
        snprintf(err, errlen, "--validation-split %.3g of %d records gives %d for validation and %d for training%s; use "
                 "a fraction that gives at least one record to each, or --validation FILE", fraction, s->n, nval,
                 s->n - nval, dropped);
        return -1;
    }
    int32_t *idx = malloc(sizeof *idx * (size_t)s->n);
    int32_t *train = malloc(sizeof *train * (size_t)(s->n - nval)), *v = malloc(sizeof *v * (size_t)nval);
    char *is_val = calloc((size_t)s->n, 1);
    if (!idx || !train || !v || !is_val) {
        free(idx); free(train); free(v); free(is_val);
        snprintf(err, errlen, "out of memory splitting %d records", s->n);
        return -1;
    }
    for (int i = 0; i < s->n; i++) idx[i] = i;
    shuffle_indices(idx, s->n, rng_mix64(seed ^ 0x5eed5011770ull));
    for (int i = 0; i < nval; i++) is_val[idx[i]] = 1;
    int a = 0, b = 0;  // keep file order inside each side
    for (int i = 0; i < s->n; i++) {
        if (is_val[i]) v[b++] = s->docs[i];
        else train[a++] = s->docs[i];
    }
    free(idx);
    free(is_val);
    free(s->docs);
    val->store = token_store_retain(s->store);
    val->docs = v;
    val->n = nval;
    val->seq_len = s->seq_len;
    val->side = s->side;
    s->docs = train;
    s->n = a;
    recount(s);
    recount(val);
    return 0;
}

int dataset_pack_epoch(const example_set *s, uint64_t seed, int epoch, int shuffle, packed_epoch *out,
                       char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int T = s->seq_len;
    int32_t *order = malloc(sizeof *order * (size_t)(s->n ? s->n : 1));
    if (!order) {
        snprintf(err, errlen, "out of memory packing %d records", s->n);
        return -1;
    }
    for (int i = 0; i < s->n; i++) order[i] = i;
    if (shuffle) shuffle_indices(order, s->n, rng_mix64(seed + 0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)));
    // Greedy packing in shuffled order: keeps the epoch order close to the shuffle while filling
    // rows; examples never span rows. Two passes over the lengths: count the rows, then mark them.
    int nrows = 0, used = T;
    for (int k = 0; k < s->n; k++) {
        int len = kept_len(s, order[k]);
        if (used + len > T) { nrows++; used = 0; }
        used += len;
    }
    int32_t *row_first = malloc(sizeof *row_first * (size_t)(nrows + 1));
    if (!row_first) {
        free(order);
        snprintf(err, errlen, "out of memory packing %d rows of %d tokens", nrows, T);
        return -1;
    }
    int r = -1;
    used = T;
    for (int k = 0; k < s->n; k++) {
        int len = kept_len(s, order[k]);
        if (used + len > T) { row_first[++r] = k; used = 0; }
        used += len;
    }
    row_first[nrows] = s->n;
    out->set = s;
    out->order = order;
    out->row_first = row_first;
    out->nrows = nrows;
    out->seq_len = T;
    return 0;
}

void packed_epoch_free(packed_epoch *e) {
    free(e->order);
    free(e->row_first);
    memset(e, 0, sizeof *e);
}

int dataset_row_used(const packed_epoch *e, int r) {
    int used = 0;
    for (int k = e->row_first[r]; k < e->row_first[r + 1]; k++) used += kept_len(e->set, e->order[k]);
    return used;
}

// Row r into ids/targets/pos/doc_start (T each), read from the mapping; its trained count.
static long fill_row(const packed_epoch *e, int r, int32_t *ids, int32_t *targets, int32_t *pos, int32_t *doc_start) {
    const example_set *s = e->set;
    long trained = 0;
    int start = 0;
    for (int k = e->row_first[r]; k < e->row_first[r + 1]; k++) {
        long doc = s->docs[e->order[k]];
        trunc_view v = doc_view(s, doc);
        token_store_read_ids(s->store, doc, 0, v.head, ids + start);
        token_store_read_ids(s->store, doc, v.from, v.len - v.from, ids + start + v.head);
        for (int t = 0; t < v.view_len; t++) {
            pos[start + t] = t;
            doc_start[start + t] = start;
        }
        trained += view_mask(s->store, doc, &v, ids + start, targets + start);
        start += v.view_len;
    }
    return trained;
}

long dataset_fill_batch(const packed_epoch *e, int first, int count, int32_t *ids, int32_t *targets,
                        int32_t *pos, int32_t *doc_start) {
    int T = e->seq_len;
    long trained = 0;
    for (int b = 0; b < count; b++) {
        size_t off = (size_t)b * T;
        for (int t = 0; t < T; t++) {  // padding: its own one-token documents, nothing trained
            ids[off + t] = 0;
            targets[off + t] = -1;
            pos[off + t] = 0;
            doc_start[off + t] = t;
        }
        if (first + b < e->nrows) trained += fill_row(e, first + b, ids + off, targets + off, pos + off, doc_start + off);
    }
    return trained;
}
