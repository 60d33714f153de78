// trainer/examples.c — see examples.h.
#include "examples.h"
#include "../data/bedrock.h"
#include "../data/progress.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

// The stream: the calling thread reads and checks records (data/bedrock: the format is fixed
// by the first valid record, so checking stays in file order) into chunks of about CHUNK_BYTES
// of the file; the workers render and tokenize whole chunks; the calling thread then hands the
// chunks' examples to the sink in sequence. Diagnostics are kept with the chunk, at the record
// they came before, and printed when the sink reaches that point, so what is printed, its order
// and where a failure stops are those of one thread reading record by record.
#define CHUNK_BYTES (1u << 20)
#define CHUNK_RECORDS 1024

typedef struct {
    int at;                     // printed before the chunk's record at (nrec: after the last)
    long line;
    int col;
    bedrock_severity sev;
    char *msg;
} held_diag;

typedef struct {
    record *recs;               // read, not yet encoded (the worker frees them)
    example *ex;                // encoded, recs[i] → ex[i]
    int nrec, cap;
    int fail_at;                // first record the template or tokenizer refused, -1 none
    long fail_line;
    char fail_msg[512];
    held_diag *diags;
    int ndiag, dcap;
    unsigned long long bytes_end;   // bytes of the file read when the chunk closed
    int oom;                    // a diagnostic or a record could not be kept
    int done;                   // encoded (under the stream's lock)
} chunk;

typedef struct {
    const examples_source *src;
    pthread_mutex_t lock;
    pthread_cond_t work_cv, done_cv;
    chunk **ring;               // chunk seq lives at ring[seq % nring] from submit to sink
    int nring;
    long submitted, next_work;  // seqs: [next_work, submitted) wait for a worker
    int quit;                   // workers leave; chunks still queued are not encoded
    chunk *reading;             // where the reader's diagnostics go
} stream;

static void chunk_free(chunk *c) {
    if (!c) return;
    for (int i = 0; i < c->nrec; i++) {
        if (c->recs) record_free(&c->recs[i]);
        if (c->ex) { free(c->ex[i].ids); free(c->ex[i].mask); }
    }
    for (int i = 0; i < c->ndiag; i++) free(c->diags[i].msg);
    free(c->recs);
    free(c->ex);
    free(c->diags);
    free(c);
}

static void hold_diag(void *user, long line, int col, bedrock_severity sev, const char *msg) {
    chunk *c = ((stream *)user)->reading;
    if (c->ndiag == c->dcap) {
        int ncap = c->dcap ? 2 * c->dcap : 16;
        held_diag *nd = realloc(c->diags, (size_t)ncap * sizeof *nd);
        if (!nd) { c->oom = 1; return; }
        c->diags = nd;
        c->dcap = ncap;
    }
    char *m = strdup(msg);
    if (!m) { c->oom = 1; return; }
    c->diags[c->ndiag++] = (held_diag){c->nrec, line, col, sev, m};
}

static void chunk_encode(const examples_source *src, chunk *c) {
    for (int i = 0; i < c->nrec; i++) {
        char cerr[512];
        int erc = examples_encode(src, &c->recs[i], &c->ex[i], cerr, sizeof cerr);
        if (erc && c->fail_at < 0) {
            c->fail_at = i;
            c->fail_line = c->recs[i].line;
            snprintf(c->fail_msg, sizeof c->fail_msg, "%s", cerr);
        }
        record_free(&c->recs[i]);
        // After a refusal nothing of this chunk is handed on: the rest is not encoded.
        if (c->fail_at >= 0) {
            for (int k = i + 1; k < c->nrec; k++) record_free(&c->recs[k]);
            break;
        }
    }
    free(c->recs);
    c->recs = NULL;
}

static void *worker_main(void *arg) {
    stream *st = arg;
    pthread_mutex_lock(&st->lock);
    for (;;) {
        while (!st->quit && st->next_work == st->submitted) pthread_cond_wait(&st->work_cv, &st->lock);
        if (st->quit) break;
        chunk *c = st->ring[st->next_work++ % st->nring];
        pthread_mutex_unlock(&st->lock);
        chunk_encode(st->src, c);
        pthread_mutex_lock(&st->lock);
        c->done = 1;
        pthread_cond_broadcast(&st->done_cv);
    }
    pthread_mutex_unlock(&st->lock);
    return NULL;
}

