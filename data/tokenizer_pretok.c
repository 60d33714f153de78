// data/tokenizer_pretok.c — normalizers and pre-tokenizers as HF `tokenizers` runs them, on
// pieces of a work buffer that keep, per byte, the range of the original input it came from
// (HF's NormalizedString alignments), so that token offsets point into the caller's text.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer_internal.h"

const uint16_t tk_byte_to_cp[256] = {
256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271,
272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287,
288, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 289,
290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305,
306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 323, 174, 175,
176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255
};

int tk_cp_to_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp >= 256 && cp < 256 + 68) {
        // The 68 remapped bytes, in increasing byte order: 0..32, 127..160, 173.
        uint32_t k = cp - 256;
        if (k <= 32) return (int)k;
        if (k <= 32 + 34) return (int)(127 + (k - 33));
        return 173;
    }
    return -1;
}

int tk_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (!n || (size_t)n > len || c > 0xF4) return 0;
    uint32_t v = c & (0x3F >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < minv[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

int tk_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int tk_is_whitespace(uint32_t cp) {
    return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

int tk_is_word(uint32_t cp) {
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp == 0x200C || cp == 0x200D) return 1;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

static pthread_once_t onig_once = PTHREAD_ONCE_INIT;
static int onig_init_rc;
static void onig_init_once(void) {
    OnigEncoding enc[1] = {ONIG_ENCODING_UTF8};
    onig_init_rc = onig_initialize(enc, 1);
}

int tk_onig_init(char *err, size_t errlen) {
    if (pthread_once(&onig_once, onig_init_once) != 0 || onig_init_rc != ONIG_NORMAL) {
        snprintf(err, errlen, "cannot initialize the Oniguruma regex library");
        return -1;
    }
    return 0;
}

int work_reserve(tk_work *w, size_t extra) {
    if (w->len + extra <= w->cap) return 0;
    size_t ncap = w->cap ? w->cap : 4096;
    while (ncap < w->len + extra) ncap *= 2;
    char *nb = realloc(w->buf, ncap);
    if (!nb) return -1;
    w->buf = nb;
    int32_t *na = realloc(w->al, 2 * ncap * sizeof *na);
    if (!na) return -1;
    w->al = na;
    w->cap = ncap;
    return 0;
}

int work_push(tk_work *w, piece pc) {
    if (w->nq == w->qcap) {
        int ncap = w->qcap ? w->qcap * 2 : 64;
        piece *nq = realloc(w->q, (size_t)ncap * sizeof *nq);
        if (!nq) return -1;
        w->q = nq;
        w->qcap = ncap;
    }
    w->q[w->nq++] = pc;
    return 0;
}

void work_swap(tk_work *w) {
    piece *t = w->p;
    int tc = w->pcap;
    w->p = w->q;
    w->np = w->nq;
    w->pcap = w->qcap;
    w->q = t;
    w->qcap = tc;
    w->nq = 0;
}

// Appends bytes with one alignment for all of them; returns the offset they start at.
static inline void put_bytes(tk_work *w, const char *s, size_t n, int32_t a0, int32_t a1) {
    memcpy(w->buf + w->len, s, n);
    for (size_t i = 0; i < n; i++) {
        w->al[2 * (w->len + i)] = a0;
        w->al[2 * (w->len + i) + 1] = a1;
    }
    w->len += n;
}

// Copies bytes [off, off+n) of the buffer (with their alignment) to its end.
static inline void copy_bytes(tk_work *w, size_t off, size_t n) {
    memmove(w->buf + w->len, w->buf + off, n);
    memmove(w->al + 2 * w->len, w->al + 2 * off, 2 * n * sizeof *w->al);
    w->len += n;
}

int pattern_compile(pattern *p, const char *string, const char *regex, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    if (string) {
        p->kind = PAT_STRING;
        p->slen = strlen(string);
        p->str = strdup(string);
        if (!p->str) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    if (tk_onig_init(err, errlen)) return -1;
    p->kind = PAT_REGEX;
    OnigErrorInfo einfo;
    const UChar *pat = (const UChar *)regex;
    int r = onig_new(&p->re, pat, pat + strlen(regex), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                     ONIG_SYNTAX_DEFAULT, &einfo);
    if (r != ONIG_NORMAL) {
        UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
        onig_error_code_to_str(msg, r, &einfo);
        snprintf(err, errlen, "regex /%s/ does not compile: %s", regex, (const char *)msg);
        p->re = NULL;
        return -1;
    }
    return 0;
}

void pattern_free(pattern *p) {
    free(p->str);
    if (p->re) onig_free(p->re);
    memset(p, 0, sizeof *p);
}

static const char *find_bytes(const char *h, size_t hl, const char *n, size_t nl) {
    while (hl >= nl) {
        const char *c = memchr(h, n[0], hl - nl + 1);
        if (!c) return NULL;
        if (memcmp(c, n, nl) == 0) return c;
        hl -= (size_t)(c - h) + 1;
        h = c + 1;
    }
    return NULL;
}

static int ranges_push(int **r, int *n, int *cap, int a, int b, int m) {
    if (3 * (*n + 1) > *cap) {
        int ncap = *cap ? *cap * 2 : 96;
        while (ncap < 3 * (*n + 1)) ncap *= 2;
        int *nr = realloc(*r, (size_t)ncap * sizeof *nr);
        if (!nr) return -1;
        *r = nr;
        *cap = ncap;
    }
    (*r)[3 * *n] = a;
    (*r)[3 * *n + 1] = b;
    (*r)[3 * *n + 2] = m;
    (*n)++;
    return 0;
}

int pattern_find(const pattern *p, OnigRegion *reg, const char *s, size_t len, int **ranges, int *n,
                 int *cap) {
    *n = 0;
    if (len == 0) return ranges_push(ranges, n, cap, 0, 0, 0);
    size_t prev = 0;
    if (p->kind == PAT_STRING) {
        if (p->slen == 0) return ranges_push(ranges, n, cap, 0, (int)len, 0);
        size_t i = 0;
        while (i + p->slen <= len) {
            const char *hit = find_bytes(s + i, len - i, p->str, p->slen);
            if (!hit) break;
            size_t st = (size_t)(hit - s);
            if (st != prev && ranges_push(ranges, n, cap, (int)prev, (int)st, 0)) return -1;
            if (ranges_push(ranges, n, cap, (int)st, (int)(st + p->slen), 1)) return -1;
            prev = i = st + p->slen;
        }
    } else {
        // As the onig crate's find_iter: an empty match right after the previous match is
        // skipped by advancing one character.
        const UChar *str = (const UChar *)s, *end = str + len;
        size_t pos = 0;
        long last_match_end = -1;
        while (pos <= len) {
            int r = onig_search(p->re, str, end, str + pos, end, reg, ONIG_OPTION_NONE);
            if (r == ONIG_MISMATCH) break;
            if (r < 0) return -1;
            size_t st = (size_t)reg->beg[0], en = (size_t)reg->end[0];
            if (st == en && last_match_end == (long)en) {
                uint32_t cp;
                int cl = pos < len ? tk_utf8_decode(str + pos, len - pos, &cp) : 1;
                pos += cl > 0 ? (size_t)cl : 1;
                continue;
            }
            pos = en;
            last_match_end = (long)en;
            if (prev != st && ranges_push(ranges, n, cap, (int)prev, (int)st, 0)) return -1;
            if (ranges_push(ranges, n, cap, (int)st, (int)en, 1)) return -1;
            prev = en;
        }
    }
    if (prev != len && ranges_push(ranges, n, cap, (int)prev, (int)len, 0)) return -1;
    return 0;
}

static int utf8_char_len(const char *s, size_t len) {
    uint32_t cp;
    int n = tk_utf8_decode((const unsigned char *)s, len, &cp);
    return n > 0 ? n : 1;
}

static int prepend_text(tk_work *w, piece *pc, const char *t, size_t tl) {
    if (pc->len == 0) return 0;
    if (work_reserve(w, pc->len + tl)) return -1;
    int32_t a0 = w->al[2 * pc->off], a1 = w->al[2 * pc->off + 1];
    size_t start = w->len;
    put_bytes(w, t, tl, a0, a1);
    copy_bytes(w, pc->off, pc->len);
    pc->off = start;
    pc->len += tl;
    return 0;
}

// HF's NormalizedString::replace: each match becomes `content`, every byte of which takes the
// alignment of the match's last byte.
static int replace_in(tk_work *w, piece *pc, const pattern *pat, const char *content, size_t clen) {
    int *r = NULL, nr = 0, rcap = 0;
    if (pattern_find(pat, w->region, w->buf + pc->off, pc->len, &r, &nr, &rcap)) {
        free(r);
        return -1;
    }
    int any = 0;
    for (int i = 0; i < nr; i++) any |= r[3 * i + 2];
    if (!any) {
        free(r);
        return 0;
    }
    size_t need = 0;
    for (int i = 0; i < nr; i++) need += r[3 * i + 2] ? clen : (size_t)(r[3 * i + 1] - r[3 * i]);
    if (work_reserve(w, need)) {
        free(r);
        return -1;
    }
    size_t start = w->len;
    for (int i = 0; i < nr; i++) {
        size_t a = pc->off + (size_t)r[3 * i], b = pc->off + (size_t)r[3 * i + 1];
        if (!r[3 * i + 2]) {
            copy_bytes(w, a, b - a);
        } else {
            int32_t a0, a1;
            if (b > pc->off) {
                a0 = w->al[2 * (b - 1)];
                a1 = w->al[2 * (b - 1) + 1];
            } else {
                a0 = a1 = pc->len ? w->al[2 * pc->off] : 0;
            }
            put_bytes(w, content, clen, a0, a1);
        }
    }
    free(r);
    pc->off = start;
    pc->len = w->len - start;
    return 0;
}

typedef struct {
    int32_t cp;
    int ccc;
    int change;   // as unicode-normalization-alignments: 0 replaces an input char, +1 is inserted, -n also eats n
} nfc_item;

static int ccc_of(int32_t cp) { return cp < 0x300 ? 0 : utf8proc_get_property(cp)->combining_class; }

static int32_t compose_pair(int32_t a, int32_t b) {
    utf8proc_int32_t buf[2] = {a, b};
    utf8proc_ssize_t r = utf8proc_normalize_utf32(buf, 2, UTF8PROC_COMPOSE);
    return r == 1 ? buf[0] : -1;
}

// Stable sort of the pending non-starters d[run+1 .. n) by combining class (insertion sort: the
// runs are short).
static void sort_nonstarters(nfc_item *d, size_t run, int n) {
    for (int x = (int)run + 1; x < n; x++) {
        nfc_item t = d[x];
        int y = x - 1;
        while (y >= (int)run && d[y].ccc > t.ccc) {
            d[y + 1] = d[y];
            y--;
        }
        d[y + 1] = t;
    }
}

static int items_push(nfc_item **v, int *n, int *cap, nfc_item it) {
    if (*n == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        nfc_item *nv = realloc(*v, (size_t)ncap * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = it;
    return 0;
}

// NFC with HF's alignment bookkeeping (NormalizedString::nfc over the
// unicode-normalization-alignments crate): canonical decomposition (first char of each
// decomposition replaces its source, the rest are insertions), stable canonical ordering,
// then the crate's recomposition, where a composition merges the changes (a + b - 1).
static int nfc_piece(tk_work *w, piece *pc) {
    size_t i;
    for (i = 0; i < pc->len; i++)
        if ((unsigned char)w->buf[pc->off + i] >= 0x80) break;
    if (i == pc->len) return 0;
    utf8proc_uint8_t *all = NULL;
    utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)w->buf + pc->off, (utf8proc_ssize_t)pc->len,
                                       &all, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (rl < 0) return -1;
    int same = (size_t)rl == pc->len && memcmp(all, w->buf + pc->off, pc->len) == 0;
    free(all);
    if (same) return 0;
    nfc_item *d = NULL, *o = NULL;
    int nd = 0, dcap = 0, no = 0, ocap = 0, rc = -1;
    size_t run = 0;   // start of the pending run of non-starters in d
    for (size_t p = 0; p < pc->len;) {
        uint32_t cp;
        int cl = tk_utf8_decode((const unsigned char *)w->buf + pc->off + p, pc->len - p, &cp);
        if (cl <= 0) goto out;
        utf8proc_int32_t dec[32];
        int lbc = 0;
        utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)cp, dec, 32, UTF8PROC_DECOMPOSE, &lbc);
        if (k < 0 || k > 32) goto out;
        for (utf8proc_ssize_t j = 0; j < k; j++) {
            nfc_item it = {dec[j], ccc_of(dec[j]), j == 0 ? 0 : 1};
            if (it.ccc == 0) {
                sort_nonstarters(d, run, nd);
                run = (size_t)nd + 1;
            }
            if (items_push(&d, &nd, &dcap, it)) goto out;
        }
        p += (size_t)cl;
    }
    sort_nonstarters(d, run, nd);
    // Recomposition, as the crate's Recompositions iterator.
    {
        nfc_item comp = {0, 0, 0}, *buf = NULL;
        int have = 0, last_ccc = -1, nb = 0, bcap = 0;
        for (int x = 0; x < nd; x++) {
            nfc_item ch = d[x];
            if (!have) {
                if (ch.ccc != 0) {
                    if (items_push(&o, &no, &ocap, ch)) goto out2;
                    continue;
                }
                comp = ch;
                have = 1;
                continue;
            }
            if (last_ccc < 0) {
                int32_t r = compose_pair(comp.cp, ch.cp);
                if (r >= 0) {
                    comp.cp = r;
                    comp.change = comp.change + ch.change - 1;
                    continue;
                }
                if (ch.ccc == 0) {
                    if (items_push(&o, &no, &ocap, comp)) goto out2;
                    comp = ch;
                    continue;
                }
                if (items_push(&buf, &nb, &bcap, ch)) goto out2;
                last_ccc = ch.ccc;
            } else {
                if (last_ccc >= ch.ccc) {
                    if (ch.ccc == 0) {
                        if (items_push(&o, &no, &ocap, comp)) goto out2;
                        for (int y = 0; y < nb; y++)
                            if (items_push(&o, &no, &ocap, buf[y])) goto out2;
                        nb = 0;
                        comp = ch;
                        last_ccc = -1;
                        continue;
                    }
                    if (items_push(&buf, &nb, &bcap, ch)) goto out2;
                    last_ccc = ch.ccc;
                    continue;
                }
                int32_t r = compose_pair(comp.cp, ch.cp);
                if (r >= 0) {
                    comp.cp = r;
                    comp.change = comp.change + ch.change - 1;
                    continue;
                }
                if (items_push(&buf, &nb, &bcap, ch)) goto out2;
                last_ccc = ch.ccc;
            }
        }
        if (have && items_push(&o, &no, &ocap, comp)) goto out2;
        for (int y = 0; y < nb; y++)
            if (items_push(&o, &no, &ocap, buf[y])) goto out2;
        free(buf);
        goto composed;
    out2:
        free(buf);
        goto out;
    }
composed:
    // HF's transform: walk the old text; a replacing char takes the alignment of the old char
    // it replaces, an inserted one that of the byte before.
    if (work_reserve(w, 4 * (size_t)no + 4)) goto out;
    {
        size_t start = w->len, off = 0;
        for (int x = 0; x < no; x++) {
            int32_t a0, a1;
            if (o[x].change > 0) {
                if (off < 1) a0 = a1 = w->al[2 * pc->off];
                else {
                    a0 = w->al[2 * (pc->off + off - 1)];
                    a1 = w->al[2 * (pc->off + off - 1) + 1];
                }
            } else {
                size_t idx = off < pc->len ? off : pc->len - 1;
                a0 = w->al[2 * (pc->off + idx)];
                a1 = w->al[2 * (pc->off + idx) + 1];
                int eat = 1 - o[x].change;
                while (eat-- > 0 && off < pc->len) off += (size_t)utf8_char_len(w->buf + pc->off + off, pc->len - off);
            }
            char tmp[4];
            int n = tk_utf8_encode((uint32_t)o[x].cp, tmp);
            put_bytes(w, tmp, (size_t)n, a0, a1);
        }
        pc->off = start;
        pc->len = w->len - start;
    }
    rc = 0;
out:
    free(d);
    free(o);
    return rc;
}

int norm_apply(const norm_step *s, tk_work *w, piece *pc) {
    switch (s->kind) {
    case NORM_NFC: return nfc_piece(w, pc);
    case NORM_PREPEND: return prepend_text(w, pc, s->text, s->tlen);
    case NORM_REPLACE: return replace_in(w, pc, &s->pat, s->text, s->tlen);
    }
    return -1;
}

// Splits pc by ranges (start, end, is_match) under behavior, pushing non-empty pieces onto q.
static int split_by(tk_work *w, const piece *pc, int *r, int nr, split_behavior b, int invert) {
    if (invert)
        for (int i = 0; i < nr; i++) r[3 * i + 2] = !r[3 * i + 2];
    // Fold into (start, end, remove) as NormalizedString::split does.
    int n = 0, prev_match = 0;
    if (b == SPLIT_MERGED_NEXT) {
        // Right to left, then reversed.
        int *o = malloc((size_t)(3 * nr + 3) * sizeof *o);
        if (!o) return -1;
        for (int i = nr - 1; i >= 0; i--) {
            int m = r[3 * i + 2];
            if (m && !prev_match && n > 0) {
                o[3 * (n - 1)] = r[3 * i];
            } else {
                o[3 * n] = r[3 * i];
                o[3 * n + 1] = r[3 * i + 1];
                o[3 * n + 2] = 0;
                n++;
            }
            prev_match = m;
        }
        for (int i = 0; i < n / 2; i++)
            for (int k = 0; k < 3; k++) {
                int t = o[3 * i + k];
                o[3 * i + k] = o[3 * (n - 1 - i) + k];
                o[3 * (n - 1 - i) + k] = t;
            }
        memcpy(r, o, (size_t)(3 * n) * sizeof *r);
        free(o);
    } else {
        for (int i = 0; i < nr; i++) {
            int a = r[3 * i], e = r[3 * i + 1], m = r[3 * i + 2];
            int merge = 0, remove = 0;
            switch (b) {
            case SPLIT_ISOLATED: break;
            case SPLIT_REMOVED: remove = m; break;
            case SPLIT_CONTIGUOUS: merge = (m == prev_match) && n > 0; break;
            case SPLIT_MERGED_PREV: merge = m && !prev_match && n > 0; break;
            case SPLIT_MERGED_NEXT: break;
            }
            if (merge) {
                r[3 * (n - 1) + 1] = e;
            } else {
                r[3 * n] = a;
                r[3 * n + 1] = e;
                r[3 * n + 2] = remove;
                n++;
            }
            prev_match = m;
        }
    }
    for (int i = 0; i < n; i++) {
        if (r[3 * i + 2] || r[3 * i + 1] == r[3 * i]) continue;
        piece s = *pc;
        s.off = pc->off + (size_t)r[3 * i];
        s.len = (size_t)(r[3 * i + 1] - r[3 * i]);
        if (work_push(w, s)) return -1;
    }
    return 0;
}

static int bytelevel_map(tk_work *w, piece *pc) {
    if (work_reserve(w, 2 * pc->len)) return -1;
    size_t start = w->len;
    for (size_t i = 0; i < pc->len; i++) {
        char tmp[4];
        int n = tk_utf8_encode(tk_byte_to_cp[(unsigned char)w->buf[pc->off + i]], tmp);
        put_bytes(w, tmp, (size_t)n, w->al[2 * (pc->off + i)], w->al[2 * (pc->off + i) + 1]);
    }
    pc->off = start;
    pc->len = w->len - start;
    return 0;
}

static int metaspace_piece(const pre_step *s, tk_work *w, piece *pc) {
    static const pattern space = {PAT_STRING, (char *)" ", 1, NULL};
    if (replace_in(w, pc, &space, s->repl, s->repl_len)) return -1;
    int starts = pc->len >= s->repl_len && memcmp(w->buf + pc->off, s->repl, s->repl_len) == 0;
    if (!starts && pc->len > 0 &&
        (s->scheme == PREPEND_ALWAYS || (s->scheme == PREPEND_FIRST && w->al[2 * pc->off] == 0))) {
        if (prepend_text(w, pc, s->repl, s->repl_len)) return -1;
    }
    return 0;
}

int pre_apply(const pre_step *s, tk_work *w) {
    int *r = NULL, nr = 0, rcap = 0, rc = 0;
    w->nq = 0;
    for (int i = 0; i < w->np && rc == 0; i++) {
        piece pc = w->p[i];
        if (pc.added_id >= 0) {
            rc = work_push(w, pc);
            continue;
        }
        switch (s->kind) {
        case PRE_BYTELEVEL: {
            if (s->add_prefix_space && pc.len > 0 && w->buf[pc.off] != ' ') rc = prepend_text(w, &pc, " ", 1);
            if (rc) break;
            int first = w->nq;
            if (s->use_regex) {
                rc = pattern_find(&s->pat, w->region, w->buf + pc.off, pc.len, &r, &nr, &rcap);
                if (!rc) rc = split_by(w, &pc, r, nr, SPLIT_ISOLATED, 0);
            } else if (pc.len > 0) {
                rc = work_push(w, pc);
            }
            for (int k = first; k < w->nq && rc == 0; k++) rc = bytelevel_map(w, &w->q[k]);
            break;
        }
        case PRE_SPLIT:
            rc = pattern_find(&s->pat, w->region, w->buf + pc.off, pc.len, &r, &nr, &rcap);
            if (!rc) rc = split_by(w, &pc, r, nr, s->behavior, s->invert);
            break;
        case PRE_METASPACE:
            rc = metaspace_piece(s, w, &pc);
            if (rc) break;
            if (s->split) {
                pattern rp = {PAT_STRING, (char *)s->repl, s->repl_len, NULL};
                rc = pattern_find(&rp, w->region, w->buf + pc.off, pc.len, &r, &nr, &rcap);
                if (!rc) rc = split_by(w, &pc, r, nr, SPLIT_MERGED_NEXT, 0);
            } else if (pc.len > 0) {
                rc = work_push(w, pc);
            }
            break;
        case PRE_DIGITS: {
            // Digits: char::is_numeric runs, each digit alone (individual) or contiguous.
            nr = 0;
            size_t k = 0, prev = 0;
            while (k < pc.len && rc == 0) {
                uint32_t cp;
                int cl = tk_utf8_decode((const unsigned char *)w->buf + pc.off + k, pc.len - k, &cp);
                if (cl <= 0) cl = 1;
                utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
                int num = c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
                if (num) {
                    if (prev != k) rc = ranges_push(&r, &nr, &rcap, (int)prev, (int)k, 0);
                    if (!rc) rc = ranges_push(&r, &nr, &rcap, (int)k, (int)(k + (size_t)cl), 1);
                    prev = k + (size_t)cl;
                }
                k += (size_t)cl;
            }
            if (!rc && prev != pc.len) rc = ranges_push(&r, &nr, &rcap, (int)prev, (int)pc.len, 0);
            if (!rc) rc = split_by(w, &pc, r, nr, s->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, 0);
            break;
        }
        }
    }
    free(r);
    if (rc) return -1;
    work_swap(w);
    return 0;
}

void pre_step_free(pre_step *s) { pattern_free(&s->pat); }
void norm_step_free(norm_step *s) {
    free(s->text);
    pattern_free(&s->pat);
}
