// data/token_store.h — the training data's on-disk form: tokenized documents in one file,
// memory-mapped read-only, so that memory does not grow with the corpus (packing and batches
// read the mapping; nothing copies the tokens). The token cache names these files by key
// (data/token_cache.h); with the cache off the same file is private (unlinked once mapped).
//
// File (little-endian, host layout):
//   header (72 B): magic "QTOKS2\n\0", version, id_bytes (2 when the vocabulary has ≤ 65,536
//                  ids, else 4), ndocs, ntokens, nruns, then the byte offsets of the three
//                  sections and the file size (a truncated file is caught by it)
//   ids   (id_bytes × ntokens, padded to 8): every document's ids, one after the other
//   runs  (nruns × (start, end) uint32): the loss mask as runs of trained positions [start, end)
//          per document. Spans, not bits: continued pre-training trains every token (one run per
//          document, 8 B against len/8 B of bits) and chat data a few answer turns; fates and
//          packing read only the runs and the index, never the ids.
//   index (ndocs × 32 B): token offset, first run, source line, length, runs << 1 | keep_head
// The writer appends documents one at a time (memory independent of the corpus: ids go to the
// file, runs and index to two unlinked side files copied in at commit) and commits by rename.
// Opening checks the header, the sections' bounds and every index entry: a damaged file is a
// miss (NULL with the reason), never a crash.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct token_store token_store;
typedef struct token_store_writer token_store_writer;

typedef struct {
    uint64_t tok_off;     // first token, in tokens from the ids section
    uint64_t run_first;   // first run, in runs
    int64_t line;         // the data file's line, for messages
    uint32_t len;         // tokens
    uint32_t runs_keep;   // runs << 1 | keep_head (1: ids[0] is BOS, which left truncation keeps)
} token_store_doc;

// path: the file to create (written as path.tmp.PID, renamed at commit, mode 0600), or NULL for a
// private file in $TMPDIR (else /var/tmp, else /tmp) that is unlinked once mapped. vocab_size
// picks the id width.
token_store_writer *token_store_writer_open(const char *path, int vocab_size, char *err, size_t errlen);
// Appends one document: ids[len], mask[len] (nonzero = trained), its line and keep_head.
// 0, or -1 with the reason in the writer (an id outside the vocabulary, a write error); after
// -1 only _abort is allowed.
int token_store_writer_append(token_store_writer *w, const int32_t *ids, const uint8_t *mask, int len, long line,
                              int keep_head);
const char *token_store_writer_error(const token_store_writer *w);
// Finishes the file, renames it into place and maps it: the store (the writer is freed either way),
// or NULL with err.
token_store *token_store_writer_commit(token_store_writer *w, char *err, size_t errlen);
// Drops the temporary file and frees the writer (NULL is fine).
void token_store_writer_abort(token_store_writer *w);

// Maps an existing file; NULL with err when it is absent, short or damaged.
token_store *token_store_open(const char *path, char *err, size_t errlen);
// Stores are shared by reference (a training and a validation set over one file).
token_store *token_store_retain(token_store *s);
void token_store_release(token_store *s);   // NULL is fine; unmaps at the last reference

long token_store_ndocs(const token_store *s);
long long token_store_ntokens(const token_store *s);
int token_store_id_bytes(const token_store *s);
const token_store_doc *token_store_doc_at(const token_store *s, long i);
static inline int token_store_doc_len(const token_store_doc *d) { return (int)d->len; }
static inline int token_store_doc_keep_head(const token_store_doc *d) { return (int)(d->runs_keep & 1); }
// Document i's ids [from, from + count) widened to int32 into out.
void token_store_read_ids(const token_store *s, long i, int from, int count, int32_t *out);
// Document i's mask runs: *n pairs (start, end), ascending.
const uint32_t *token_store_runs(const token_store *s, long i, int *n);
// Trained positions of document i in [from, to).
int token_store_mask_count(const token_store *s, long i, int from, int to);
// Document i's mask [from, from + count) as 0/1 bytes into out.
void token_store_read_mask(const token_store *s, long i, int from, int count, uint8_t *out);
