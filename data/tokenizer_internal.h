// data/tokenizer_internal.h — what tokenizer.c, tokenizer_bpe.c and tokenizer_pretok.c share:
// the string→id table, the BPE model, the normalizer / pre-tokenizer steps, and the per-call
// work buffers in which a text is split into pieces that each carry their own alignment.
#pragma once
#include <oniguruma.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

// Open-addressing table from byte strings to int32 (token → id); keys are copied.
typedef struct {
    uint32_t *slots;    // index+1 into keys/vals, 0 = empty; capacity a power of two
    size_t cap, n, kcap;   // kcap: room in keys/klen/vals
    const char **keys;  // n entries, each NUL-terminated, in `chunks`
    uint32_t *klen;
    int32_t *vals;
    char **chunks;      // key storage: few large blocks instead of one malloc per key
    int nchunks;
    size_t chunk_used, chunk_cap;
} strmap;

int strmap_init(strmap *m, size_t expected);
void strmap_free(strmap *m);
int strmap_put(strmap *m, const char *k, size_t klen, int32_t v);   // replaces; 0 ok, -1 OOM
int32_t strmap_get(const strmap *m, const char *k, size_t klen);    // -1 when absent
uint64_t tk_hash(const void *p, size_t n);

// (left id, right id) → (rank, merged id), open addressing on a 64-bit key.
typedef struct {
    uint64_t *keys;     // (left << 32 | right) + 1; 0 = empty
    uint32_t *rank;
    int32_t *merged;
    size_t cap, n;
} pairmap;

struct bpe_cache;

// Set of (codepoint, codepoint) pairs that occur adjacent inside some vocab token. Between two
// in-vocab characters whose pair is absent no merge can ever happen, so long words are cut
// there and their pieces merged (and cached) independently with the same result.
typedef struct {
    uint64_t *keys;     // (a << 32 | b) + 1; 0 = empty
    size_t cap, n;
} cpset;

typedef struct {
    strmap vocab;
    pairmap merges;
    int32_t unk_id;           // -1: no unk_token
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256];    // <0xXX> ids for byte_fallback, -1 when absent
    cpset adjacent;           // character pairs inside vocab tokens
    pthread_key_t cache_key;  // one word → ids cache per thread
    int cache_key_ok;
    pthread_mutex_t cache_lock;
    struct bpe_cache **caches;  // the caches of live threads, the rest freed with the model
    int ncaches, caches_cap;
} bpe_model;

// Appends the ids of one word (a pre-tokenized piece, len bytes) to out_ids, and to out_len
// each token's length in bytes of the word. Returns the count or -1 (OOM / unk not in vocab).
int bpe_word(const bpe_model *m, const char *w, size_t len, int32_t **ids, int32_t **lens,
             int *n, int *cap);
void bpe_model_free(bpe_model *m);
void bpe_cache_thread_exit(void *cache);   // cache_key's destructor: unlists and frees a thread's cache
int bpe_pairmap_put(pairmap *p, int32_t a, int32_t b, uint32_t rank, int32_t merged);
int bpe_build_adjacent(bpe_model *m);   // after the vocab is loaded; 0 ok, -1 OOM

// A piece of the text being encoded: bytes [off, off+len) of the work buffer; al[2*i], al[2*i+1]
// is the [start, end) byte range in the original input that buffer byte i came from.
typedef struct {
    size_t off, len;
    int32_t added_id;   // ≥ 0: an added token already (not normalized, not split further)
    int32_t orig_start, orig_end;   // for added tokens: their range in the input
} piece;

typedef struct {
    char *buf;
    int32_t *al;        // 2 per byte of buf
    size_t len, cap;
    piece *p;           // current pieces
    int np, pcap;
    piece *q;           // pieces being built by a step
    int nq, qcap;
    OnigRegion *region;
} tk_work;

int work_reserve(tk_work *w, size_t extra);   // room for `extra` more bytes in buf/al
int work_push(tk_work *w, piece pc);          // onto q
void work_swap(tk_work *w);                   // q becomes p, p is emptied into q

typedef enum { PAT_STRING, PAT_REGEX } pattern_kind;
typedef struct {
    pattern_kind kind;
    char *str;          // PAT_STRING literal
    size_t slen;
    regex_t *re;        // PAT_REGEX
} pattern;

int pattern_compile(pattern *p, const char *string, const char *regex, char *err, size_t errlen);
void pattern_free(pattern *p);
// Finds the non-overlapping matches in s as HF's Pattern::find_matches: ranges cover all of s,
// each flagged as a match or not. ranges: 3 ints per entry (start, end, is_match).
int pattern_find(const pattern *p, OnigRegion *reg, const char *s, size_t len, int **ranges,
                 int *n, int *cap);

typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE } norm_kind;
typedef struct {
    norm_kind kind;
    char *text;         // PREPEND: what to prepend; REPLACE: the content
    size_t tlen;
    pattern pat;        // REPLACE
} norm_step;

typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef enum { PRE_BYTELEVEL, PRE_SPLIT, PRE_METASPACE, PRE_DIGITS } pre_kind;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;
typedef struct {
    pre_kind kind;
    int add_prefix_space, use_regex;   // BYTELEVEL
    pattern pat;                       // SPLIT (BYTELEVEL with use_regex: the GPT-2 regex)
    split_behavior behavior;
    int invert;
    char repl[8];                      // METASPACE replacement (UTF-8), its length
    size_t repl_len;
    prepend_scheme scheme;
    int split;
    int individual_digits;             // DIGITS
} pre_step;

// Normalizes the piece at w->p[i] in place of the buffer (appends its new text, updates off/len).
int norm_apply(const norm_step *s, tk_work *w, piece *pc);
// Applies one pre-tokenizer to every non-added piece of w->p (result back in w->p).
int pre_apply(const pre_step *s, tk_work *w);
void pre_step_free(pre_step *s);
void norm_step_free(norm_step *s);

// The GPT-2 byte ↔ unicode table used by ByteLevel.
extern const uint16_t tk_byte_to_cp[256];
int tk_cp_to_byte(uint32_t cp);   // -1 when cp is not one of the 256
int tk_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);   // bytes used, 0 invalid
int tk_utf8_encode(uint32_t cp, char *out);
int tk_is_whitespace(uint32_t cp);   // Unicode White_Space
int tk_is_word(uint32_t cp);         // regex \w (Unicode)
int tk_onig_init(char *err, size_t errlen);
