// data/tokenizer.c — loads a tokenizer.json and runs it as HF `tokenizers` 0.23 does:
// added tokens split out of the raw text (then out of the normalized text), normalizer,
// pre-tokenizers, BPE, post-processor; and the decoder chain for decode.
#include "data/tokenizer.h"
#include "data/fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer_internal.h"

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int single_word, lstrip, rstrip, normalized, special;
} added_token;

// Byte trie over added-token contents for leftmost-longest matching.
typedef struct {
    int32_t child, sibling, tok;   // tok: index into added[] or -1
    unsigned char byte;
} trie_node;

typedef struct {
    trie_node *n;
    int nn, cap;
    unsigned char first[256];   // bytes a token can start with
} trie;

typedef enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP } dec_kind;
typedef struct {
    dec_kind kind;
    char repl[8];
    size_t repl_len;
    prepend_scheme scheme;
    pattern pat;        // REPLACE
    char *content;      // REPLACE content; STRIP: the char (UTF-8)
    size_t clen;
    int start, stop;    // STRIP
} dec_step;

typedef struct {
    int is_special;     // 1: special token ids; 0: the sequence
    int32_t *ids;
    int nids;
} tmpl_item;

struct tokenizer {
    char path[512];
    bpe_model bpe;
    added_token *added;
    int nadded;
    strmap added_map;   // content → id
    strmap special_set; // contents of special added tokens (decode skips by token string)
    trie raw_trie, norm_trie;
    char **norm_content;   // normalized forms of normalized=true added tokens
    size_t *norm_len;
    norm_step *norms;
    int nnorms;
    pre_step *pres;
    int npres;
    dec_step *decs;
    int ndecs, has_decoder;
    tmpl_item *tmpl;    // TemplateProcessing single
    int ntmpl;
    int bytelevel_trim, bytelevel_trim_prefix;   // ByteLevel post-processor with trim_offsets
    char **id_to_tok;   // vocab_size entries (NULL: no token)
    size_t *id_len;
    unsigned char *id_special;
    unsigned char *id_owned;   // id_to_tok[i] was malloc'ed here (else borrowed from the vocab)
    int vocab_size;
    int32_t bos_id, eos_id;
    int adds_bos;
};

static int fail(char *err, size_t errlen, const char *path, const char *fmt, const char *what) {
    char msg[400];
    snprintf(msg, sizeof msg, fmt, what ? what : "");
    snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

static int trie_add(trie *t, const char *s, size_t len, int tok) {
    if (t->nn == 0) {
        t->cap = 256;
        t->n = malloc((size_t)t->cap * sizeof *t->n);
        if (!t->n) return -1;
        t->n[0] = (trie_node){-1, -1, -1, 0};
        t->nn = 1;
    }
    if (len == 0) return 0;
    t->first[(unsigned char)s[0]] = 1;
    int cur = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int c = t->n[cur].child;
        while (c >= 0 && t->n[c].byte != b) c = t->n[c].sibling;
        if (c < 0) {
            if (t->nn == t->cap) {
                int ncap = t->cap * 2;
                trie_node *nn = realloc(t->n, (size_t)ncap * sizeof *nn);
                if (!nn) return -1;
                t->n = nn;
                t->cap = ncap;
            }
            c = t->nn++;
            t->n[c] = (trie_node){-1, t->n[cur].child, -1, b};
            t->n[cur].child = c;
        }
        cur = c;
    }
    // The same content twice: the later token wins, as in HF's map from content to id.
    t->n[cur].tok = tok;
    return 0;
}

// Longest added token starting at s[0], or -1; *mlen its length.
static int trie_longest(const trie *t, const char *s, size_t len, size_t *mlen) {
    int cur = 0, best = -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int c = t->n[cur].child;
        while (c >= 0 && t->n[c].byte != b) c = t->n[c].sibling;
        if (c < 0) break;
        cur = c;
        if (t->n[cur].tok >= 0) {
            best = t->n[cur].tok;
            *mlen = i + 1;
        }
    }
    return best;
}

static uint32_t last_cp(const char *s, size_t len) {
    size_t i = len;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i > 0) i--;
    uint32_t cp = 0;
    if (tk_utf8_decode((const unsigned char *)s + i, len - i, &cp) <= 0) return 0;
    return cp;
}

// HF AddedVocabulary::find_matches over the piece pc of w; pushes the resulting pieces onto q.
static int split_added(const tokenizer *t, const trie *tr, tk_work *w, const piece *pc) {
    const char *s = w->buf + pc->off;
    size_t len = pc->len, start_offset = 0, i = 0;
    if (tr->nn == 0 || len == 0) return len ? work_push(w, *pc) : 0;
    while (i < len) {
        if (!tr->first[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        size_t mlen = 0;
        int k = trie_longest(tr, s + i, len - i, &mlen);
        if (k < 0) {
            i++;
            continue;
        }
        const added_token *a = &t->added[k];
        size_t start = i, stop = i + mlen;
        i = stop;
        if (a->single_word) {
            int start_space = start == 0 || !tk_is_word(last_cp(s, start));
            uint32_t cp = 0;
            int stop_space = stop == len || tk_utf8_decode((const unsigned char *)s + stop, len - stop, &cp) <= 0 ||
                             !tk_is_word(cp);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t j = ns;
                while (j > 0 && ((unsigned char)s[j - 1] & 0xC0) == 0x80) j--;
                if (j > 0) j--;
                uint32_t cp;
                if (tk_utf8_decode((const unsigned char *)s + j, ns - j, &cp) <= 0 || !tk_is_whitespace(cp)) break;
                ns = j;
            }
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (stop < len) {
                uint32_t cp;
                int cl = tk_utf8_decode((const unsigned char *)s + stop, len - stop, &cp);
                if (cl <= 0 || !tk_is_whitespace(cp)) break;
                stop += (size_t)cl;
            }
        }
        if (start_offset < start) {
            piece q = *pc;
            q.off = pc->off + start_offset;
            q.len = start - start_offset;
            if (work_push(w, q)) return -1;
        }
        piece q = *pc;
        q.off = pc->off + start;
        q.len = stop - start;
        q.added_id = a->id;
        q.orig_start = w->al[2 * q.off];
        q.orig_end = w->al[2 * (q.off + q.len - 1) + 1];
        if (work_push(w, q)) return -1;
        start_offset = stop;
        i = stop > i ? stop : i;
    }
    if (start_offset != len) {
        piece q = *pc;
        q.off = pc->off + start_offset;
        q.len = len - start_offset;
        if (work_push(w, q)) return -1;
    }
    return 0;
}

static void work_free(tk_work *w) {
    free(w->buf);
    free(w->al);
    free(w->p);
    free(w->q);
    if (w->region) onig_region_free(w->region, 1);
}

static int normalize_piece(const tokenizer *t, tk_work *w, piece *pc) {
    for (int k = 0; k < t->nnorms; k++)
        if (norm_apply(&t->norms[k], w, pc)) return -1;
    return 0;
}

static int utf8_valid(const char *s, size_t len, size_t *bad) {
    size_t i = 0;
    while (i < len) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int n = tk_utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n <= 0) {
            *bad = i;
            return 0;
        }
        i += (size_t)n;
    }
    return 1;
}

