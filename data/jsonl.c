// data/jsonl.c — see jsonl.h.
#include "jsonl.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (1u << 20)   // bytes asked of read() at a time

struct jsonl_reader {
    int fd, own_fd;
    char *buf;
    size_t cap, start, end, scan;   // unread bytes are buf[start, end); buf[start, scan) has no '\n'
    size_t max_line;
    size_t skipped;                 // bytes of an oversized line already thrown away
    int skipping, eof, first, had_bom;
    long line;
    unsigned long long bytes;
    char err[256];
};

jsonl_reader *jsonl_open(const char *path, size_t max_line_bytes, char *err, size_t errlen) {
    jsonl_reader *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "out of memory"); return NULL; }
    if (!strcmp(path, "-")) r->fd = 0;
    else {
        r->fd = open(path, O_RDONLY);
        if (r->fd < 0) { snprintf(err, errlen, "cannot open: %s", strerror(errno)); free(r); return NULL; }
        r->own_fd = 1;
    }
    r->max_line = max_line_bytes ? max_line_bytes : 1;
    r->cap = READ_CHUNK + 1;
    r->buf = malloc(r->cap);
    if (!r->buf) { snprintf(err, errlen, "out of memory"); jsonl_close(r); return NULL; }
    r->first = 1;
    return r;
}

void jsonl_close(jsonl_reader *r) {
    if (!r) return;
    if (r->own_fd) close(r->fd);
    free(r->buf);
    free(r);
}

const char *jsonl_error(const jsonl_reader *r) { return r->err; }
int jsonl_had_bom(const jsonl_reader *r) { return r->had_bom; }
unsigned long long jsonl_bytes_read(const jsonl_reader *r) { return r->bytes; }

// Reads more bytes after buf[end], compacting or growing first. 1 = read some, 0 = EOF, -1 = error.
static int fill(jsonl_reader *r) {
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->scan -= r->start;
        r->start = 0;
    }
    if (r->cap - 1 - r->end < READ_CHUNK / 4) {
        // Grow only while a line may still fit: an oversized line is skipped, not kept.
        size_t ncap = r->cap * 2;
        char *nb = realloc(r->buf, ncap);
        if (!nb) { snprintf(r->err, sizeof r->err, "out of memory"); return -1; }
        r->buf = nb;
        r->cap = ncap;
    }
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - 1 - r->end);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { snprintf(r->err, sizeof r->err, "read error: %s", strerror(errno)); return -1; }
        if (n == 0) { r->eof = 1; return 0; }
        r->bytes += (unsigned long long)n;
        r->end += (size_t)n;
        return 1;
    }
}

static void emit(jsonl_reader *r, jsonl_line *out, size_t len_in_buf) {
    out->line = ++r->line;
    if (r->skipping || len_in_buf > r->max_line) {
        out->oversized = 1;
        out->len = r->skipped + len_in_buf;
        out->text = "";
        r->skipping = 0;
        r->skipped = 0;
        return;
    }
    char *t = r->buf + r->start;
    size_t n = len_in_buf;
    if (n && t[n - 1] == '\r') n--;
    t[n] = '\0';
    out->text = t;
    out->len = n;
    out->oversized = 0;
}

// "UTF-16 (LE)" etc. when the first bytes are a UTF-16/32 byte order mark or ASCII widened with NULs
// (Windows tools export JSONL as UTF-16); NULL otherwise. A UTF-8 JSONL file never holds a NUL byte.
static const char *wide_encoding(const unsigned char *b, size_t n) {
    if (n >= 4 && !memcmp(b, "\xFF\xFE\0\0", 4)) return "UTF-32 (LE)";
    if (n >= 4 && !memcmp(b, "\0\0\xFE\xFF", 4)) return "UTF-32 (BE)";
    if (n >= 2 && b[0] == 0xFF && b[1] == 0xFE) return "UTF-16 (LE)";
    if (n >= 2 && b[0] == 0xFE && b[1] == 0xFF) return "UTF-16 (BE)";
    if (n >= 4 && b[0] && !b[1] && !b[2] && !b[3]) return "UTF-32 (LE)";
    if (n >= 4 && !b[0] && !b[1] && !b[2] && b[3]) return "UTF-32 (BE)";
    if (n >= 2 && b[0] && !b[1]) return "UTF-16 (LE)";
    if (n >= 2 && !b[0] && b[1]) return "UTF-16 (BE)";
    return NULL;
}