int examples_default_threads(void) {
    const char *env = getenv("QUARRY_DATA_THREADS");
    if (env && *env) {
        char *end;
        long n = strtol(env, &end, 10);
        if (*end == 0 && n >= 1 && n <= 1024) return (int)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (int)(n < 1024 ? n : 1024) : 1;
}

// Reads records into a new chunk until it holds CHUNK_BYTES of the file, CHUNK_RECORDS records
// or the end. *got: bedrock_next's last answer (1 = more to come).
static chunk *chunk_read(stream *st, bedrock_stream *s, int *got) {
    chunk *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fail_at = -1;
    st->reading = c;
    unsigned long long start = bedrock_stream_stats(s)->bytes;
    record r;
    while ((*got = bedrock_next(s, &r)) == 1) {
        if (c->nrec == c->cap) {
            int ncap = c->cap ? 2 * c->cap : 256;
            record *nr = realloc(c->recs, (size_t)ncap * sizeof *nr);
            if (!nr) { record_free(&r); c->oom = 1; break; }
            c->recs = nr;
            c->cap = ncap;
        }
        c->recs[c->nrec++] = r;
        if (c->nrec >= CHUNK_RECORDS || bedrock_stream_stats(s)->bytes - start >= CHUNK_BYTES) break;
    }
    c->bytes_end = bedrock_stream_stats(s)->bytes;
    c->ex = calloc((size_t)(c->nrec ? c->nrec : 1), sizeof *c->ex);
    if (!c->ex) c->oom = 1;
    return c;
}

// Prints c's held diagnostics before record `upto` (from *next on), as print_diag would have.
static void flush_diags(diag_state *d, const chunk *c, int upto, int *next) {
    for (; *next < c->ndiag && c->diags[*next].at <= upto; (*next)++) {
        const held_diag *h = &c->diags[*next];
        print_diag(d, h->line, h->col, h->sev, h->msg);
    }
}

// The sink gets each example as a whole; one that keeps the arrays sets e->ids and e->mask to
// NULL (examples_load keeps them without a copy), the rest are freed with the chunk.
typedef int (*taking_sink)(void *ctx, example *e);

static int stream_run(const examples_source *src, int threads, taking_sink sink, void *ctx, char *err, size_t errlen) {
    if (threads <= 0) threads = examples_default_threads();
    stream st;
    memset(&st, 0, sizeof st);
    st.src = src;
    // A few chunks per worker in flight: enough to keep them busy while the sink drains in
    // order, and the bound on memory (≈ nring × the examples of 1 MiB of text).
    st.nring = 2 * threads + 2;
    st.ring = calloc((size_t)st.nring, sizeof *st.ring);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    if (!st.ring || !tid) {
        free(st.ring);
        free(tid);
        snprintf(err, errlen, "out of memory reading %s", src->path);
        return -1;
    }
    diag_state d = {src->path, 0, 0};
    chunk first_diags = {0};    // diagnostics of bedrock_open (none today; kept for safety)
    st.reading = &first_diags;
    bedrock_options opts;
    memset(&opts, 0, sizeof opts);
    opts.allow_extra_keys = src->allow_extra_keys;
    opts.diag = hold_diag;
    opts.user = &st;
    bedrock_stream *s = bedrock_open(src->path, &opts, err, errlen);
    for (int i = 0; i < first_diags.ndiag; i++) {
        print_diag(&d, first_diags.diags[i].line, first_diags.diags[i].col, first_diags.diags[i].sev,
                   first_diags.diags[i].msg);
        free(first_diags.diags[i].msg);
    }
    free(first_diags.diags);
    if (!s) {
        free(st.ring);
        free(tid);
        return -1;
    }
    int rc = 0, nthreads = 0;
    if (pthread_mutex_init(&st.lock, NULL) || pthread_cond_init(&st.work_cv, NULL) || pthread_cond_init(&st.done_cv, NULL)) {
        snprintf(err, errlen, "cannot create the tokenizing threads' lock");
        bedrock_close(s);
        free(st.ring);
        free(tid);
        return -1;
    }
    for (; nthreads < threads; nthreads++)
        if (pthread_create(&tid[nthreads], NULL, worker_main, &st) != 0) break;
    if (nthreads == 0) { snprintf(err, errlen, "cannot start a tokenizing thread"); rc = -1; }

    struct stat sb;
    double total_mb = strcmp(src->path, "-") != 0 && stat(src->path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
    progress pg;
    progress_start(&pg, "tokenize", "MB", total_mb, src->quiet);
    long count = 0, next_sink = 0;
    int got = 1, read_err = 0;
    while (!rc && (got == 1 || next_sink < st.submitted)) {
        // Read ahead while a ring slot is free; otherwise hand on the oldest chunk when encoded.
        if (got == 1 && st.submitted - next_sink < st.nring) {
            chunk *c = chunk_read(&st, s, &got);
            if (!c || c->oom) {
                chunk_free(c);
                snprintf(err, errlen, "out of memory reading %s", src->path);
                rc = -1;
                break;
            }
            if (got < 0) read_err = 1;
            pthread_mutex_lock(&st.lock);
            st.ring[st.submitted++ % st.nring] = c;
            pthread_cond_signal(&st.work_cv);
            pthread_mutex_unlock(&st.lock);
            continue;
        }
        chunk *c = st.ring[next_sink % st.nring];
        pthread_mutex_lock(&st.lock);
        while (!c->done) pthread_cond_wait(&st.done_cv, &st.lock);
        pthread_mutex_unlock(&st.lock);
        st.ring[next_sink++ % st.nring] = NULL;
        int nd = 0;
        for (int i = 0; i < c->nrec && !rc; i++) {
            flush_diags(&d, c, i, &nd);
            if (i == c->fail_at) {
                snprintf(err, errlen, "%s:%ld: error: %s", src->path, c->fail_line, c->fail_msg);
                rc = -1;
            } else if (sink(ctx, &c->ex[i]) != 0) {
                snprintf(err, errlen, "%s:%ld: stopped here: the example could not be kept", src->path, c->ex[i].line);
                rc = -1;
            } else {
                count++;
            }
        }
        if (!rc) flush_diags(&d, c, c->nrec, &nd);
        char extra[64];
        snprintf(extra, sizeof extra, "%ld records", count);
        progress_update(&pg, (double)c->bytes_end / 1e6, extra);
        chunk_free(c);
    }
    pthread_mutex_lock(&st.lock);
    st.quit = 1;
    pthread_cond_broadcast(&st.work_cv);
    pthread_mutex_unlock(&st.lock);
    for (int i = 0; i < nthreads; i++) pthread_join(tid[i], NULL);
    for (long q = next_sink; q < st.submitted; q++) chunk_free(st.ring[q % st.nring]);
    if (pg.last_draw > pg.start_time) progress_finish(&pg);

    if (!rc && read_err) { snprintf(err, errlen, "%s: %s", src->path, bedrock_error(s)); rc = -1; }
    const bedrock_stats *bs = bedrock_stream_stats(s);
    if (!rc && bs->invalid > 0) {
        snprintf(err, errlen, "%s: %ld invalid record%s (shown above%s); fix them before training "
                 "(`quarry validate %s` lists every one)", src->path, bs->invalid, bs->invalid == 1 ? "" : "s",
                 d.errors > 20 ? ", first 20" : "", src->path);
        rc = -1;
    }
    if (!rc && d.warnings > 20)
        fprintf(stderr, "%s: %ld warnings in all (the first 20 shown)\n", src->path, d.warnings);
    if (!rc && count == 0) { snprintf(err, errlen, "%s: no records", src->path); rc = -1; }
    bedrock_close(s);
    pthread_cond_destroy(&st.done_cv);
    pthread_cond_destroy(&st.work_cv);
    pthread_mutex_destroy(&st.lock);
    free(st.ring);
    free(tid);
    return rc;
}

typedef struct {
    int (*sink)(void *ctx, const example *e);
    void *ctx;
} lending_sink;

static int lend_example(void *ctx, example *e) {
    lending_sink *l = ctx;
    return l->sink(l->ctx, e);
}

int examples_stream(const examples_source *src, int threads, int (*sink)(void *ctx, const example *e), void *ctx,
                    char *err, size_t errlen) {
    lending_sink l = {sink, ctx};
    return stream_run(src, threads, lend_example, &l, err, errlen);
}

typedef struct {
    example *ex;
    int n, cap;
    int oom;
} example_array;

// examples_load's sink: takes each example's arrays.
static int append_example(void *ctx, example *e) {
    example_array *a = ctx;
    if (a->n == a->cap) {
        int ncap = a->cap ? 2 * a->cap : 1024;
        example *nx = realloc(a->ex, sizeof *nx * (size_t)ncap);
        if (!nx) { a->oom = 1; return -1; }
        a->ex = nx;
        a->cap = ncap;
    }
    a->ex[a->n++] = *e;
    e->ids = NULL;
    e->mask = NULL;
    return 0;
}

int examples_load(const examples_source *src, example **out, int *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    example_array a = {0};
    if (stream_run(src, src->threads, append_example, &a, err, errlen) != 0) {
        if (a.oom) snprintf(err, errlen, "out of memory reading %s", src->path);
        for (int i = 0; i < a.n; i++) { free(a.ex[i].ids); free(a.ex[i].mask); }
        free(a.ex);
        return -1;
    }
    *out = a.ex;
    *n = a.n;
    return 0;
}