typedef struct {
    int32_t *ids, *offs;
    int n, cap;
} out_list;

static int out_push(out_list *o, int32_t id, int32_t a, int32_t b) {
    if (o->n == o->cap) {
        int ncap = o->cap ? o->cap * 2 : 256;
        int32_t *ni = realloc(o->ids, (size_t)ncap * sizeof *ni);
        if (!ni) return -1;
        o->ids = ni;
        int32_t *no = realloc(o->offs, 2 * (size_t)ncap * sizeof *no);
        if (!no) return -1;
        o->offs = no;
        o->cap = ncap;
    }
    o->ids[o->n] = id;
    o->offs[2 * o->n] = a;
    o->offs[2 * o->n + 1] = b;
    o->n++;
    return 0;
}

// Token values (borrowed strings) beside out_list, for trim_offsets.
typedef struct {
    const char **s;
    size_t *len;
    int n, cap;
} val_list;

static int val_push(val_list *v, const char *s, size_t len) {
    if (v->n == v->cap) {
        int ncap = v->cap ? v->cap * 2 : 256;
        const char **ns = realloc(v->s, (size_t)ncap * sizeof *ns);
        if (!ns) return -1;
        v->s = ns;
        size_t *nl = realloc(v->len, (size_t)ncap * sizeof *nl);
        if (!nl) return -1;
        v->len = nl;
        v->cap = ncap;
    }
    v->s[v->n] = s;
    v->len[v->n] = len;
    v->n++;
    return 0;
}

static int is_ws_token_char(uint32_t cp) { return cp == 0x120 || tk_is_whitespace(cp); }

static size_t char_fwd(const char *text, size_t len, size_t x, int n) {
    while (n-- > 0 && x < len) {
        x++;
        while (x < len && ((unsigned char)text[x] & 0xC0) == 0x80) x++;
    }
    return x;
}

// Steps back n characters from x; -1 when fewer than n characters precede x.
static long char_back(const char *text, size_t x, int n) {
    while (n-- > 0) {
        if (x == 0) return -1;
        x--;
        while (x > 0 && ((unsigned char)text[x] & 0xC0) == 0x80) x--;
    }
    return (long)x;
}

// ByteLevel post-processor with trim_offsets (processors/byte_level.rs process_offsets), on
// each token's value: the vocab string for BPE tokens, the matched text for added tokens
// (with whatever lstrip/rstrip took in). HF's Python API runs it on character offsets, so the
// counts of whitespace characters are stepped over as characters of the input.
static void trim_offsets(const tokenizer *t, out_list *o, const char *const *val, const size_t *vlen,
                         const char *text, size_t tlen) {
    for (int i = 0; i < o->n; i++) {
        const char *s = val[i];
        size_t len = vlen[i], p = 0;
        int lead = 0, trail = 0, nch = 0;
        while (p < len) {
            uint32_t cp;
            int cl = tk_utf8_decode((const unsigned char *)s + p, len - p, &cp);
            if (cl <= 0) break;
            if (is_ws_token_char(cp) && lead == nch) lead++;
            trail = is_ws_token_char(cp) ? trail + 1 : 0;
            nch++;
            p += (size_t)cl;
        }
        int32_t *off = &o->offs[2 * i];
        if (lead > 0) {
            int is_first = i == 0 || off[0] == 0;
            if (is_first && t->bytelevel_trim_prefix && lead == 1) lead = 0;
            size_t ns = char_fwd(text, tlen, (size_t)off[0], lead);
            off[0] = ns < (size_t)off[1] ? (int32_t)ns : off[1];
        }
        if (trail > 0) {
            long ne = char_back(text, (size_t)off[1], trail);
            if (ne >= 0) off[1] = ne > off[0] ? (int32_t)ne : off[0];
        }
    }
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                     int32_t **offsets, char *err, size_t errlen) {
    *ids = NULL;
    if (offsets) *offsets = NULL;
    size_t bad;
    if (len > (size_t)INT32_MAX / 4) {
        snprintf(err, errlen, "text of %zu bytes is too long to encode at once", len);
        return -1;
    }
    if (!utf8_valid(text, len, &bad)) {
        snprintf(err, errlen, "invalid UTF-8 at byte %zu of the text", bad);
        return -1;
    }
    tk_work w = {0};
    out_list o = {0};
    val_list vals = {0};
    int32_t *tids = NULL, *tlens = NULL;
    int tn = 0, tcap = 0, rc = -1;
    w.region = onig_region_new();
    if (!w.region || work_reserve(&w, len + 16)) goto oom;
    // The input with each byte aligned to its character's range.
    memcpy(w.buf, text, len);
    for (size_t i = 0; i < len;) {
        int cl = 1;
        if ((unsigned char)text[i] >= 0x80) {
            uint32_t cp;
            cl = tk_utf8_decode((const unsigned char *)text + i, len - i, &cp);
        }
        for (int k = 0; k < cl; k++) {
            w.al[2 * (i + (size_t)k)] = (int32_t)i;
            w.al[2 * (i + (size_t)k) + 1] = (int32_t)(i + (size_t)cl);
        }
        i += (size_t)cl;
    }
    w.len = len;
    piece whole = {0, len, -1, 0, 0};
    if (split_added(t, &t->raw_trie, &w, &whole)) goto oom;
    work_swap(&w);
    // Normalize each remaining piece, then split out the normalized added tokens.
    for (int i = 0; i < w.np; i++) {
        piece pc = w.p[i];
        if (pc.added_id >= 0) {
            if (work_push(&w, pc)) goto oom;
            continue;
        }
        if (normalize_piece(t, &w, &pc)) goto fail_norm;
        if (split_added(t, &t->norm_trie, &w, &pc)) goto oom;
    }
    work_swap(&w);
    for (int k = 0; k < t->npres; k++)
        if (pre_apply(&t->pres[k], &w)) goto fail_pre;
    for (int i = 0; i < w.np; i++) {
        piece pc = w.p[i];
        if (pc.added_id >= 0) {
            if (out_push(&o, pc.added_id, pc.orig_start, pc.orig_end)) goto oom;
            if (t->bytelevel_trim && val_push(&vals, w.buf + pc.off, pc.len)) goto oom;
            continue;
        }
        tn = 0;
        if (bpe_word(&t->bpe, w.buf + pc.off, pc.len, &tids, &tlens, &tn, &tcap) < 0) {
            snprintf(err, errlen, "BPE failed (out of memory)");
            goto done;
        }
        size_t pos = pc.off;
        for (int k = 0; k < tn; k++) {
            size_t e = pos + (size_t)tlens[k];
            if (out_push(&o, tids[k], w.al[2 * pos], w.al[2 * (e - 1) + 1])) goto oom;
            if (t->bytelevel_trim && val_push(&vals, t->id_to_tok[tids[k]] ? t->id_to_tok[tids[k]] : "",
                                              t->id_to_tok[tids[k]] ? t->id_len[tids[k]] : 0))
                goto oom;
            pos = e;
        }
    }
    if (t->bytelevel_trim) trim_offsets(t, &o, vals.s, vals.len, text, len);
    if (add_special && t->ntmpl > 0) {
        out_list f = {0};
        for (int k = 0; k < t->ntmpl; k++) {
            if (!t->tmpl[k].is_special) {
                for (int j = 0; j < o.n; j++)
                    if (out_push(&f, o.ids[j], o.offs[2 * j], o.offs[2 * j + 1])) {
                        free(f.ids);
                        free(f.offs);
                        goto oom;
                    }
            } else {
                for (int j = 0; j < t->tmpl[k].nids; j++)
                    if (out_push(&f, t->tmpl[k].ids[j], 0, 0)) {
                        free(f.ids);
                        free(f.offs);
                        goto oom;
                    }
            }
        }
        free(o.ids);
        free(o.offs);
        o = f;
    }
    if (o.n == 0) {
        // Callers may free(*ids) unconditionally; hand back a valid empty allocation.
        if (out_push(&o, 0, 0, 0)) goto oom;
        o.n = 0;
    }
    *ids = o.ids;
    if (offsets) *offsets = o.offs;
    else free(o.offs);
    rc = o.n;
    o.ids = o.offs = NULL;
    goto done;
fail_norm:
    snprintf(err, errlen, "normalizer failed on the text");
    goto done;
fail_pre:
    snprintf(err, errlen, "pre-tokenizer failed on the text (regex error or out of memory)");
    goto done;
oom:
    snprintf(err, errlen, "out of memory while encoding");
done:
    free(vals.s);
    free(vals.len);
    free(o.ids);
    free(o.offs);
    free(tids);
    free(tlens);
    work_free(&w);
    return rc;
}