int jsonl_next(jsonl_reader *r, jsonl_line *out) {
    for (;;) {
        if (r->first && (r->end - r->start >= 4 || r->eof)) {
            r->first = 0;
            const char *enc = wide_encoding((const unsigned char *)r->buf + r->start, r->end - r->start);
            if (enc) {
                snprintf(r->err, sizeof r->err, "the file looks like %s; save it as UTF-8 (e.g. `iconv -f %s -t UTF-8`)",
                         enc, !strncmp(enc, "UTF-32", 6) ? "UTF-32" : "UTF-16");
                r->first = 1;   // every later call fails the same way
                return -1;
            }
            if (r->end - r->start >= 3 && !memcmp(r->buf + r->start, "\xEF\xBB\xBF", 3)) {
                r->start += 3;
                if (r->scan < r->start) r->scan = r->start;
                r->had_bom = 1;
            }
        }
        if (!r->first) {
            char *nl = memchr(r->buf + r->scan, '\n', r->end - r->scan);
            if (nl) {
                size_t at = (size_t)(nl - r->buf);
                emit(r, out, at - r->start);
                r->start = r->scan = at + 1;
                return 1;
            }
            r->scan = r->end;
            if (r->eof) {
                if (r->end > r->start || r->skipping) {
                    emit(r, out, r->end - r->start);
                    r->start = r->scan = r->end;
                    return 1;
                }
                return 0;
            }
            if (r->end - r->start > r->max_line) {
                // Too long to be a record: keep counting its bytes, keep none of them.
                r->skipped += r->end - r->start;
                r->skipping = 1;
                r->start = r->scan = r->end = 0;
            }
        }
        if (r->eof) { r->first = 0; continue; }
        if (fill(r) < 0) return -1;
    }
}

// ---- parser ----

#define BLOCK_NODES 4096
#define MAX_DEPTH 128

typedef struct node_block {
    struct node_block *next;
    jv nodes[BLOCK_NODES];
} node_block;

struct jsonl_parser {
    node_block *first, *cur;
    int used;           // nodes used in cur
    long total;         // nodes used in this parse
    char *sbuf;         // unescaped strings
    size_t scap, sused;
    const char *text, *p, *end;
    const char *err_at;
    char err[200];
};

jsonl_parser *jsonl_parser_new(void) { return calloc(1, sizeof(jsonl_parser)); }

void jsonl_parser_free(jsonl_parser *p) {
    if (!p) return;
    for (node_block *b = p->first; b;) {
        node_block *n = b->next;
        free(b);
        b = n;
    }
    free(p->sbuf);
    free(p);
}

