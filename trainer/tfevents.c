// trainer/tfevents.c — see tfevents.h.
#include "tfevents.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tfevents {
    int fd;
    char path[4400];
};

// Protobuf wire types used here (tensorboard/compat/proto/event.proto, summary.proto).
enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };
enum { EVENT_WALL_TIME = 1, EVENT_STEP = 2, EVENT_FILE_VERSION = 3, EVENT_SUMMARY = 5, EVENT_SESSION_LOG = 7 };
enum { SUMMARY_VALUE = 1, VALUE_TAG = 1, VALUE_SIMPLE_VALUE = 2, SESSION_LOG_STATUS = 1, SESSION_LOG_START = 1 };

// A growing byte buffer; oom latches so that callers check once at the end.
typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n) nc *= 2;
        unsigned char *np = realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_varint(bytes *b, uint64_t v) {
    unsigned char c[10];
    int n = 0;
    do {
        c[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) c[n] |= 0x80;
        n++;
    } while (v);
    put(b, c, (size_t)n);
}

static void put_key(bytes *b, int field, int wire) { put_varint(b, (uint64_t)(field << 3 | wire)); }

static void put_le(bytes *b, uint64_t v, int nbytes) {
    unsigned char c[8];
    for (int i = 0; i < nbytes; i++) c[i] = (unsigned char)(v >> (8 * i));
    put(b, c, (size_t)nbytes);
}

static void put_len_field(bytes *b, int field, const void *d, size_t n) {
    put_key(b, field, WIRE_LEN);
    put_varint(b, n);
    put(b, d, n);
}

static void put_double(bytes *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_key(b, field, WIRE_FIXED64);
    put_le(b, u, 8);
}

static void put_float(bytes *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    put_key(b, field, WIRE_FIXED32);
    put_le(b, u, 4);
}

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;   // reflected Castagnoli
        crc_table[i] = c;
    }
}

unsigned tfevents_crc32c(const void *data, size_t n) {
    if (!crc_table[1]) crc_init();   // idempotent: racing threads write the same values
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

// TFRecord masks its CRCs so that a CRC of data holding CRCs stays well distributed.
unsigned tfevents_masked_crc(const void *data, size_t n) {
    uint32_t c = tfevents_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static int write_all(int fd, const void *d, size_t n) {
    const char *p = d;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

// Frames event (a serialized Event) as one TFRecord and writes it with one write(2).
static int write_record(tfevents *t, const bytes *event) {
    if (event->oom) return -1;
    bytes rec = {0};
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)event->len >> (8 * i));
    put(&rec, len, 8);
    put_le(&rec, tfevents_masked_crc(len, 8), 4);
    put(&rec, event->p, event->len);
    put_le(&rec, tfevents_masked_crc(event->p, event->len), 4);
    int rc = rec.oom || write_all(t->fd, rec.p, rec.len) ? -1 : 0;
    free(rec.p);
    return rc;
}

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void event_header(bytes *b, long long step) {
    put_double(b, EVENT_WALL_TIME, wall_time());
    put_key(b, EVENT_STEP, WIRE_VARINT);
    put_varint(b, (uint64_t)step);
}

tfevents *tfevents_open(const char *dir, char *err, size_t errlen) {
    tfevents *t = calloc(1, sizeof *t);
    if (!t) { snprintf(err, errlen, "out of memory"); return NULL; }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "localhost");
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    // TensorBoard orders a directory's files by name: a fixed-width time keeps them in time order.
    long long now = (long long)time(NULL);
    for (int k = 0; k < 100; k++) {
        if (k == 0) snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%010lld.%s.%d", dir, now, host, (int)getpid());
        else snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%010lld.%s.%d.%d", dir, now, host, (int)getpid(), k);
        t->fd = open(t->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (t->fd >= 0 || errno != EEXIST) break;
    }
    if (t->fd < 0) {
        snprintf(err, errlen, "%s: %s", t->path, strerror(errno));
        free(t);
        return NULL;
    }
    bytes b = {0};
    event_header(&b, 0);
    static const char version[] = "brain.Event:2";
    put_len_field(&b, EVENT_FILE_VERSION, version, sizeof version - 1);
    int rc = write_record(t, &b);
    free(b.p);
    if (rc) {
        snprintf(err, errlen, "%s: %s", t->path, b.oom ? "out of memory" : strerror(errno));
        tfevents_close(t);
        return NULL;
    }
    return t;
}

int tfevents_write_scalars(tfevents *t, long long step, const tfevents_scalar *v, int n) {
    bytes ev = {0}, summary = {0}, value = {0};
    event_header(&ev, step);
    for (int i = 0; i < n; i++) {
        value.len = 0;
        put_len_field(&value, VALUE_TAG, v[i].tag, strlen(v[i].tag));
        put_float(&value, VALUE_SIMPLE_VALUE, (float)v[i].value);
        if (value.oom) break;
        put_len_field(&summary, SUMMARY_VALUE, value.p, value.len);
    }
    if (!value.oom && !summary.oom) put_len_field(&ev, EVENT_SUMMARY, summary.p, summary.len);
    if (value.oom || summary.oom) ev.oom = 1;
    int rc = write_record(t, &ev);
    free(ev.p);
    free(summary.p);
    free(value.p);
    return rc;
}

int tfevents_write_restart(tfevents *t, long long step) {
    bytes ev = {0}, log = {0};
    event_header(&ev, step);
    put_key(&log, SESSION_LOG_STATUS, WIRE_VARINT);
    put_varint(&log, SESSION_LOG_START);
    if (log.oom) ev.oom = 1;
    else put_len_field(&ev, EVENT_SESSION_LOG, log.p, log.len);
    int rc = write_record(t, &ev);
    free(ev.p);
    free(log.p);
    return rc;
}

const char *tfevents_path(const tfevents *t) { return t->path; }

void tfevents_close(tfevents *t) {
    if (!t) return;
    if (t->fd >= 0) close(t->fd);
    free(t);
}