// Decoding works on a list of owned strings, as HF's decode_chain does on Vec<String>.
typedef struct {
    char **s;
    size_t *len;
    int n, cap;
} strlist;

static int sl_push(strlist *l, const char *s, size_t len) {
    if (l->n == l->cap) {
        int ncap = l->cap ? l->cap * 2 : 64;
        char **ns = realloc(l->s, (size_t)ncap * sizeof *ns);
        if (!ns) return -1;
        l->s = ns;
        size_t *nl = realloc(l->len, (size_t)ncap * sizeof *nl);
        if (!nl) return -1;
        l->len = nl;
        l->cap = ncap;
    }
    char *c = malloc(len + 1);
    if (!c) return -1;
    memcpy(c, s, len);
    c[len] = 0;
    l->s[l->n] = c;
    l->len[l->n] = len;
    l->n++;
    return 0;
}

static void sl_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->len);
    memset(l, 0, sizeof *l);
}

typedef struct {
    char *b;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 256;
        while (ncap < b->n + n + 1) ncap *= 2;
        char *nb = realloc(b->b, ncap);
        if (!nb) return -1;
        b->b = nb;
        b->cap = ncap;
    }
    memcpy(b->b + b->n, s, n);
    b->n += n;
    b->b[b->n] = 0;
    return 0;
}

// String::from_utf8_lossy: each maximal invalid subsequence becomes one U+FFFD.
static int sb_put_lossy(sbuf *b, const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int cl = tk_utf8_decode(s + i, n - i, &cp);
        if (cl > 0) {
            if (sb_put(b, (const char *)s + i, (size_t)cl)) return -1;
            i += (size_t)cl;
            continue;
        }
        unsigned c = s[i];
        size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
        size_t k = 1;
        if (need > 1) {
            unsigned lo = 0x80, hi = 0xBF;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
            if (i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
                k = 2;
                while (k < need && i + k < n && s[i + k] >= 0x80 && s[i + k] <= 0xBF) k++;
            }
        }
        if (sb_put(b, "\xEF\xBF\xBD", 3)) return -1;
        i += k;
    }
    return 0;
}

