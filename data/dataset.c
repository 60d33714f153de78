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

int example_set_init(example_set *s, example *ex, int n, int seq_len, on_long_policy policy,
                     const char *source_name, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->seq_len = seq_len;
    if (seq_len < 2) {
        snprintf(err, errlen, "max sequence length %d is too small (need at least 2)", seq_len);
        for (int i = 0; i < n; i++) example_free(&ex[i]);
        free(ex);
        return -1;
    }
    int kept = 0;
    for (int i = 0; i < n; i++) {
        example *e = &ex[i];
        if (e->len > seq_len) {
            if (policy == ON_LONG_ERROR) {
                snprintf(err, errlen, "%s:%ld: error: record has %d tokens, more than --max-seq-len %d\n"
                         "hint: raise --max-seq-len, shorten the record, or use --on-long truncate",
                         source_name, e->line, e->len, seq_len);
                for (int j = i; j < n; j++) example_free(&ex[j]);
                for (int j = 0; j < kept; j++) example_free(&ex[j]);
                free(ex);
                return -1;
            }
            e->len = seq_len;
            s->truncated++;
        }
        long trained = 0;
        for (int t = 1; t < e->len; t++) trained += e->mask[t] != 0;
        if (e->len < 2 || trained == 0) {  // nothing to learn from: no target inside the sequence
            example_free(e);
            continue;
        }
        s->total_tokens += e->len;
        s->trained_tokens += trained;
        ex[kept++] = *e;
    }
    s->examples = ex;
    s->n = kept;
    return 0;
}

void example_set_free(example_set *s) {
    for (int i = 0; i < s->n; i++) example_free(&s->examples[i]);
    free(s->examples);
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
        snprintf(err, errlen, "--validation-split %.3g of %d records leaves an empty side; use a fraction that "
                 "gives at least one record to each, or --validation FILE", fraction, s->n);
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
