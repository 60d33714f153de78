// data/token_store.c — see token_store.h.
#include "token_store.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MAGIC[8] = {'Q', 'T', 'O', 'K', 'S', '2', '\n', 0};
enum { VERSION = 2, HEADER_BYTES = 72 };

typedef struct {
    char magic[8];
    uint32_t version, id_bytes;
    uint64_t ndocs, ntokens, nruns;
    uint64_t ids_off, runs_off, index_off, file_size;
} header;
_Static_assert(sizeof(header) == HEADER_BYTES, "the header is 72 bytes on disk");
_Static_assert(sizeof(token_store_doc) == 32, "an index entry is 32 bytes on disk");

struct token_store {
    int refs;
    unsigned char *map;
    size_t size;
    const header *h;
    const unsigned char *ids;
    const uint32_t *runs;          // (nruns, 2)
    const token_store_doc *docs;   // (ndocs)
};

struct token_store_writer {
    char path[4200], tmp[4300];
    int private_file;
    int fd;
    FILE *out, *runs, *index;      // ids into the file; runs and index into unlinked side files
    int vocab, id_bytes;
    uint64_t ndocs, ntokens, nruns;
    int failed;
    char err[512];
};

static int fail(token_store_writer *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
    w->failed = 1;
    return -1;
}

// An unlinked scratch file beside the output (same filesystem, same privacy).
static FILE *side_file(const char *near) {
    char name[4400];
    snprintf(name, sizeof name, "%s.side.XXXXXX", near);
    int fd = mkstemp(name);
    if (fd < 0) return NULL;
    unlink(name);
    FILE *f = fdopen(fd, "w+");
    if (!f) close(fd);
    return f;
}

token_store_writer *token_store_writer_open(const char *path, int vocab_size, char *err, size_t errlen) {
    token_store_writer *w = calloc(1, sizeof *w);
    if (!w) { snprintf(err, errlen, "out of memory"); return NULL; }
    w->fd = -1;
    w->vocab = vocab_size;
    w->id_bytes = vocab_size > 0 && vocab_size <= 65536 ? 2 : 4;
    if (path) {
        snprintf(w->path, sizeof w->path, "%s", path);
        snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", path, (long)getpid());
        w->fd = open(w->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    } else {
        // $TMPDIR, else /var/tmp: a corpus's tokens belong on disk, and /tmp is often memory (tmpfs).
        const char *d = getenv("TMPDIR");
        if (!d || !*d) d = access("/var/tmp", W_OK | X_OK) == 0 ? "/var/tmp" : "/tmp";
        snprintf(w->tmp, sizeof w->tmp, "%s/quarry-tokens-XXXXXX", d);
        w->private_file = 1;
        w->fd = mkstemp(w->tmp);   // 0600
    }
    if (w->fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w);
        return NULL;
    }
    w->out = fdopen(w->fd, "w");
    w->runs = side_file(w->tmp);
    w->index = side_file(w->tmp);
    static const unsigned char zero[HEADER_BYTES];
    if (!w->out || !w->runs || !w->index || fwrite(zero, 1, sizeof zero, w->out) != sizeof zero) {
        snprintf(err, errlen, "cannot write %s: %s", w->tmp, strerror(errno));
        token_store_writer_abort(w);
        return NULL;
    }
    return w;
}

const char *token_store_writer_error(const token_store_writer *w) { return w->err; }

int token_store_writer_append(token_store_writer *w, const int32_t *ids, const uint8_t *mask, int len, long line,
                              int keep_head) {
    if (w->failed) return -1;
    if (len < 0) return fail(w, "line %ld: negative length %d", line, len);
    token_store_doc d = {w->ntokens, w->nruns, line, (uint32_t)len, 0};
    unsigned char buf[4096 * 4];
    for (int at = 0; at < len;) {
        int n = len - at < 4096 ? len - at : 4096;
        for (int k = 0; k < n; k++) {
            int32_t id = ids[at + k];
            if (id < 0 || (w->vocab > 0 && id >= w->vocab))
                return fail(w, "line %ld: token id %d outside the vocabulary of %d", line, id, w->vocab);
            if (w->id_bytes == 2) { uint16_t v = (uint16_t)id; memcpy(buf + 2 * k, &v, 2); }
            else memcpy(buf + 4 * k, &id, 4);
        }
        if (fwrite(buf, (size_t)w->id_bytes, (size_t)n, w->out) != (size_t)n)
            return fail(w, "cannot write %s: %s", w->tmp, strerror(errno));
        at += n;
    }
    uint32_t runs = 0;
    for (int t = 0; t < len;) {
        if (!mask[t]) { t++; continue; }
        uint32_t span[2] = {(uint32_t)t, 0};
        while (t < len && mask[t]) t++;
        span[1] = (uint32_t)t;
        if (fwrite(span, sizeof span, 1, w->runs) != 1) return fail(w, "cannot write a side file: %s", strerror(errno));
        runs++;
    }
    d.runs_keep = runs << 1 | (keep_head ? 1u : 0u);
    if (fwrite(&d, sizeof d, 1, w->index) != 1) return fail(w, "cannot write a side file: %s", strerror(errno));
    w->ndocs++;
    w->ntokens += (uint64_t)len;
    w->nruns += runs;
    return 0;
}