static int dec_apply(const dec_step *d, strlist *l) {
    strlist out = {0};
    sbuf b = {0};
    int rc = 0;
    switch (d->kind) {
    case DEC_BYTELEVEL: {
        // All tokens' bytes together, then one lossy UTF-8 conversion.
        sbuf raw = {0};
        for (int i = 0; i < l->n && !rc; i++) {
            const char *s = l->s[i];
            size_t n = l->len[i], p = 0, mark = raw.n;
            int ok = 1;
            while (p < n && ok) {
                uint32_t cp;
                int cl = tk_utf8_decode((const unsigned char *)s + p, n - p, &cp);
                int byte = cl > 0 ? tk_cp_to_byte(cp) : -1;
                if (byte < 0) {
                    ok = 0;
                    break;
                }
                char c = (char)byte;
                if (sb_put(&raw, &c, 1)) rc = -1;
                p += (size_t)cl;
            }
            if (!ok && !rc) {
                raw.n = mark;
                rc = sb_put(&raw, s, n);
            }
        }
        if (!rc) rc = sb_put_lossy(&b, (const unsigned char *)(raw.b ? raw.b : ""), raw.n);
        if (!rc) rc = sl_push(&out, b.b ? b.b : "", b.n);
        free(raw.b);
        break;
    }
    case DEC_METASPACE:
        for (int i = 0; i < l->n && !rc; i++) {
            b.n = 0;
            const char *s = l->s[i];
            size_t n = l->len[i], p = 0;
            while (p < n && !rc) {
                if (n - p >= d->repl_len && memcmp(s + p, d->repl, d->repl_len) == 0) {
                    if (!(i == 0 && d->scheme != PREPEND_NEVER)) rc = sb_put(&b, " ", 1);
                    p += d->repl_len;
                } else {
                    rc = sb_put(&b, s + p, 1);
                    p++;
                }
            }
            if (!rc) rc = sl_push(&out, b.b ? b.b : "", b.n);
        }
        break;
    case DEC_REPLACE: {
        int *r = NULL, nr = 0, rcap = 0;
        OnigRegion *reg = onig_region_new();
        if (!reg) rc = -1;
        for (int i = 0; i < l->n && !rc; i++) {
            b.n = 0;
            rc = pattern_find(&d->pat, reg, l->s[i], l->len[i], &r, &nr, &rcap);
            for (int k = 0; k < nr && !rc; k++) {
                if (r[3 * k + 2]) rc = sb_put(&b, d->content, d->clen);
                else rc = sb_put(&b, l->s[i] + r[3 * k], (size_t)(r[3 * k + 1] - r[3 * k]));
            }
            if (!rc) rc = sl_push(&out, b.b ? b.b : "", b.n);
        }
        free(r);
        if (reg) onig_region_free(reg, 1);
        break;
    }
    case DEC_BYTEFALLBACK: {
        sbuf bytes = {0};
        for (int i = 0; i <= l->n && !rc; i++) {
            int byte = -1;
            if (i < l->n && l->len[i] == 6 && memcmp(l->s[i], "<0x", 3) == 0 && l->s[i][5] == '>') {
                char hex[3] = {l->s[i][3], l->s[i][4], 0};
                char *end;
                long v = strtol(hex, &end, 16);
                if (*end == 0 && hex[0] != '-' && hex[0] != '+' && hex[0] != ' ') byte = (int)v;
            }
            if (byte >= 0) {
                char c = (char)byte;
                rc = sb_put(&bytes, &c, 1);
                continue;
            }
            if (bytes.n) {
                size_t badpos;
                if (utf8_valid(bytes.b, bytes.n, &badpos)) {
                    rc = sl_push(&out, bytes.b, bytes.n);
                } else {
                    for (size_t k = 0; k < bytes.n && !rc; k++) rc = sl_push(&out, "\xEF\xBF\xBD", 3);
                }
                bytes.n = 0;
            }
            if (i < l->n && !rc) rc = sl_push(&out, l->s[i], l->len[i]);
        }
        free(bytes.b);
        break;
    }
    case DEC_FUSE:
        for (int i = 0; i < l->n && !rc; i++) rc = sb_put(&b, l->s[i], l->len[i]);
        if (!rc) rc = sl_push(&out, b.b ? b.b : "", b.n);
        break;
    case DEC_STRIP:
        for (int i = 0; i < l->n && !rc; i++) {
            const char *s = l->s[i];
            size_t n = l->len[i], a = 0, e = n;
            for (int k = 0; k < d->start && a + d->clen <= n && memcmp(s + a, d->content, d->clen) == 0; k++) a += d->clen;
            for (int k = 0; k < d->stop && e >= a + d->clen && memcmp(s + e - d->clen, d->content, d->clen) == 0; k++)
                e -= d->clen;
            rc = sl_push(&out, s + a, e - a);
        }
        break;
    }
    free(b.b);
    if (rc) {
        sl_free(&out);
        return -1;
    }
    sl_free(l);
    *l = out;
    return 0;
}

char *tokenizer_decode(const tokenizer *t, const int32_t *ids, int n, int skip_special, size_t *len) {
    strlist l = {0};
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->vocab_size || !t->id_to_tok[id]) {
            sl_free(&l);
            return NULL;
        }
        if (skip_special && t->id_special[id]) continue;
        if (sl_push(&l, t->id_to_tok[id], t->id_len[id])) {
            sl_free(&l);
            return NULL;
        }
    }
    if (t->has_decoder) {
        for (int k = 0; k < t->ndecs; k++)
            if (dec_apply(&t->decs[k], &l)) {
                sl_free(&l);
                return NULL;
            }
    }
    sbuf b = {0};
    int rc = sb_put(&b, "", 0);
    for (int i = 0; i < l.n && !rc; i++) {
        if (!t->has_decoder && i > 0) rc = sb_put(&b, " ", 1);
        if (!rc) rc = sb_put(&b, l.s[i], l.len[i]);
    }
    sl_free(&l);
    if (rc) {
        free(b.b);
        return NULL;
    }
    if (len) *len = b.n;
    return b.b;
}

int tokenizer_vocab_size(const tokenizer *t) { return t->vocab_size; }

int tokenizer_token_to_id(const tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = strmap_get(&t->added_map, token, n);
    return id >= 0 ? id : strmap_get(&t->bpe.vocab, token, n);
}

const char *tokenizer_id_to_token(const tokenizer *t, int id) {
    if (id < 0 || id >= t->vocab_size) return NULL;
    return t->id_to_tok[id];
}

int tokenizer_bos_id(const tokenizer *t) { return t->bos_id; }
int tokenizer_eos_id(const tokenizer *t) { return t->eos_id; }
int tokenizer_adds_bos(const tokenizer *t) { return t->adds_bos; }

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    bpe_model_free(&t->bpe);
    for (int i = 0; i < t->nadded; i++) free(t->added[i].content);
    free(t->added);
    strmap_free(&t->added_map);
    strmap_free(&t->special_set);
    free(t->raw_trie.n);
    free(t->norm_trie.n);
    if (t->norm_content)
        for (int i = 0; i < t->nadded; i++) free(t->norm_content[i]);
    free(t->norm_content);
    free(t->norm_len);
    for (int i = 0; i < t->nnorms; i++) norm_step_free(&t->norms[i]);
    free(t->norms);
    for (int i = 0; i < t->npres; i++) pre_step_free(&t->pres[i]);
    free(t->pres);
    for (int i = 0; i < t->ndecs; i++) {
        pattern_free(&t->decs[i].pat);
        free(t->decs[i].content);
    }
    free(t->decs);
    for (int i = 0; i < t->ntmpl; i++) free(t->tmpl[i].ids);
    free(t->tmpl);
    if (t->id_to_tok && t->id_owned)
        for (int i = 0; i < t->vocab_size; i++)
            if (t->id_owned[i]) free(t->id_to_tok[i]);
    free(t->id_owned);
    free(t->id_to_tok);
    free(t->id_len);
    free(t->id_special);
    free(t);
}

