// data/dataset.c — see dataset.h.
#include "dataset.h"
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

example_fate example_fit(example *e, const truncation *t, example_note *note) {
    memset(note, 0, sizeof *note);
    note->line = e->line;
    note->tokens = e->len;
    note->answer = answer_tokens(e);
    if (e->len > t->seq_len) {
        if (t->side == TRUNCATE_LEFT) {
            int head = e->keep_head > 0 && e->keep_head < t->seq_len ? e->keep_head : 0;
            int tail = t->seq_len - head, from = e->len - tail;
            memmove(e->ids + head, e->ids + from, sizeof *e->ids * (size_t)tail);
            memmove(e->mask + head, e->mask + from, (size_t)tail);
        }
        e->len = t->seq_len;
    }
    note->kept_tokens = e->len;
    note->kept_answer = answer_tokens(e);
    if (note->tokens < 2) note->fate = FATE_DROPPED_EMPTY;
    else if (note->answer == 0) note->fate = FATE_DROPPED_NO_ANSWER;
    else if (note->kept_answer == 0) note->fate = FATE_DROPPED_CUT;
    else note->fate = note->kept_tokens < note->tokens ? FATE_TRUNCATED : FATE_WHOLE;
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

int example_set_init(example_set *s, example *ex, int n, const truncation *t, const char *source_name,
                     char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->seq_len = t->seq_len;
    s->report.seq_len = t->seq_len;
    s->report.side = t->side;
    int kept = 0, i = 0, rc = 0;
    if (t->seq_len < 2) {
        snprintf(err, errlen, "max sequence length %d is too small (need at least 2)", t->seq_len);
        rc = -1;
    }
    for (; !rc && i < n; i++) {
        example *e = &ex[i];
        if (e->len > t->seq_len && t->on_long == ON_LONG_ERROR) {
            snprintf(err, errlen, "%s:%ld: record has %d tokens, more than --max-seq-len %d\n"
                     "hint: raise --max-seq-len, shorten the record, or use --on-long truncate",
                     source_name, e->line, e->len, t->seq_len);
            rc = -1;
            break;
        }
        example_note note;
        example_fate f = example_fit(e, t, &note);
        if (example_report_add(&s->report, &note)) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
            break;
        }
        if (f != FATE_WHOLE && f != FATE_TRUNCATED) {   // nothing to learn from: no target inside the sequence
            example_free(e);
            continue;
        }
        s->truncated += f == FATE_TRUNCATED;
        s->total_tokens += e->len;
        s->trained_tokens += note.kept_answer;
        ex[kept++] = *e;
    }
    if (!rc) rc = example_report_check(&s->report, t, source_name, err, errlen);
    if (rc) {
        for (int j = i; j < n; j++) example_free(&ex[j]);
        for (int j = 0; j < kept; j++) example_free(&ex[j]);
        free(ex);
        example_report_free(&s->report);
        memset(s, 0, sizeof *s);
        return -1;
    }
    s->examples = ex;
    s->n = kept;
    return 0;
}

void example_set_free(example_set *s) {
    for (int i = 0; i < s->n; i++) example_free(&s->examples[i]);
    free(s->examples);
    example_report_free(&s->report);
    memset(s, 0, sizeof *s);
}

// Fisher–Yates with the shared counter-based generator.
static void shuffle_indices(int *idx, int n, uint64_t seed) {
    rng_state r = {seed, 0};
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next_u64(&r) % (uint64_t)(i + 1));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static void recount(example_set *s) {
    s->total_tokens = s->trained_tokens = 0;
    for (int i = 0; i < s->n; i++) {
        s->total_tokens += s->examples[i].len;
        for (int t = 1; t < s->examples[i].len; t++) s->trained_tokens += s->examples[i].mask[t] != 0;
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
    int *idx = malloc(sizeof(int) * s->n);
    example *train = malloc(sizeof(example) * (s->n - nval)), *v = malloc(sizeof(example) * nval);
    char *is_val = calloc(s->n, 1);
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
        if (is_val[i]) v[b++] = s->examples[i];
        else train[a++] = s->examples[i];
    }
    free(idx);
    free(is_val);
    free(s->examples);
    val->examples = v;
    val->n = nval;
    val->seq_len = s->seq_len;
    s->examples = train;
    s->n = a;
    recount(s);
    recount(val);
    return 0;
}