// Appends the whole of side file f to w->out.
static int copy_side(token_store_writer *w, FILE *f) {
    char buf[65536];
    size_t n;
    if (fflush(f) || fseeko(f, 0, SEEK_SET)) return -1;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (fwrite(buf, 1, n, w->out) != n) return -1;
    return ferror(f) ? -1 : 0;
}

static int pad_to_8(token_store_writer *w, uint64_t *at) {
    static const char zero[8];
    size_t pad = (size_t)((8 - *at % 8) % 8);
    if (pad && fwrite(zero, 1, pad, w->out) != pad) return -1;
    *at += pad;
    return 0;
}

static token_store *map_fd(int fd, const char *name, char *err, size_t errlen);

token_store *token_store_writer_commit(token_store_writer *w, char *err, size_t errlen) {
    if (w->failed) {
        snprintf(err, errlen, "%s", w->err);
        token_store_writer_abort(w);
        return NULL;
    }
    header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, MAGIC, sizeof MAGIC);
    h.version = VERSION;
    h.id_bytes = (uint32_t)w->id_bytes;
    h.ndocs = w->ndocs;
    h.ntokens = w->ntokens;
    h.nruns = w->nruns;
    h.ids_off = HEADER_BYTES;
    uint64_t at = HEADER_BYTES + w->ntokens * (uint64_t)w->id_bytes;
    int bad = pad_to_8(w, &at);
    h.runs_off = at;
    bad = bad || copy_side(w, w->runs);
    at += w->nruns * 8;
    h.index_off = at;
    bad = bad || copy_side(w, w->index);
    h.file_size = at + w->ndocs * sizeof(token_store_doc);
    bad = bad || fflush(w->out) || pwrite(w->fd, &h, sizeof h, 0) != (ssize_t)sizeof h || fsync(w->fd);
    if (!bad && !w->private_file) bad = rename(w->tmp, w->path) != 0;
    if (bad) {
        snprintf(err, errlen, "cannot write %s: %s", w->tmp, strerror(errno));
        token_store_writer_abort(w);
        return NULL;
    }
    token_store *s = map_fd(w->fd, w->private_file ? w->tmp : w->path, err, errlen);
    if (w->private_file) unlink(w->tmp);   // mapped (or failed): the name is no longer needed
    w->tmp[0] = 0;                         // nothing left for abort to remove
    token_store_writer_abort(w);
    return s;
}

void token_store_writer_abort(token_store_writer *w) {
    if (!w) return;
    if (w->out) fclose(w->out);   // closes w->fd
    else if (w->fd >= 0) close(w->fd);
    if (w->runs) fclose(w->runs);
    if (w->index) fclose(w->index);
    if (w->tmp[0]) unlink(w->tmp);
    free(w);
}

// Every bound a reader relies on, so that a damaged file is refused here and never read past.
static int check(const token_store *s, char *why, size_t n) {
    const header *h = s->h;
    if (s->size < HEADER_BYTES || memcmp(h->magic, MAGIC, sizeof MAGIC)) {
        snprintf(why, n, "not a token store");
        return -1;
    }
    if (h->version != VERSION) { snprintf(why, n, "version %u, not %d", h->version, VERSION); return -1; }
    if (h->id_bytes != 2 && h->id_bytes != 4) { snprintf(why, n, "id width %u", h->id_bytes); return -1; }
    if (h->file_size != s->size) {
        snprintf(why, n, "%zu bytes, the header says %llu", s->size, (unsigned long long)h->file_size);
        return -1;
    }
    uint64_t size = s->size;
    if (h->ids_off != HEADER_BYTES || h->ntokens > size / h->id_bytes || h->runs_off % 8 || h->index_off % 8 ||
        h->runs_off < h->ids_off + h->ntokens * h->id_bytes || h->nruns > size / 8 || h->runs_off > size ||
        h->index_off < h->runs_off + h->nruns * 8 || h->ndocs > size / sizeof(token_store_doc) ||
        h->index_off + h->ndocs * sizeof(token_store_doc) != size) {
        snprintf(why, n, "section bounds do not fit the file");
        return -1;
    }
    for (uint64_t i = 0; i < h->ndocs; i++) {
        const token_store_doc *d = &s->docs[i];
        uint64_t runs = d->runs_keep >> 1;
        if (d->len > h->ntokens || d->tok_off > h->ntokens - d->len || runs > h->nruns ||
            d->run_first > h->nruns - runs) {
            snprintf(why, n, "document %llu lies outside the file", (unsigned long long)i);
            return -1;
        }
        uint32_t prev = 0;
        for (uint64_t r = 0; r < runs; r++) {
            const uint32_t *sp = &s->runs[2 * (d->run_first + r)];
            if (sp[0] < prev || sp[1] <= sp[0] || sp[1] > d->len) {
                snprintf(why, n, "document %llu has a bad mask run", (unsigned long long)i);
                return -1;
            }
            prev = sp[1];
        }
    }
    return 0;
}