// Loading: every component is checked against what this file implements; anything else is
// refused with its name.

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static int jnull(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v);
}

static int load_pattern(const tokenizer *t, const cJSON *o, pattern *p, const char *where, char *err, size_t errlen) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *str = jstr(pat, "String"), *re = jstr(pat, "Regex");
    if (!str && !re) return fail(err, errlen, t->path, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
    char e2[300];
    if (pattern_compile(p, str, str ? NULL : re, e2, sizeof e2)) return fail(err, errlen, t->path, "%s", e2);
    return 0;
}

static int first_char(const char *s, char *out, size_t *n) {
    uint32_t cp;
    size_t len = strlen(s);
    int cl = len ? tk_utf8_decode((const unsigned char *)s, len, &cp) : 0;
    if (cl <= 0 || (size_t)cl != len) return -1;
    memcpy(out, s, (size_t)cl);
    *n = (size_t)cl;
    return 0;
}

static int parse_scheme(const cJSON *o, prepend_scheme *s) {
    const char *ps = jstr(o, "prepend_scheme");
    if (ps) {
        if (!strcmp(ps, "always")) *s = PREPEND_ALWAYS;
        else if (!strcmp(ps, "first")) *s = PREPEND_FIRST;
        else if (!strcmp(ps, "never")) *s = PREPEND_NEVER;
        else return -1;
    } else {
        *s = jbool(o, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
    }
    return 0;
}

static int load_normalizer(tokenizer *t, const cJSON *o, char *err, size_t errlen) {
    if (!o || cJSON_IsNull(o)) return 0;
    const char *type = jstr(o, "type");
    if (!type) return fail(err, errlen, t->path, "normalizer without a \"type\"", NULL);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "normalizers"), *it;
        cJSON_ArrayForEach(it, list) if (load_normalizer(t, it, err, errlen)) return -1;
        return 0;
    }
    norm_step s = {0};
    if (!strcmp(type, "NFC")) {
        s.kind = NORM_NFC;
    } else if (!strcmp(type, "Prepend")) {
        const char *pp = jstr(o, "prepend");
        if (!pp) return fail(err, errlen, t->path, "normalizer Prepend without \"prepend\"", NULL);
        s.kind = NORM_PREPEND;
        s.text = strdup(pp);
        s.tlen = strlen(pp);
    } else if (!strcmp(type, "Replace")) {
        const char *c = jstr(o, "content");
        if (!c) return fail(err, errlen, t->path, "normalizer Replace without \"content\"", NULL);
        if (load_pattern(t, o, &s.pat, "normalizer Replace", err, errlen)) return -1;
        s.kind = NORM_REPLACE;
        s.text = strdup(c);
        s.tlen = strlen(c);
    } else {
        return fail(err, errlen, t->path,
                    "unsupported normalizer \"%s\" (quarry implements NFC, Prepend, Replace and Sequence)", type);
    }
    if (s.kind != NORM_NFC && !s.text) return fail(err, errlen, t->path, "out of memory", NULL);
    norm_step *nn = realloc(t->norms, (size_t)(t->nnorms + 1) * sizeof *nn);
    if (!nn) {
        norm_step_free(&s);
        return fail(err, errlen, t->path, "out of memory", NULL);
    }
    t->norms = nn;
    t->norms[t->nnorms++] = s;
    return 0;
}

static const char *GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_pre(tokenizer *t, const cJSON *o, char *err, size_t errlen) {
    if (!o || cJSON_IsNull(o)) return 0;
    const char *type = jstr(o, "type");
    if (!type) return fail(err, errlen, t->path, "pre_tokenizer without a \"type\"", NULL);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "pretokenizers"), *it;
        cJSON_ArrayForEach(it, list) if (load_pre(t, it, err, errlen)) return -1;
        return 0;
    }
    pre_step s = {0};
    char e2[300];
    if (!strcmp(type, "ByteLevel")) {
        s.kind = PRE_BYTELEVEL;
        s.add_prefix_space = jbool(o, "add_prefix_space", 1);
        s.use_regex = jbool(o, "use_regex", 1);
        if (s.use_regex && pattern_compile(&s.pat, NULL, GPT2_REGEX, e2, sizeof e2))
            return fail(err, errlen, t->path, "%s", e2);
    } else if (!strcmp(type, "Split")) {
        s.kind = PRE_SPLIT;
        if (load_pattern(t, o, &s.pat, "pre_tokenizer Split", err, errlen)) return -1;
        const char *b = jstr(o, "behavior");
        if (!b) b = "";
        if (!strcmp(b, "Removed")) s.behavior = SPLIT_REMOVED;
        else if (!strcmp(b, "Isolated")) s.behavior = SPLIT_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) s.behavior = SPLIT_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) s.behavior = SPLIT_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) s.behavior = SPLIT_CONTIGUOUS;
        else {
            pre_step_free(&s);
            return fail(err, errlen, t->path, "pre_tokenizer Split: unknown behavior \"%s\"", b);
        }
        s.invert = jbool(o, "invert", 0);
    } else if (!strcmp(type, "Metaspace")) {
        s.kind = PRE_METASPACE;
        const char *r = jstr(o, "replacement");
        if (!r || first_char(r, s.repl, &s.repl_len))
            return fail(err, errlen, t->path, "pre_tokenizer Metaspace: \"replacement\" must be one character", NULL);
        if (parse_scheme(o, &s.scheme))
            return fail(err, errlen, t->path, "pre_tokenizer Metaspace: unknown prepend_scheme \"%s\"", jstr(o, "prepend_scheme"));
        s.split = jbool(o, "split", 1);
    } else if (!strcmp(type, "Digits")) {
        s.kind = PRE_DIGITS;
        s.individual_digits = jbool(o, "individual_digits", 0);
    } else {
        return fail(err, errlen, t->path,
                    "unsupported pre_tokenizer \"%s\" (quarry implements ByteLevel, Split, Metaspace, Digits and Sequence)",
                    type);
    }
    pre_step *np = realloc(t->pres, (size_t)(t->npres + 1) * sizeof *np);
    if (!np) {
        pre_step_free(&s);
        return fail(err, errlen, t->path, "out of memory", NULL);
    }
    t->pres = np;
    t->pres[t->npres++] = s;
    return 0;
}

