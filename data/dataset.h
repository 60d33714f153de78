// data/dataset.h — tokenized examples → packed training sequences of max_seq_len with document
// boundaries (no attention across documents, RoPE positions restart per document), a seeded
// shuffle per epoch, and a validation split.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *ids;
    uint8_t *mask;     // 1 = token is trained (it is a prediction target), per id
    int len;
    long line;         // source line, for messages
} example;

typedef enum { ON_LONG_TRUNCATE = 0, ON_LONG_ERROR } on_long_policy;

// One packed row: T positions; unused tail positions are padding (ids 0, target −1, their own
// document so they see nothing real).
typedef struct {
    int32_t *ids;        // (T)
    int32_t *targets;    // (T): ids[t+1] of the same document when that token is trained, else −1
    int32_t *pos;        // (T): position within its document
    int32_t *doc_start;  // (T): index where t's document begins in this row
    int trained;         // number of targets ≥ 0
    int used;            // positions holding real tokens (the rest is padding)
} packed_row;

typedef struct {
    example *examples;   // owned
    int n;
    int seq_len;
    int truncated;       // examples cut to seq_len
    long total_tokens;
    long trained_tokens;
} example_set;

// Takes ownership of ex[0..n). Examples longer than seq_len are truncated (counted) or, with
// ON_LONG_ERROR, refused with the first offending line in err. Empty examples are dropped.
int example_set_init(example_set *s, example *ex, int n, int seq_len, on_long_policy policy,
                     const char *source_name, char *err, size_t errlen);
void example_set_free(example_set *s);

// Splits off a validation share (fraction in (0,1)) chosen by a seeded shuffle; the rest stays
// in s. Returns 0, or -1 when either side would be empty.
int example_set_split(example_set *s, example_set *val, double fraction, uint64_t seed,
                      char *err, size_t errlen);

// The rows of one epoch: examples shuffled with (seed, epoch) (no shuffle when shuffle == 0),
// packed greedily in that order (first fit into the current row, a new row when it does not
// fit). Deterministic: the same (seed, epoch) gives the same rows, so a resumed run needs only
// the epoch and the row cursor.
typedef struct {
    packed_row *rows;
    int nrows;
    int seq_len;
    int32_t *storage;    // one allocation for all rows
} packed_epoch;

int dataset_pack_epoch(const example_set *s, uint64_t seed, int epoch, int shuffle, packed_epoch *out,
                       char *err, size_t errlen);
void packed_epoch_free(packed_epoch *e);

// Copies rows [first, first+count) into contiguous batch arrays of count*T each (host memory),
// rows past the end are filled as padding. Returns the trained-token count of the batch.
long dataset_fill_batch(const packed_epoch *e, int first, int count, int32_t *ids, int32_t *targets,
                        int32_t *pos, int32_t *doc_start);
