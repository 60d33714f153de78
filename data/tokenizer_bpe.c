// data/tokenizer_bpe.c — the BPE model as HF `tokenizers` runs it (models/bpe): a word is split
// into characters (or <0xXX> byte tokens, or unk), then the adjacent pair with the lowest merge
// rank (leftmost on ties) is merged until none is left. Words seen before come from a
// per-thread cache, freed when its thread exits (a pool of tokenizing threads per data file
// must not leave its caches behind) or with the model.
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

uint64_t tk_hash(const void *p, size_t n) {
    // FNV-1a over 8-byte words then bytes, finished with a multiply-xorshift.
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull ^ (n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    while (n--) h = (h ^ *s++) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

int strmap_init(strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    m->slots = calloc(cap, sizeof *m->slots);
    m->keys = malloc((expected + 1) * sizeof *m->keys);
    m->klen = malloc((expected + 1) * sizeof *m->klen);
    m->vals = malloc((expected + 1) * sizeof *m->vals);
    if (!m->slots || !m->keys || !m->klen || !m->vals) return -1;
    m->cap = cap;
    m->kcap = expected + 1;
    return 0;
}

void strmap_free(strmap *m) {
    for (int c = 0; c < m->nchunks; c++) free(m->chunks[c]);
    free(m->chunks);
    free(m->slots);
    free(m->keys);
    free(m->klen);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t strmap_find(const strmap *m, const char *k, size_t klen, int *found) {
    size_t mask = m->cap - 1, i = tk_hash(k, klen) & mask;
    while (m->slots[i]) {
        uint32_t e = m->slots[i] - 1;
        if (m->klen[e] == klen && memcmp(m->keys[e], k, klen) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
    *found = 0;
    return i;
}

int32_t strmap_get(const strmap *m, const char *k, size_t klen) {
    if (!m->cap) return -1;
    int found;
    size_t i = strmap_find(m, k, klen, &found);
    return found ? m->vals[m->slots[i] - 1] : -1;
}

int strmap_put(strmap *m, const char *k, size_t klen, int32_t v) {
    int found;
    size_t i = strmap_find(m, k, klen, &found);
    if (found) {
        m->vals[m->slots[i] - 1] = v;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap) {
        // Grow: rehash all entries.
        size_t ncap = m->cap * 2;
        uint32_t *ns = calloc(ncap, sizeof *ns);
        if (!ns) return -1;
        for (size_t e = 0; e < m->n; e++) {
            size_t j = tk_hash(m->keys[e], m->klen[e]) & (ncap - 1);
            while (ns[j]) j = (j + 1) & (ncap - 1);
            ns[j] = (uint32_t)e + 1;
        }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
        i = strmap_find(m, k, klen, &found);
    }
    if (m->n == m->kcap) {
        size_t ncap = m->kcap ? m->kcap * 2 : 16;
        const char **nk = realloc(m->keys, ncap * sizeof *nk);
        if (!nk) return -1;
        m->keys = nk;
        uint32_t *nl = realloc(m->klen, ncap * sizeof *nl);
        if (!nl) return -1;
        m->klen = nl;
        int32_t *nv = realloc(m->vals, ncap * sizeof *nv);
        if (!nv) return -1;
        m->vals = nv;
        m->kcap = ncap;
    }
    // Keys are copied (into the chunks) so the caller's buffer may go away.
    if (!m->nchunks || m->chunk_used + klen + 1 > m->chunk_cap) {
        size_t sz = klen + 1 > (1u << 20) ? klen + 1 : (1u << 20);
        char **nc = realloc(m->chunks, (size_t)(m->nchunks + 1) * sizeof *nc);
        if (!nc) return -1;
        m->chunks = nc;
        if (!(m->chunks[m->nchunks] = malloc(sz))) return -1;
        m->nchunks++;
        m->chunk_used = 0;
        m->chunk_cap = sz;
    }
    char *copy = m->chunks[m->nchunks - 1] + m->chunk_used;
    m->chunk_used += klen + 1;
    memcpy(copy, k, klen);
    copy[klen] = 0;
    m->keys[m->n] = copy;
    m->klen[m->n] = (uint32_t)klen;
    m->vals[m->n] = v;
    m->slots[i] = (uint32_t)m->n + 1;
    m->n++;
    return 0;
}

int bpe_pairmap_put(pairmap *p, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    if ((p->n + 1) * 2 > p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 1024;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        uint32_t *nr = malloc(ncap * sizeof *nr);
        int32_t *nm = malloc(ncap * sizeof *nm);
        if (!nk || !nr || !nm) {
            free(nk);
            free(nr);
            free(nm);
            return -1;
        }
        for (size_t i = 0; i < p->cap; i++) {
            if (!p->keys[i]) continue;
            size_t j = tk_hash(&p->keys[i], 8) & (ncap - 1);
            while (nk[j]) j = (j + 1) & (ncap - 1);
            nk[j] = p->keys[i];
            nr[j] = p->rank[i];
            nm[j] = p->merged[i];
        }
        free(p->keys);
        free(p->rank);
        free(p->merged);
        p->keys = nk;
        p->rank = nr;
        p->merged = nm;
        p->cap = ncap;
    }
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t j = tk_hash(&key, 8) & (p->cap - 1);
    while (p->keys[j] && p->keys[j] != key) j = (j + 1) & (p->cap - 1);
    if (!p->keys[j]) p->n++;
    // A pair listed twice keeps its last rank, as HF's HashMap collect does.
    p->keys[j] = key;
    p->rank[j] = rank;
    p->merged[j] = merged;
    return 0;
}

static inline int pair_get(const pairmap *p, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    if (!p->cap) return 0;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t j = tk_hash(&key, 8) & (p->cap - 1);
    while (p->keys[j]) {
        if (p->keys[j] == key) {
            *rank = p->rank[j];
            *merged = p->merged[j];
            return 1;
        }
        j = (j + 1) & (p->cap - 1);
    }
    return 0;
}

// Word → ids cache: open addressing, cleared when full (results never depend on it).
#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_WORD 256
typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len;   // into pool
    uint32_t val_off, nval;      // into vals (id, len pairs)
} cache_entry;

typedef struct bpe_cache {
    bpe_model *owner;          // whose registry lists it (the thread-exit destructor unlists it)
    cache_entry *slots;
    size_t used;
    char *pool;
    size_t pool_len, pool_cap;
    int32_t *vals;
    size_t vals_len, vals_cap;
} bpe_cache;

static void cache_destroy(bpe_cache *c) {
    if (!c) return;
    free(c->slots);
    free(c->pool);
    free(c->vals);
    free(c);
}

static bpe_cache *cache_for_thread(const bpe_model *cm) {
    bpe_model *m = (bpe_model *)cm;   // the cache registry is mutable state behind a const model
    if (!m->cache_key_ok) return NULL;
    bpe_cache *c = pthread_getspecific(m->cache_key);
    if (c) return c;
    c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->owner = m;
    c->slots = calloc(CACHE_SLOTS, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    if (pthread_mutex_lock(&m->cache_lock) != 0) {
        cache_destroy(c);
        return NULL;
    }
    if (m->ncaches == m->caches_cap) {
        int ncap = m->caches_cap ? m->caches_cap * 2 : 8;
        bpe_cache **nc = realloc(m->caches, (size_t)ncap * sizeof *nc);
        if (!nc) {
            pthread_mutex_unlock(&m->cache_lock);
            cache_destroy(c);
            return NULL;
        }
        m->caches = nc;
        m->caches_cap = ncap;
    }
    m->caches[m->ncaches++] = c;
    pthread_mutex_unlock(&m->cache_lock);
    if (pthread_setspecific(m->cache_key, c) != 0) return NULL;   // registered: freed with the model
    return c;
}

void bpe_cache_thread_exit(void *p) {
    bpe_cache *c = p;
    bpe_model *m = c->owner;
    // A thread that ends before the model is freed takes its cache with it. The lock failing
    // leaves the cache listed: the model frees it later.
    if (pthread_mutex_lock(&m->cache_lock) != 0) return;
    for (int i = 0; i < m->ncaches; i++)
        if (m->caches[i] == c) {
            m->caches[i] = m->caches[--m->ncaches];
            cache_destroy(c);
            break;
        }
    pthread_mutex_unlock(&m->cache_lock);
}

static void cache_clear(bpe_cache *c) {
    memset(c->slots, 0, CACHE_SLOTS * sizeof *c->slots);
    c->used = 0;
    c->pool_len = 0;
    c->vals_len = 0;
}

static const cache_entry *cache_get(const bpe_cache *c, uint64_t h, const char *w, size_t len) {
    size_t i = h & (CACHE_SLOTS - 1);
    while (c->slots[i].key_len) {
        const cache_entry *e = &c->slots[i];
        if (e->hash == h && e->key_len == len && memcmp(c->pool + e->key_off, w, len) == 0) return e;
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
    return NULL;
}

static void cache_put(bpe_cache *c, uint64_t h, const char *w, size_t len, const int32_t *ids,
                      const int32_t *lens, int n) {
    if (c->used * 4 >= CACHE_SLOTS * 3 || c->pool_len > (64u << 20)) cache_clear(c);
    if (c->pool_len + len > c->pool_cap) {
        size_t ncap = c->pool_cap ? c->pool_cap * 2 : (1u << 20);
        while (ncap < c->pool_len + len) ncap *= 2;
        char *np = realloc(c->pool, ncap);
        if (!np) return;
        c->pool = np;
        c->pool_cap = ncap;
    }
    if (c->vals_len + 2 * (size_t)n > c->vals_cap) {
        size_t ncap = c->vals_cap ? c->vals_cap * 2 : (1u << 18);
        while (ncap < c->vals_len + 2 * (size_t)n) ncap *= 2;
        int32_t *nv = realloc(c->vals, ncap * sizeof *nv);
        if (!nv) return;
        c->vals = nv;
        c->vals_cap = ncap;
    }
    size_t i = h & (CACHE_SLOTS - 1);
    while (c->slots[i].key_len) i = (i + 1) & (CACHE_SLOTS - 1);
    cache_entry *e = &c->slots[i];
    e->hash = h;
    e->key_off = (uint32_t)c->pool_len;
    e->key_len = (uint32_t)len;
    e->val_off = (uint32_t)c->vals_len;
    e->nval = (uint32_t)n;
    memcpy(c->pool + c->pool_len, w, len);
    c->pool_len += len;
    for (int k = 0; k < n; k++) {
        c->vals[c->vals_len++] = ids[k];
        c->vals[c->vals_len++] = lens[k];
    }
    c->used++;
}

static int out_reserve(int32_t **ids, int32_t **lens, int *cap, int need) {
    if (need <= *cap) return 0;
    int ncap = *cap ? *cap : 64;
    while (ncap < need) ncap *= 2;
    int32_t *ni = realloc(*ids, (size_t)ncap * sizeof *ni);
    if (!ni) return -1;
    *ids = ni;
    int32_t *nl = realloc(*lens, (size_t)ncap * sizeof *nl);
    if (!nl) return -1;
    *lens = nl;
    *cap = ncap;
    return 0;
}

typedef struct {
    int32_t id, len;    // len in bytes; 0 = merged away
    int prev, next;
} symbol;

typedef struct {
    uint32_t rank;
    int pos;
    int32_t merged;
} merge_item;

static inline int item_less(merge_item a, merge_item b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(merge_item *h, int *n, merge_item it) {
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!item_less(it, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static merge_item heap_pop(merge_item *h, int *n) {
    merge_item top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        merge_item best = last;
        if (l < *n && item_less(h[l], best)) {
            m = l;
            best = h[l];
        }
        if (r < *n && item_less(h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0) h[i] = last;
    return top;
}

// Symbols of a word before merging, as BPE::merge_word builds them.
static int word_symbols(const bpe_model *m, const char *w, size_t len, symbol **syms, int *ns) {
    symbol *s = malloc((len + 1) * sizeof *s);
    if (!s) return -1;
    int n = 0;
    int32_t unk_len = -1;   // pending unk (fused) length, -1 none
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int cl = tk_utf8_decode((const unsigned char *)w + i, len - i, &cp);
        if (cl <= 0) cl = 1;   // not reached on valid UTF-8
        int32_t id = strmap_get(&m->vocab, w + i, (size_t)cl);
        if (id >= 0) {
            if (unk_len >= 0) {
                s[n++] = (symbol){m->unk_id, unk_len, 0, 0};
                unk_len = -1;
            }
            s[n++] = (symbol){id, cl, 0, 0};
        } else {
            int done = 0;
            if (m->byte_fallback) {
                int all = 1;
                for (int k = 0; k < cl; k++)
                    if (m->byte_ids[(unsigned char)w[i + k]] < 0) all = 0;
                if (all) {
                    // As HF: byte tokens go in without flushing a pending unk first.
                    for (int k = 0; k < cl; k++) s[n++] = (symbol){m->byte_ids[(unsigned char)w[i + k]], 1, 0, 0};
                    done = 1;
                }
            }
            if (!done && m->unk_id >= 0) {
                if (unk_len >= 0 && m->fuse_unk) {
                    unk_len += cl;
                } else {
                    if (unk_len >= 0) s[n++] = (symbol){m->unk_id, unk_len, 0, 0};
                    unk_len = cl;
                }
            }
        }
        i += (size_t)cl;
    }
    if (unk_len >= 0) s[n++] = (symbol){m->unk_id, unk_len, 0, 0};
    for (int k = 0; k < n; k++) {
        s[k].prev = k - 1;
        s[k].next = k + 1 < n ? k + 1 : -1;
    }
    *syms = s;
    *ns = n;
    return 0;
}

static int merge_all(const bpe_model *m, symbol *s, int n) {
    if (n < 2) return 0;
    merge_item stack_heap[256];
    merge_item *h = stack_heap;
    int hcap = 256, hn = 0;
    if (2 * n + 8 > hcap) {
        // Each merge pushes at most 2 items; n - 1 initial items plus 2 per merge.
        hcap = 3 * n + 8;
        h = malloc((size_t)hcap * sizeof *h);
        if (!h) return -1;
    }
    for (int i = 0; i + 1 < n; i++) {
        uint32_t r;
        int32_t mid;
        if (pair_get(&m->merges, s[i].id, s[i + 1].id, &r, &mid)) heap_push(h, &hn, (merge_item){r, i, mid});
    }
    while (hn > 0) {
        merge_item top = heap_pop(h, &hn);
        symbol *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int nx = cur->next;
        uint32_t r;
        int32_t mid;
        if (!pair_get(&m->merges, cur->id, s[nx].id, &r, &mid) || mid != top.merged) continue;
        cur->id = top.merged;
        cur->len += s[nx].len;
        cur->next = s[nx].next;
        s[nx].len = 0;
        if (cur->next >= 0) s[cur->next].prev = top.pos;
        if (hn + 2 > hcap) {
            int ncap = hcap * 2;
            merge_item *nh = h == stack_heap ? malloc((size_t)ncap * sizeof *nh) : realloc(h, (size_t)ncap * sizeof *nh);
            if (!nh) {
                if (h != stack_heap) free(h);
                return -1;
            }
            if (h == stack_heap) memcpy(nh, stack_heap, sizeof stack_heap);
            h = nh;
            hcap = ncap;
        }
        if (cur->prev >= 0 && pair_get(&m->merges, s[cur->prev].id, cur->id, &r, &mid))
            heap_push(h, &hn, (merge_item){r, cur->prev, mid});
        if (cur->next >= 0 && pair_get(&m->merges, cur->id, s[cur->next].id, &r, &mid))
            heap_push(h, &hn, (merge_item){r, top.pos, mid});
    }
    if (h != stack_heap) free(h);
    return 0;
}

static int cpset_add(cpset *s, uint64_t key) {
    if ((s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 4096;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        if (!nk) return -1;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->keys[i]) continue;
            size_t j = tk_hash(&s->keys[i], 8) & (ncap - 1);
            while (nk[j]) j = (j + 1) & (ncap - 1);
            nk[j] = s->keys[i];
        }
        free(s->keys);
        s->keys = nk;
        s->cap = ncap;
    }
    size_t j = tk_hash(&key, 8) & (s->cap - 1);
    while (s->keys[j] && s->keys[j] != key) j = (j + 1) & (s->cap - 1);
    if (!s->keys[j]) {
        s->keys[j] = key;
        s->n++;
    }
    return 0;
}

static int cpset_has(const cpset *s, uint32_t a, uint32_t b) {
    if (!s->cap) return 0;
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t j = tk_hash(&key, 8) & (s->cap - 1);
    while (s->keys[j]) {
        if (s->keys[j] == key) return 1;
        j = (j + 1) & (s->cap - 1);
    }
    return 0;
}

int bpe_build_adjacent(bpe_model *m) {
    for (size_t e = 0; e < m->vocab.n; e++) {
        const unsigned char *k = (const unsigned char *)m->vocab.keys[e];
        size_t len = m->vocab.klen[e], p = 0;
        uint32_t prev = 0, cp;
        int have = 0;
        while (p < len) {
            int cl = tk_utf8_decode(k + p, len - p, &cp);
            if (cl <= 0) {   // not UTF-8: no safe cut can be vouched for next to it
                have = 0;
                p++;
                continue;
            }
            if (have && cpset_add(&m->adjacent, (((uint64_t)prev << 32) | cp) + 1)) return -1;
            prev = cp;
            have = 1;
            p += (size_t)cl;
        }
    }
    return 0;
}

static int bpe_merge_cached(const bpe_model *m, const char *w, size_t len, int32_t **ids, int32_t **lens,
                            int *n, int *cap);

// Long words (SentencePiece-style pipelines hand BPE whole paragraphs) are cut where no merge
// can cross: between two in-vocab characters that are never adjacent inside a vocab token.
#define CUT_MIN_WORD 64
static int bpe_cut_long(const bpe_model *m, const char *w, size_t len, int32_t **ids, int32_t **lens, int *n,
                        int *cap) {
    size_t seg = 0, p = 0;
    uint32_t prev = 0;
    int prev_in_vocab = 0, total = 0;
    while (p < len) {
        uint32_t cp;
        int cl = tk_utf8_decode((const unsigned char *)w + p, len - p, &cp);
        if (cl <= 0) cl = 1;
        int in_vocab = cl > 0 && strmap_get(&m->vocab, w + p, (size_t)cl) >= 0;
        if (in_vocab && prev_in_vocab && p > seg && !cpset_has(&m->adjacent, prev, cp)) {
            int k = bpe_merge_cached(m, w + seg, p - seg, ids, lens, n, cap);
            if (k < 0) return -1;
            total += k;
            seg = p;
        }
        prev = cp;
        prev_in_vocab = in_vocab;
        p += (size_t)cl;
    }
    int k = bpe_merge_cached(m, w + seg, len - seg, ids, lens, n, cap);
    return k < 0 ? -1 : total + k;
}

int bpe_word(const bpe_model *m, const char *w, size_t len, int32_t **ids, int32_t **lens, int *n,
             int *cap) {
    if (len == 0) return 0;
    if (m->ignore_merges) {
        int32_t id = strmap_get(&m->vocab, w, len);
        if (id >= 0) {
            if (out_reserve(ids, lens, cap, *n + 1)) return -1;
            (*ids)[*n] = id;
            (*lens)[*n] = (int32_t)len;
            (*n)++;
            return 1;
        }
    }
    if (len >= CUT_MIN_WORD) return bpe_cut_long(m, w, len, ids, lens, n, cap);
    return bpe_merge_cached(m, w, len, ids, lens, n, cap);
}

// The merge path for one word (or a cut piece of one), through the thread's cache.
static int bpe_merge_cached(const bpe_model *m, const char *w, size_t len, int32_t **ids, int32_t **lens,
                            int *n, int *cap) {
    bpe_cache *c = len <= CACHE_MAX_WORD ? cache_for_thread(m) : NULL;
    uint64_t h = 0;
    if (c) {
        h = tk_hash(w, len);
        const cache_entry *e = cache_get(c, h, w, len);
        if (e) {
            if (out_reserve(ids, lens, cap, *n + (int)e->nval)) return -1;
            const int32_t *v = c->vals + e->val_off;
            for (uint32_t k = 0; k < e->nval; k++) {
                (*ids)[*n] = v[2 * k];
                (*lens)[*n] = v[2 * k + 1];
                (*n)++;
            }
            return (int)e->nval;
        }
    }
    symbol *s;
    int ns;
    if (word_symbols(m, w, len, &s, &ns)) return -1;
    if (merge_all(m, s, ns)) {
        free(s);
        return -1;
    }
    int start = *n, count = 0;
    if (out_reserve(ids, lens, cap, *n + ns)) {
        free(s);
        return -1;
    }
    for (int k = ns > 0 ? 0 : -1; k >= 0; k = s[k].next) {
        (*ids)[*n] = s[k].id;
        (*lens)[*n] = s[k].len;
        (*n)++;
        count++;
    }
    free(s);
    if (c) cache_put(c, h, w, len, *ids + start, *lens + start, count);
    return count;
}

void bpe_model_free(bpe_model *m) {
    strmap_free(&m->vocab);
    free(m->merges.keys);
    free(m->merges.rank);
    free(m->merges.merged);
    free(m->adjacent.keys);
    for (int i = 0; i < m->ncaches; i++) cache_destroy(m->caches[i]);
    free(m->caches);
    if (m->cache_key_ok) {
        pthread_key_delete(m->cache_key);
        pthread_mutex_destroy(&m->cache_lock);
    }
    memset(m, 0, sizeof *m);
}