static int load_decoder(tokenizer *t, const cJSON *o, char *err, size_t errlen) {
    const char *type = jstr(o, "type");
    if (!type) return fail(err, errlen, t->path, "decoder without a \"type\"", NULL);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "decoders"), *it;
        cJSON_ArrayForEach(it, list) if (load_decoder(t, it, err, errlen)) return -1;
        return 0;
    }
    dec_step d = {0};
    if (!strcmp(type, "ByteLevel")) {
        d.kind = DEC_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        d.kind = DEC_METASPACE;
        const char *r = jstr(o, "replacement");
        if (!r || first_char(r, d.repl, &d.repl_len))
            return fail(err, errlen, t->path, "decoder Metaspace: \"replacement\" must be one character", NULL);
        if (parse_scheme(o, &d.scheme))
            return fail(err, errlen, t->path, "decoder Metaspace: unknown prepend_scheme \"%s\"", jstr(o, "prepend_scheme"));
    } else if (!strcmp(type, "Replace")) {
        d.kind = DEC_REPLACE;
        const char *c = jstr(o, "content");
        if (!c) return fail(err, errlen, t->path, "decoder Replace without \"content\"", NULL);
        if (load_pattern(t, o, &d.pat, "decoder Replace", err, errlen)) return -1;
        d.content = strdup(c);
        d.clen = strlen(c);
    } else if (!strcmp(type, "ByteFallback")) {
        d.kind = DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d.kind = DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        d.kind = DEC_STRIP;
        const char *c = jstr(o, "content");
        char ch[8];
        size_t n;
        if (!c || first_char(c, ch, &n)) return fail(err, errlen, t->path, "decoder Strip: \"content\" must be one character", NULL);
        d.content = malloc(n + 1);
        if (d.content) {
            memcpy(d.content, ch, n);
            d.content[n] = 0;
        }
        d.clen = n;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "start"), *b = cJSON_GetObjectItemCaseSensitive(o, "stop");
        d.start = cJSON_IsNumber(a) ? a->valueint : 0;
        d.stop = cJSON_IsNumber(b) ? b->valueint : 0;
    } else {
        return fail(err, errlen, t->path,
                    "unsupported decoder \"%s\" (quarry implements ByteLevel, Metaspace, Replace, ByteFallback, Fuse, "
                    "Strip and Sequence)",
                    type);
    }
    if ((d.kind == DEC_REPLACE || d.kind == DEC_STRIP) && !d.content) return fail(err, errlen, t->path, "out of memory", NULL);
    dec_step *nd = realloc(t->decs, (size_t)(t->ndecs + 1) * sizeof *nd);
    if (!nd) {
        pattern_free(&d.pat);
        free(d.content);
        return fail(err, errlen, t->path, "out of memory", NULL);
    }
    t->decs = nd;
    t->decs[t->ndecs++] = d;
    return 0;
}

static int load_template(tokenizer *t, const cJSON *o, char *err, size_t errlen) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens"), *it;
    if (!cJSON_IsArray(single)) return fail(err, errlen, t->path, "TemplateProcessing without a \"single\" template", NULL);
    int n = cJSON_GetArraySize(single);
    t->tmpl = calloc((size_t)(n > 0 ? n : 1), sizeof *t->tmpl);
    if (!t->tmpl) return fail(err, errlen, t->path, "out of memory", NULL);
    int seen_seq = 0, k = 0;
    cJSON_ArrayForEach(it, single) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
        tmpl_item *ti = &t->tmpl[k];
        if (sq) {
            const char *id = jstr(sq, "id");
            if (!id || strcmp(id, "A")) return fail(err, errlen, t->path, "TemplateProcessing single template uses sequence \"%s\"; only $A is possible for one text", id);
            ti->is_special = 0;
            seen_seq = 1;
        } else if (sp) {
            const char *name = jstr(sp, "id");
            const cJSON *def = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids"), *x;
            if (!cJSON_IsArray(ids)) return fail(err, errlen, t->path, "TemplateProcessing: special token \"%s\" is not in special_tokens", name);
            ti->is_special = 1;
            ti->ids = malloc((size_t)(cJSON_GetArraySize(ids) + 1) * sizeof *ti->ids);
            if (!ti->ids) return fail(err, errlen, t->path, "out of memory", NULL);
            cJSON_ArrayForEach(x, ids) {
                if (!cJSON_IsNumber(x)) return fail(err, errlen, t->path, "TemplateProcessing: special token \"%s\" has a non-numeric id", name);
                ti->ids[ti->nids++] = (int32_t)x->valuedouble;
            }
            if (ti->nids > 0) {
                if (!seen_seq && t->bos_id < 0) {
                    t->bos_id = ti->ids[0];
                    t->adds_bos = 1;
                }
                if (seen_seq) t->eos_id = ti->ids[ti->nids - 1];
            }
        } else {
            return fail(err, errlen, t->path, "TemplateProcessing: template item is neither SpecialToken nor Sequence", NULL);
        }
        k++;
        t->ntmpl = k;
    }
    return 0;
}

static int load_post(tokenizer *t, const cJSON *o, char *err, size_t errlen) {
    if (!o || cJSON_IsNull(o)) return 0;
    const char *type = jstr(o, "type");
    if (!type) return fail(err, errlen, t->path, "post_processor without a \"type\"", NULL);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "processors"), *it;
        cJSON_ArrayForEach(it, list) if (load_post(t, it, err, errlen)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (jbool(o, "trim_offsets", 1)) {
            t->bytelevel_trim = 1;
            t->bytelevel_trim_prefix = jbool(o, "add_prefix_space", 1);
        }
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        if (t->tmpl) return fail(err, errlen, t->path, "more than one TemplateProcessing post-processor", NULL);
        return load_template(t, o, err, errlen);
    }
    return fail(err, errlen, t->path,
                "unsupported post_processor \"%s\" (quarry implements TemplateProcessing, ByteLevel and Sequence)", type);
}