static token_store *map_fd(int fd, const char *name, char *err, size_t errlen) {
    struct stat st;
    if (fstat(fd, &st) != 0) { snprintf(err, errlen, "%s: %s", name, strerror(errno)); return NULL; }
    if ((size_t)st.st_size < HEADER_BYTES) {
        snprintf(err, errlen, "%s: too short for a token store", name);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) { snprintf(err, errlen, "%s: mmap: %s", name, strerror(errno)); return NULL; }
    token_store *s = calloc(1, sizeof *s);
    if (!s) { munmap(map, (size_t)st.st_size); snprintf(err, errlen, "out of memory"); return NULL; }
    s->refs = 1;
    s->map = map;
    s->size = (size_t)st.st_size;
    s->h = map;
    char why[160];
    if (s->size >= HEADER_BYTES && !memcmp(s->h->magic, MAGIC, sizeof MAGIC) && s->h->file_size == s->size &&
        s->h->index_off <= s->size && s->h->runs_off <= s->size) {
        s->ids = s->map + s->h->ids_off;
        s->runs = (const uint32_t *)(s->map + s->h->runs_off);
        s->docs = (const token_store_doc *)(s->map + s->h->index_off);
    }
    if (!s->docs || check(s, why, sizeof why)) {
        snprintf(err, errlen, "%s: %s", name, s->docs ? why : "not a token store, or cut short");
        token_store_release(s);
        return NULL;
    }
    return s;
}

token_store *token_store_open(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    token_store *s = map_fd(fd, path, err, errlen);
    close(fd);   // the mapping stays
    return s;
}

token_store *token_store_retain(token_store *s) {
    if (s) s->refs++;
    return s;
}

void token_store_release(token_store *s) {
    if (!s || --s->refs > 0) return;
    munmap(s->map, s->size);
    free(s);
}

long token_store_ndocs(const token_store *s) { return (long)s->h->ndocs; }
long long token_store_ntokens(const token_store *s) { return (long long)s->h->ntokens; }
int token_store_id_bytes(const token_store *s) { return (int)s->h->id_bytes; }
const token_store_doc *token_store_doc_at(const token_store *s, long i) { return &s->docs[i]; }

void token_store_read_ids(const token_store *s, long i, int from, int count, int32_t *out) {
    const token_store_doc *d = &s->docs[i];
    if (s->h->id_bytes == 2) {
        const uint16_t *p = (const uint16_t *)s->ids + d->tok_off + (uint64_t)from;
        for (int k = 0; k < count; k++) out[k] = p[k];
    } else {
        memcpy(out, (const int32_t *)s->ids + d->tok_off + (uint64_t)from, sizeof *out * (size_t)count);
    }
}

const uint32_t *token_store_runs(const token_store *s, long i, int *n) {
    const token_store_doc *d = &s->docs[i];
    *n = (int)(d->runs_keep >> 1);
    return s->runs + 2 * d->run_first;
}

int token_store_mask_count(const token_store *s, long i, int from, int to) {
    int n, count = 0;
    const uint32_t *r = token_store_runs(s, i, &n);
    for (int k = 0; k < n; k++) {
        int a = (int)r[2 * k] > from ? (int)r[2 * k] : from, b = (int)r[2 * k + 1] < to ? (int)r[2 * k + 1] : to;
        if (b > a) count += b - a;
    }
    return count;
}

void token_store_read_mask(const token_store *s, long i, int from, int count, uint8_t *out) {
    int n;
    const uint32_t *r = token_store_runs(s, i, &n);
    memset(out, 0, (size_t)count);
    for (int k = 0; k < n; k++) {
        int a = (int)r[2 * k] > from ? (int)r[2 * k] : from;
        int b = (int)r[2 * k + 1] < from + count ? (int)r[2 * k + 1] : from + count;
        for (int t = a; t < b; t++) out[t - from] = 1;
    }
}