int dataset_pack_epoch(const example_set *s, uint64_t seed, int epoch, int shuffle, packed_epoch *out,
                       char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int T = s->seq_len;
    int *order = malloc(sizeof(int) * (s->n ? s->n : 1));
    int *row_of = malloc(sizeof(int) * (s->n ? s->n : 1));
    if (!order || !row_of) {
        free(order); free(row_of);
        snprintf(err, errlen, "out of memory packing %d records", s->n);
        return -1;
    }
    for (int i = 0; i < s->n; i++) order[i] = i;
    if (shuffle) shuffle_indices(order, s->n, rng_mix64(seed + 0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)));
    // Greedy packing in shuffled order: keeps the epoch order close to the shuffle while filling
    // rows; examples never span rows.
    int nrows = 0, used = T;
    for (int k = 0; k < s->n; k++) {
        int len = s->examples[order[k]].len;
        if (used + len > T) { nrows++; used = 0; }
        row_of[k] = nrows - 1;
        used += len;
    }
    out->seq_len = T;
    out->nrows = nrows;
    out->rows = calloc(nrows ? nrows : 1, sizeof(packed_row));
    out->storage = malloc(sizeof(int32_t) * 4 * (size_t)T * (nrows ? nrows : 1));
    if (!out->rows || !out->storage) {
        free(order); free(row_of); packed_epoch_free(out);
        snprintf(err, errlen, "out of memory packing %d rows of %d tokens", nrows, T);
        return -1;
    }
    for (int r = 0; r < nrows; r++) {
        packed_row *row = &out->rows[r];
        int32_t *base = out->storage + (size_t)4 * T * r;
        row->ids = base;
        row->targets = base + T;
        row->pos = base + 2 * T;
        row->doc_start = base + 3 * T;
        for (int t = 0; t < T; t++) {  // padding: its own one-token documents, nothing trained
            row->ids[t] = 0;
            row->targets[t] = -1;
            row->pos[t] = 0;
            row->doc_start[t] = t;
        }
    }
    int *fill = calloc(nrows ? nrows : 1, sizeof(int));
    if (!fill) {
        free(order); free(row_of); packed_epoch_free(out);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int k = 0; k < s->n; k++) {
        const example *e = &s->examples[order[k]];
        packed_row *row = &out->rows[row_of[k]];
        int start = fill[row_of[k]];
        for (int t = 0; t < e->len; t++) {
            row->ids[start + t] = e->ids[t];
            row->pos[start + t] = t;
            row->doc_start[start + t] = start;
            int trained = t + 1 < e->len && e->mask[t + 1];
            row->targets[start + t] = trained ? e->ids[t + 1] : -1;
            row->trained += trained;
        }
        fill[row_of[k]] = start + e->len;
        row->used = start + e->len;
    }
    free(fill);
    free(order);
    free(row_of);
    return 0;
}

void packed_epoch_free(packed_epoch *e) {
    free(e->rows);
    free(e->storage);
    memset(e, 0, sizeof *e);
}

long dataset_fill_batch(const packed_epoch *e, int first, int count, int32_t *ids, int32_t *targets,
                        int32_t *pos, int32_t *doc_start) {
    int T = e->seq_len;
    long trained = 0;
    for (int b = 0; b < count; b++) {
        int r = first + b;
        size_t off = (size_t)b * T;
        if (r < e->nrows) {
            const packed_row *row = &e->rows[r];
            memcpy(ids + off, row->ids, sizeof(int32_t) * T);
            memcpy(targets + off, row->targets, sizeof(int32_t) * T);
            memcpy(pos + off, row->pos, sizeof(int32_t) * T);
            memcpy(doc_start + off, row->doc_start, sizeof(int32_t) * T);
            trained += row->trained;
        } else {
            for (int t = 0; t < T; t++) {
                ids[off + t] = 0;
                targets[off + t] = -1;
                pos[off + t] = 0;
                doc_start[off + t] = t;
            }
        }
    }
    return trained;
}