static int load_model(tokenizer *t, const cJSON *m, char *err, size_t errlen) {
    const char *type = jstr(m, "type");
    if (type && strcmp(type, "BPE"))
        return fail(err, errlen, t->path, "unsupported model \"%s\" (quarry implements BPE)", type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return fail(err, errlen, t->path, "model: BPE needs a \"vocab\" object and a \"merges\" array", NULL);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(m, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return fail(err, errlen, t->path, "model: BPE dropout is not supported (training-time randomness; set it to null)", NULL);
    const char *cp = jstr(m, "continuing_subword_prefix"), *ews = jstr(m, "end_of_word_suffix");
    if (cp && *cp) return fail(err, errlen, t->path, "model: BPE continuing_subword_prefix \"%s\" is not supported", cp);
    if (ews && *ews) return fail(err, errlen, t->path, "model: BPE end_of_word_suffix \"%s\" is not supported", ews);
    bpe_model *b = &t->bpe;
    int nv = cJSON_GetArraySize(vocab);
    if (strmap_init(&b->vocab, (size_t)nv + 16)) return fail(err, errlen, t->path, "out of memory", NULL);
    const cJSON *it;
    int32_t maxid = -1;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 1e8)
            return fail(err, errlen, t->path, "model: vocab entry \"%s\" has no valid id", it->string);
        int32_t id = (int32_t)it->valuedouble;
        if (strmap_put(&b->vocab, it->string, strlen(it->string), id)) return fail(err, errlen, t->path, "out of memory", NULL);
        if (id > maxid) maxid = id;
    }
    uint32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *c;
        size_t al, cl;
        char *sp = NULL;
        if (cJSON_IsString(it)) {
            if (!strncmp(it->valuestring, "#version", 8)) continue;
            a = it->valuestring;
            sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return fail(err, errlen, t->path, "model: merge \"%s\" is not two tokens separated by one space", a);
            al = (size_t)(sp - a);
            c = sp + 1;
            cl = strlen(c);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            c = cJSON_GetArrayItem(it, 1)->valuestring;
            al = strlen(a);
            cl = strlen(c);
        } else {
            return fail(err, errlen, t->path, "model: a merge is neither \"a b\" nor [\"a\", \"b\"]", NULL);
        }
        int32_t ia = strmap_get(&b->vocab, a, al), ic = strmap_get(&b->vocab, c, cl);
        char *cat = malloc(al + cl + 1);
        if (!cat) return fail(err, errlen, t->path, "out of memory", NULL);
        memcpy(cat, a, al);
        memcpy(cat + al, c, cl);
        cat[al + cl] = 0;
        int32_t im = strmap_get(&b->vocab, cat, al + cl);
        if (ia < 0 || ic < 0 || im < 0) {
            int r = fail(err, errlen, t->path, "model: merge of \"%s\" names a token that is not in the vocab", cat);
            free(cat);
            return r;
        }
        free(cat);
        if (bpe_pairmap_put(&b->merges, ia, ic, rank++, im)) return fail(err, errlen, t->path, "out of memory", NULL);
    }
    if (bpe_build_adjacent(b)) return fail(err, errlen, t->path, "out of memory", NULL);
    b->fuse_unk = jbool(m, "fuse_unk", 0);
    b->byte_fallback = jbool(m, "byte_fallback", 0);
    b->ignore_merges = jbool(m, "ignore_merges", 0);
    b->unk_id = -1;
    const char *unk = jstr(m, "unk_token");
    if (unk) {
        b->unk_id = strmap_get(&b->vocab, unk, strlen(unk));
        if (b->unk_id < 0) return fail(err, errlen, t->path, "model: unk_token \"%s\" is not in the vocab", unk);
    }
    for (int i = 0; i < 256; i++) {
        char code[8];
        snprintf(code, sizeof code, "<0x%02X>", i);
        b->byte_ids[i] = strmap_get(&b->vocab, code, 6);
    }
    if (pthread_mutex_init(&b->cache_lock, NULL) != 0) return fail(err, errlen, t->path, "cannot create a mutex", NULL);
    if (pthread_key_create(&b->cache_key, bpe_cache_thread_exit) != 0) {
        pthread_mutex_destroy(&b->cache_lock);
        return fail(err, errlen, t->path, "cannot create a thread key", NULL);
    }
    b->cache_key_ok = 1;
    t->vocab_size = maxid + 1;
    return 0;
}

// As HF's AddedVocabulary::add_tokens when a tokenizer.json is read: the "id" fields are not
// trusted; a token keeps its id from an earlier added token or the model vocab, otherwise it
// gets the next id after the model vocab (in file order). A later duplicate replaces the flags.
static int load_added(tokenizer *t, const cJSON *list, char *err, size_t errlen) {
    int n = cJSON_GetArraySize(list);
    t->added = calloc((size_t)(n > 0 ? n : 1), sizeof *t->added);
    if (!t->added || strmap_init(&t->added_map, (size_t)n + 16) || strmap_init(&t->special_set, (size_t)n + 16))
        return fail(err, errlen, t->path, "out of memory", NULL);
    int32_t next_id = (int32_t)t->bpe.vocab.n;
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        const char *c = jstr(it, "content");
        if (!c) return fail(err, errlen, t->path, "added_tokens: an entry lacks \"content\"", NULL);
        if (!*c) continue;
        added_token a = {0};
        a.len = strlen(c);
        a.single_word = jbool(it, "single_word", 0);
        a.lstrip = jbool(it, "lstrip", 0);
        a.rstrip = jbool(it, "rstrip", 0);
        a.normalized = jbool(it, "normalized", 1);
        a.special = jbool(it, "special", 0);
        int32_t id = strmap_get(&t->added_map, c, a.len);
        int slot = -1;
        if (id >= 0)
            for (int k = 0; k < t->nadded; k++)
                if (t->added[k].id == id) slot = k;
        if (slot >= 0) {
            const added_token *o = &t->added[slot];
            if (o->len == a.len && !memcmp(o->content, c, a.len) && o->single_word == a.single_word &&
                o->lstrip == a.lstrip && o->rstrip == a.rstrip && o->normalized == a.normalized && o->special == a.special)
                continue;
        }
        if (id < 0) id = strmap_get(&t->bpe.vocab, c, a.len);
        if (id < 0) id = next_id++;
        a.id = id;
        a.content = strdup(c);
        if (!a.content) return fail(err, errlen, t->path, "out of memory", NULL);
        if (slot < 0)
            for (int k = 0; k < t->nadded; k++)
                if (t->added[k].id == id) slot = k;
        if (slot >= 0) {
            free(t->added[slot].content);
            t->added[slot] = a;
        } else {
            t->added[t->nadded++] = a;
        }
        if (strmap_put(&t->added_map, c, a.len, id)) return fail(err, errlen, t->path, "out of memory", NULL);
        if (a.special && strmap_put(&t->special_set, c, a.len, 1)) return fail(err, errlen, t->path, "out of memory", NULL);
        if (id + 1 > t->vocab_size) t->vocab_size = id + 1;
    }
    return 0;
}