static int fail(jsonl_parser *p, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(jsonl_parser *p, const char *at, const char *fmt, ...) {
    if (p->err_at) return 0;
    p->err_at = at;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return 0;
}

static jv *new_node(jsonl_parser *p, jv_type t, const char *at) {
    if (p->total >= JSONL_MAX_VALUES) {
        fail(p, at, "more than %d JSON values in one record", JSONL_MAX_VALUES);
        return NULL;
    }
    if (!p->cur || p->used == BLOCK_NODES) {
        node_block *nb = p->cur ? p->cur->next : p->first;
        if (!nb) {
            nb = malloc(sizeof *nb);
            if (!nb) { fail(p, at, "out of memory"); return NULL; }
            nb->next = NULL;
            if (p->cur) p->cur->next = nb;
            else p->first = nb;
        }
        p->cur = nb;
        p->used = 0;
    }
    jv *n = &p->cur->nodes[p->used++];
    p->total++;
    memset(n, 0, sizeof *n);
    n->type = t;
    n->pos = (size_t)(at - p->text);
    return n;
}

static inline void skip_ws(jsonl_parser *p) {
    while (p->p < p->end && (*p->p == ' ' || *p->p == '\t' || *p->p == '\r' || *p->p == '\n')) p->p++;
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

// Length of the valid UTF-8 sequence starting at s (lead byte ≥ 0x80), or 0 when invalid.
static int utf8_seq(const unsigned char *s, const unsigned char *end) {
    unsigned c = s[0];
    int n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;    // no UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (end - s < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

static char *put_utf8(char *w, unsigned cp) {
    if (cp < 0x80) *w++ = (char)cp;
    else if (cp < 0x800) { *w++ = (char)(0xC0 | (cp >> 6)); *w++ = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

// 1 for bytes copied as they are inside a string: all but controls, '"' and '\\'. Bytes
// >= 0x80 are copied too and checked as UTF-8 afterwards, run by run.
static const unsigned char plain[256] = {
#define R16(v) v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v
    R16(0), R16(0),
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   // 0x20-0x2F: not '"'
    R16(1), R16(1),
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,   // 0x50-0x5F: not '\\'
    R16(1), R16(1),
    R16(1), R16(1), R16(1), R16(1), R16(1), R16(1), R16(1), R16(1),
#undef R16
};

#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t load64(const unsigned char *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

// Nonzero when one of the 8 bytes in x is a control, '"' or '\\' (exact as a boolean: the
// borrow of the subtraction only starts at such a byte).
static inline uint64_t special8(uint64_t x) {
    uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
    return ((x - ONES * 0x20) & ~x & HIGHS) | ((q - ONES) & ~q & HIGHS) | ((b - ONES) & ~b & HIGHS);
}

// Offset of the first byte of s[0..n) that is not valid UTF-8, or n.
static size_t utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n && !(load64(s + i) & HIGHS)) { i += 8; continue; }
        if (s[i] < 0x80) { i++; continue; }
        int k = utf8_seq(s + i, s + n);
        if (!k) return i;
        i += (size_t)k;
    }
    return n;
}

// p->p at the opening quote. Writes the unescaped string to sbuf.
static int parse_string(jsonl_parser *p, const char **out, size_t *outlen) {
    const unsigned char *s = (const unsigned char *)p->p + 1, *end = (const unsigned char *)p->end;
    char *w0 = p->sbuf + p->sused, *w = w0;
    for (;;) {
        const unsigned char *run = s;
        uint64_t hi = 0;
        while (s + 8 <= end) {
            uint64_t x = load64(s);
            if (special8(x)) break;
            hi |= x;
            s += 8;
        }
        while (s < end && plain[*s]) hi |= *s++;
        size_t n = (size_t)(s - run);
        if (hi & HIGHS) {
            size_t bad = utf8_check(run, n);
            if (bad < n) return fail(p, (const char *)run + bad, "invalid UTF-8 (byte 0x%02X); the file must be UTF-8", run[bad]);
        }
        memcpy(w, run, n);
        w += n;
        if (s >= end) return fail(p, (const char *)s, "unterminated string (a line holds one whole record)");
        unsigned c = *s;
        if (c == '"') { s++; break; }
        if (c == '\\') {
            if (s + 1 >= end) return fail(p, (const char *)s, "unterminated string (a line holds one whole record)");
            unsigned e = s[1];
            switch (e) {
            case '"': *w++ = '"'; s += 2; continue;
            case '\\': *w++ = '\\'; s += 2; continue;
            case '/': *w++ = '/'; s += 2; continue;
            case 'b': *w++ = '\b'; s += 2; continue;
            case 'f': *w++ = '\f'; s += 2; continue;
            case 'n': *w++ = '\n'; s += 2; continue;
            case 'r': *w++ = '\r'; s += 2; continue;
            case 't': *w++ = '\t'; s += 2; continue;
            case 'u': {
                unsigned cp;
                if (end - s < 6 || !hex4((const char *)s + 2, &cp))
                    return fail(p, (const char *)s, "\\u must be followed by 4 hex digits");
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return fail(p, (const char *)s, "lone UTF-16 low surrogate \\u%04X is not valid Unicode", cp);
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (end - s < 12 || s[6] != '\\' || s[7] != 'u' || !hex4((const char *)s + 8, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return fail(p, (const char *)s, "lone UTF-16 high surrogate \\u%04X is not valid Unicode", cp);
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    s += 6;
                }
                w = put_utf8(w, cp);
                s += 6;
                continue;
            }
            default:
                if (e >= 0x20 && e < 0x7F) return fail(p, (const char *)s, "invalid escape '\\%c' in a string", (char)e);
                return fail(p, (const char *)s, "invalid escape in a string");
            }
        }
        return fail(p, (const char *)s, "control character U+%04X in a string must be escaped", c);
    }
    *w++ = '\0';
    p->sused += (size_t)(w - w0);
    *out = w0;
    *outlen = (size_t)(w - w0) - 1;
    p->p = (const char *)s;
    return 1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static jv *parse_value(jsonl_parser *p, int depth);

static jv *parse_container(jsonl_parser *p, int depth, int is_obj) {
    jv *n = new_node(p, is_obj ? JV_OBJECT : JV_ARRAY, p->p);
    if (!n) return NULL;
    if (depth >= MAX_DEPTH) { fail(p, p->p, "nesting deeper than %d levels", MAX_DEPTH); return NULL; }
    char close = is_obj ? '}' : ']';
    p->p++;
    skip_ws(p);
    if (p->p < p->end && *p->p == close) { p->p++; return n; }
    jv **tail = &n->child;
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        if (is_obj) {
            if (p->p >= p->end || *p->p != '"') {
                fail(p, p->p, p->p < p->end && *p->p == '}' ? "trailing comma before '}'" : "expected a member name in double quotes");
                return NULL;
            }
            if (!parse_string(p, &key, &key_len)) return NULL;
            skip_ws(p);
            if (p->p >= p->end || *p->p != ':') { fail(p, p->p, "expected ':' after a member name"); return NULL; }
            p->p++;
            skip_ws(p);
        }
        if (!is_obj && p->p < p->end && *p->p == ']') { fail(p, p->p, "trailing comma before ']'"); return NULL; }
        jv *c = parse_value(p, depth + 1);
        if (!c) return NULL;
        c->key = key;
        c->key_len = key_len;
        *tail = c;
        tail = &c->next;
        n->count++;
        skip_ws(p);
        if (p->p < p->end && *p->p == ',') { p->p++; skip_ws(p); continue; }
        if (p->p < p->end && *p->p == close) { p->p++; return n; }
        fail(p, p->p, is_obj ? "expected ',' or '}' after an object member" : "expected ',' or ']' after an array element");
        return NULL;
    }
}

static jv *parse_value(jsonl_parser *p, int depth) {
    if (p->p >= p->end) { fail(p, p->p, "unexpected end of line: a value is missing"); return NULL; }
    const char *at = p->p;
    switch (*at) {
    case '{': return parse_container(p, depth, 1);
    case '[': return parse_container(p, depth, 0);
    case '"': {
        jv *n = new_node(p, JV_STRING, at);
        if (!n || !parse_string(p, &n->str, &n->len)) return NULL;
        return n;
    }
    case 't': case 'f': case 'n': {
        static const struct { const char *word; jv_type t; } lit[] = {{"true", JV_TRUE}, {"false", JV_FALSE}, {"null", JV_NULL}};
        for (int i = 0; i < 3; i++) {
            size_t l = strlen(lit[i].word);
            if ((size_t)(p->end - at) >= l && !memcmp(at, lit[i].word, l)) {
                p->p += l;
                return new_node(p, lit[i].t, at);
            }
        }
        break;
    }
    default:
        if (*at == '-' || is_digit(*at)) {
            const char *s = at;
            if (*s == '-') s++;
            if (s >= p->end || !is_digit(*s)) { fail(p, s, "a number needs digits after '-'"); return NULL; }
            if (*s == '0') {
                s++;
                if (s < p->end && is_digit(*s)) { fail(p, s, "numbers may not have leading zeros"); return NULL; }
            } else
                while (s < p->end && is_digit(*s)) s++;
            if (s < p->end && *s == '.') {
                s++;
                if (s >= p->end || !is_digit(*s)) { fail(p, s, "a number needs digits after '.'"); return NULL; }
                while (s < p->end && is_digit(*s)) s++;
            }
            if (s < p->end && (*s == 'e' || *s == 'E')) {
                s++;
                if (s < p->end && (*s == '+' || *s == '-')) s++;
                if (s >= p->end || !is_digit(*s)) { fail(p, s, "a number needs digits in its exponent"); return NULL; }
                while (s < p->end && is_digit(*s)) s++;
            }
            jv *n = new_node(p, JV_NUMBER, at);
            if (!n) return NULL;
            n->str = at;
            n->len = (size_t)(s - at);
            p->p = s;
            return n;
        }
    }
    unsigned char c = (unsigned char)*at;
    if (c >= 0x20 && c < 0x7F) fail(p, at, "unexpected character '%c'", c);
    else fail(p, at, "unexpected byte 0x%02X", c);
    return NULL;
}

int jsonl_column(const char *text, size_t pos) {
    int col = 1;
    for (size_t i = 0; i < pos && text[i]; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80) col++;
    return col;
}

const jv *jsonl_parse(jsonl_parser *p, const char *text, size_t len, int *col, char *err, size_t errlen) {
    p->cur = NULL;
    p->used = 0;
    p->total = 0;
    p->err_at = NULL;
    p->err[0] = '\0';
    if (len + 1 > p->scap) {
        size_t ncap = p->scap ? p->scap : 4096;
        while (ncap < len + 1) ncap *= 2;
        char *nb = realloc(p->sbuf, ncap);
        if (!nb) { snprintf(err, errlen, "out of memory"); if (col) *col = 1; return NULL; }
        p->sbuf = nb;
        p->scap = ncap;
    }
    p->sused = 0;
    p->text = text;
    p->p = text;
    p->end = text + len;
    skip_ws(p);
    jv *root = parse_value(p, 0);
    if (root) {
        skip_ws(p);
        if (p->p < p->end) {
            fail(p, p->p, "unexpected text after the JSON value (one record per line)");
            root = NULL;
        }
    }
    if (!root) {
        if (col) *col = jsonl_column(text, (size_t)(p->err_at - text));
        snprintf(err, errlen, "%s", p->err);
        return NULL;
    }
    return root;
}

const jv *jv_get(const jv *obj, const char *key) {
    if (!obj || obj->type != JV_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (const jv *c = obj->child; c; c = c->next)
        if (c->key_len == kl && !memcmp(c->key, key, kl)) return c;
    return NULL;
}

int jv_equal(const jv *a, const jv *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case JV_STRING:
    case JV_NUMBER: return a->len == b->len && !memcmp(a->str, b->str, a->len);
    case JV_ARRAY:
    case JV_OBJECT: {
        if (a->count != b->count) return 0;
        const jv *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next) {
            if (a->type == JV_OBJECT && (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len))) return 0;
            if (!jv_equal(x, y)) return 0;
        }
        return 1;
    }
    default: return 1;
    }
}

const char *jv_type_name(jv_type t) {
    switch (t) {
    case JV_NULL: return "null";
    case JV_FALSE:
    case JV_TRUE: return "a boolean";
    case JV_NUMBER: return "a number";
    case JV_STRING: return "a string";
    case JV_ARRAY: return "an array";
    case JV_OBJECT: return "an object";
    }
    return "?";
}
