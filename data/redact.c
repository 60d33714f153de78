// data/redact.c — see redact.h.
#include "redact.h"
#include "fileio.h"
#include "strbuf.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *redact_placeholder_prefix(scan_kind k) {
    static const char *p[SCAN_NKINDS] = {"[AWS_ACCESS_KEY_ID_", "[AWS_SECRET_KEY_", "[PRIVATE_KEY_", "[BEARER_TOKEN_",
                                         "[JWT_", "[EMAIL_", "[PHONE_", "[CARD_NUMBER_", "[SSN_", "[IBAN_"};
    return (unsigned)k < SCAN_NKINDS ? p[k] : "[REDACTED_";
}

// Value → placeholder number: open addressing over (kind, bytes), grown at half full.
typedef struct {
    char *value;
    size_t len;
    scan_kind kind;
    long number;
} slot;

typedef struct {
    slot *slots;
    size_t cap, used;
    redact_stats *st;
    int oom;
} value_map;

static uint64_t hash_value(scan_kind k, const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)k;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static slot *map_find(slot *slots, size_t cap, scan_kind k, const char *s, size_t n) {
    for (size_t i = hash_value(k, s, n) & (cap - 1);; i = (i + 1) & (cap - 1)) {
        slot *e = &slots[i];
        if (!e->value || (e->kind == k && e->len == n && !memcmp(e->value, s, n))) return e;
    }
}

// The placeholder number of a value (a new one on its first appearance); -1 when out of memory.
static long map_number(value_map *m, scan_kind k, const char *s, size_t n) {
    if (2 * (m->used + 1) > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        slot *ns = calloc(cap, sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].value) *map_find(ns, cap, m->slots[i].kind, m->slots[i].value, m->slots[i].len) = m->slots[i];
        free(m->slots);
        m->slots = ns;
        m->cap = cap;
    }
    slot *e = map_find(m->slots, m->cap, k, s, n);
    if (!e->value) {
        e->value = malloc(n ? n : 1);
        if (!e->value) return -1;
        memcpy(e->value, s, n);
        e->len = n;
        e->kind = k;
        e->number = ++m->st->distinct[k];
        m->used++;
    }
    m->st->replaced[k]++;
    return e->number;
}

static void map_free(value_map *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->slots[i].value);
    free(m->slots);
}

typedef struct {
    value_map *map;
    const char *text;
    strbuf out;      // the text with the findings so far replaced
    size_t done;     // bytes of text already copied or replaced
    size_t hits;
} replacer;

static void on_hit(void *user, const scan_hit *h) {
    replacer *r = user;
    long num = map_number(r->map, h->kind, r->text + h->offset, h->len);
    if (num < 0) { r->map->oom = 1; return; }
    strbuf_put(&r->out, r->text + r->done, h->offset - r->done);
    strbuf_printf(&r->out, "%s%ld]", redact_placeholder_prefix(h->kind), num);
    r->done = h->offset + h->len;
    r->hits++;
}

// The text with its findings replaced (malloc'ed), or NULL when it has none (or out of memory:
// m->oom).
static char *redact_text(value_map *m, const char *text, size_t len) {
    replacer r = {m, text, {0}, 0, 0};
    scan_text(text, len, on_hit, &r);
    if (!r.hits || m->oom) { free(strbuf_take(&r.out)); return NULL; }
    strbuf_put(&r.out, text + r.done, len - r.done);
    char *s = strbuf_take(&r.out);
    if (!s) m->oom = 1;
    return s;
}

// Redacts every string value under node; returns how many were changed.
static long redact_tree(value_map *m, cJSON *node) {
    long n = 0;
    for (cJSON *c = node; c && !m->oom; c = c->next) {
        if (cJSON_IsString(c) && c->valuestring) {
            char *s = redact_text(m, c->valuestring, strlen(c->valuestring));
            if (s) {
                if (!cJSON_SetValuestring(c, s)) m->oom = 1;
                n++;
                free(s);
            }
        } else if (cJSON_IsArray(c) || cJSON_IsObject(c))
            n += redact_tree(m, c->child);
    }
    return n;
}

static int same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

int redact_file(const char *in, const char *out, int force, redact_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    struct stat sin, sout;
    if (stat(in, &sin) != 0) { snprintf(err, errlen, "%s: %s", in, strerror(errno)); return -1; }
    if (stat(out, &sout) == 0) {
        if (same_file(&sin, &sout)) {
            snprintf(err, errlen, "%s is the input file itself; refusing to overwrite it (give a new file name)", out);
            return -1;
        }
        if (S_ISDIR(sout.st_mode)) { snprintf(err, errlen, "%s is a directory; give a file name", out); return -1; }
        if (!force) { snprintf(err, errlen, "%s exists; refusing to overwrite it (choose a new name, or --force)", out); return -1; }
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "%s: %s", out, strerror(errno));
        return -1;
    }
    FILE *f = fopen(in, "rb");
    if (!f) { snprintf(err, errlen, "%s: %s", in, strerror(errno)); return -1; }
    value_map m = {NULL, 0, 0, st, 0};
    strbuf ob = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        st->lines++;
        // The JSON text: without its line end, and on the first line without a BOM.
        size_t start = 0, end = (size_t)n;
        if (end && line[end - 1] == '\n') end--;
        if (end && line[end - 1] == '\r') end--;
        if (st->lines == 1 && end >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) start = 3;
        char saved = line[end];
        line[end] = 0;
        char *json = NULL;
        // cJSON strings end at a NUL: a \u0000 would be lost, so such a line is redacted raw.
        cJSON *root = strstr(line + start, "\\u0000") ? NULL : cJSON_ParseWithOpts(line + start, NULL, 1);
        if (root) {
            if (redact_tree(&m, root) > 0 && !m.oom && !(json = cJSON_PrintUnformatted(root))) m.oom = 1;
            cJSON_Delete(root);
        } else if ((json = redact_text(&m, line + start, end - start)))
            st->raw_lines++;
        line[end] = saved;
        if (m.oom) { free(json); rc = -1; snprintf(err, errlen, "out of memory"); break; }
        if (!json) { strbuf_put(&ob, line, (size_t)n); continue; }
        st->lines_changed++;
        strbuf_put(&ob, line, start);
        strbuf_puts(&ob, json);
        strbuf_put(&ob, line + end, (size_t)n - end);
        free(json);
    }
    if (!rc && ferror(f)) { snprintf(err, errlen, "%s: read: %s", in, strerror(errno)); rc = -1; }
    free(line);
    fclose(f);
    map_free(&m);
    char *text = strbuf_take(&ob);
    if (!rc && !text) { snprintf(err, errlen, "out of memory"); rc = -1; }
    if (!rc) rc = fileio_write_atomic_mode(out, text, ob.len, 0600, err, errlen);
    free(text);
    return rc;
}