// The tries: raw text for normalized=false tokens, normalized text for the others (their
// content normalized the same way, as HF's normalized_cache).
static int build_tries(tokenizer *t, char *err, size_t errlen) {
    t->norm_content = calloc((size_t)t->nadded + 1, sizeof *t->norm_content);
    t->norm_len = calloc((size_t)t->nadded + 1, sizeof *t->norm_len);
    if (!t->norm_content || !t->norm_len) return fail(err, errlen, t->path, "out of memory", NULL);
    for (int i = 0; i < t->nadded; i++) {
        added_token *a = &t->added[i];
        if (!a->normalized) {
            if (trie_add(&t->raw_trie, a->content, a->len, i)) return fail(err, errlen, t->path, "out of memory", NULL);
            continue;
        }
        tk_work w = {0};
        w.region = onig_region_new();
        piece pc = {0, a->len, -1, 0, 0};
        int rc = !w.region || work_reserve(&w, a->len + 1);
        if (!rc) {
            memcpy(w.buf, a->content, a->len);
            for (size_t k = 0; k < a->len; k++) {
                w.al[2 * k] = (int32_t)k;
                w.al[2 * k + 1] = (int32_t)k + 1;
            }
            w.len = a->len;
            rc = normalize_piece(t, &w, &pc);
        }
        int differs = !rc && (pc.len != a->len || memcmp(w.buf + pc.off, a->content, a->len) != 0);
        if (differs) {
            t->norm_content[i] = malloc(pc.len + 1);
            rc = !t->norm_content[i];
            if (!rc) {
                memcpy(t->norm_content[i], w.buf + pc.off, pc.len);
                t->norm_content[i][pc.len] = 0;
                t->norm_len[i] = pc.len;
            }
        }
        if (!rc) rc = differs ? trie_add(&t->norm_trie, t->norm_content[i], t->norm_len[i], i)
                              : trie_add(&t->norm_trie, a->content, a->len, i);
        work_free(&w);
        if (rc) return fail(err, errlen, t->path, "cannot normalize added token \"%s\"", a->content);
    }
    return 0;
}

static int build_id_table(tokenizer *t, char *err, size_t errlen) {
    int n = t->vocab_size > 0 ? t->vocab_size : 1;
    t->id_to_tok = calloc((size_t)n, sizeof *t->id_to_tok);
    t->id_len = calloc((size_t)n, sizeof *t->id_len);
    t->id_special = calloc((size_t)n, 1);
    t->id_owned = calloc((size_t)n, 1);
    if (!t->id_to_tok || !t->id_len || !t->id_special || !t->id_owned) return fail(err, errlen, t->path, "out of memory", NULL);
    const strmap *v = &t->bpe.vocab;
    // Vocab strings are borrowed from the vocab map; added tokens' are owned (id_owned).
    for (size_t e = 0; e < v->n; e++) {
        int32_t id = v->vals[e];
        if (id < 0 || id >= t->vocab_size) continue;
        t->id_to_tok[id] = (char *)v->keys[e];
        t->id_len[id] = v->klen[e];
    }
    // Added tokens take precedence, as HF's decode asks the added vocabulary first; a
    // normalized one decodes to its normalized form (HF's normalized_cache).
    for (int i = 0; i < t->nadded; i++) {
        const added_token *a = &t->added[i];
        const char *s = t->norm_content[i] ? t->norm_content[i] : a->content;
        size_t len = t->norm_content[i] ? t->norm_len[i] : a->len;
        if (t->id_owned[a->id]) free(t->id_to_tok[a->id]);
        t->id_to_tok[a->id] = malloc(len + 1);
        t->id_owned[a->id] = 1;
        if (!t->id_to_tok[a->id]) return fail(err, errlen, t->path, "out of memory", NULL);
        memcpy(t->id_to_tok[a->id], s, len);
        t->id_to_tok[a->id][len] = 0;
        t->id_len[a->id] = len;
    }
    // skip_special_tokens drops a token whose string is a special token's content.
    for (int i = 0; i < t->vocab_size; i++)
        if (t->id_to_tok[i] && strmap_get(&t->special_set, t->id_to_tok[i], t->id_len[i]) >= 0) t->id_special[i] = 1;
    return 0;
}

static int32_t find_named(const tokenizer *t, const char *const *names) {
    for (int i = 0; names[i]; i++) {
        int32_t id = tokenizer_token_to_id(t, names[i]);
        if (id >= 0) return id;
    }
    return -1;
}

tokenizer *tokenizer_load(const char *path, char *err, size_t errlen) {
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->bos_id = t->eos_id = -1;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(t->path, sizeof t->path, "%s/tokenizer.json", path);
    else snprintf(t->path, sizeof t->path, "%s", path);
    size_t len;
    char *text = NULL;
    if (fileio_read_all(t->path, &text, &len, err, errlen)) {
        tokenizer_free(t);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not valid JSON (a tokenizer.json is one JSON object)", t->path);
        cJSON_Delete(root);
        tokenizer_free(t);
        return NULL;
    }
    int rc = 0;
    if (!jnull(root, "truncation"))
        rc = fail(err, errlen, t->path, "\"truncation\" is set; quarry never truncates inside the tokenizer (set it to null)", NULL);
    if (!rc && !jnull(root, "padding"))
        rc = fail(err, errlen, t->path, "\"padding\" is set; quarry never pads inside the tokenizer (set it to null)", NULL);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!rc && !cJSON_IsObject(model)) rc = fail(err, errlen, t->path, "no \"model\" object", NULL);
    if (!rc) rc = load_model(t, model, err, errlen);
    if (!rc) rc = load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err, errlen);
    if (!rc) rc = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err, errlen);
    if (!rc) rc = load_pre(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err, errlen);
    if (!rc) rc = load_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), err, errlen);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!rc && dec && !cJSON_IsNull(dec)) {
        t->has_decoder = 1;
        rc = load_decoder(t, dec, err, errlen);
    }
    cJSON_Delete(root);
    if (!rc) rc = build_tries(t, err, errlen);
    if (!rc) rc = build_id_table(t, err, errlen);
    if (rc) {
        tokenizer_free(t);
        return NULL;
    }
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", NULL};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", NULL};
    if (t->bos_id < 0) t->bos_id = find_named(t, bos_names);
    if (t->eos_id < 0) t->eos_id = find_named(t, eos_names);
    return t;
}
