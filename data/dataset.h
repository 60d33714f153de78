// data/dataset.h — tokenized examples (a memory-mapped token store) → packed training sequences of max_seq_len with document
// boundaries (no attention across documents, RoPE positions restart per document), a seeded
// shuffle per epoch, and a validation split. Every record's fate at max_seq_len is accounted
// for (trained whole, truncated, or dropped and why) so that none disappears silently.
#pragma once
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *ids;
    uint8_t *mask;     // 1 = token is trained (it is a prediction target), per id
    int len;
    long line;         // source line, for messages
    int keep_head;     // leading tokens that left truncation keeps: 1 when ids[0] is the BOS token
} example;

typedef enum { ON_LONG_TRUNCATE = 0, ON_LONG_ERROR } on_long_policy;

// Which end of a record too long for max_seq_len goes.
//   right: keep ids[0 .. T) (the start: prompt first; an answer beyond T is lost).
//   left:  keep the first keep_head tokens (BOS) and the last T − keep_head tokens, so the
//          answer and the end of the prompt stay and the prompt's start goes. The token after
//          the cut is predicted from BOS alone, as with any left truncation.
typedef enum { TRUNCATE_RIGHT = 0, TRUNCATE_LEFT } truncate_side;

typedef struct {
    int seq_len;
    truncate_side side;
    int side_explicit;        // the user chose the side (--truncate): dropping records is accepted
    on_long_policy on_long;
} truncation;

// "right" | "left" → side; -1 otherwise.
int truncate_side_parse(const char *name);
const char *truncate_side_name(truncate_side side);

typedef enum {
    FATE_WHOLE = 0,          // trained as it is
    FATE_TRUNCATED,          // cut to seq_len, some answer tokens left
    FATE_DROPPED_EMPTY,      // fewer than 2 tokens: nothing to predict
    FATE_DROPPED_NO_ANSWER,  // no trained token even uncut
    FATE_DROPPED_CUT,        // truncation left no trained token
} example_fate;

const char *example_fate_name(example_fate f);   // "whole", "truncated", "empty", "no_answer", "answer_cut"

// "Answer tokens" are the trained targets: positions t ≥ 1 with mask[t] (the first token is
// never a target).
typedef struct {
    long line;
    example_fate fate;
    int tokens, kept_tokens;    // before and after truncation
    int answer, kept_answer;    // answer tokens before and after truncation
} example_note;

typedef struct {
    int seq_len;
    truncate_side side;
    long records, whole, truncated, dropped, by_fate[5];
    long long answer_tokens, kept_answer_tokens;   // over all records, dropped ones included
    example_note *notes;     // the truncated and dropped records, in file order
    long nnotes, cap;
} example_report;

// Truncates e in place to at most t->seq_len tokens on t->side and fills *note. Returns the
// fate; a dropped example is left to the caller to free. t->on_long is not applied here.
example_fate example_fit(example *e, const truncation *t, example_note *note);
// Counts a note (the truncated and dropped ones are also kept). 0, or -1 out of memory.
int example_report_add(example_report *r, const example_note *note);
void example_report_free(example_report *r);
// Refuses what the user did not choose: records the default right truncation would drop (with
// the count, the first lines and the three ways out), and a source with no record left. 0 or -1.
int example_report_check(const example_report *r, const truncation *t, const char *source, char *err, size_t errlen);
// One summary line ("prefix: SOURCE: N records at --max-seq-len T (--truncate right): ...") and
// then up to max_listed of the truncated and dropped records as SOURCE:LINE: what happened.
void example_report_print(const example_report *r, const char *source, const char *prefix, int max_listed, FILE *out);
// Counts, and the dropped and truncated records (line, tokens, answer tokens), at most max_listed
// of each (the number left out is given).
cJSON *example_report_to_json(const example_report *r, int max_listed);

typedef struct token_store token_store;

// The kept documents of a token store (data/token_store.h) at seq_len: an index, no tokens. A
// document longer than seq_len is read through its truncation view (the kept head, then the
// kept tail) straight from the mapping.
typedef struct {
    token_store *store;  // a shared reference
    int32_t *docs;       // (n) the store's documents kept, in file order
    int n;
    int seq_len;
    truncate_side side;
    int truncated;       // examples cut to seq_len (and kept)
    long total_tokens;
    long trained_tokens;
    example_report report;   // what happened to every record of the source
} example_set;

// The documents docs[0..n) of st (all of them when docs is NULL) at t: longer ones are truncated
// on t->side, or with ON_LONG_ERROR refused with the first offending line in err. Documents left
// with nothing to train on are dropped and accounted for in s->report; example_report_check's
// refusals apply (-1 with the message in err). On success s holds a reference to st.
// Adds the fate at t of every document of st, in file order, to r (no refusal applied): what
// example_set_open accounts, for a report alone (`quarry validate --max-seq-len`). 0, or -1 out of memory.
int example_report_store(example_report *r, const token_store *st, const truncation *t);
int example_set_open(example_set *s, token_store *st, const int32_t *docs, int n, const truncation *t,
                     const char *source_name, char *err, size_t errlen);
// The same from examples in memory (tests, small inputs): ex[0..n) go into a private store
// and are freed, whatever the outcome.
int example_set_init(example_set *s, example *ex, int n, const truncation *t, const char *source_name,
                     char *err, size_t errlen);
void example_set_free(example_set *s);
long example_set_line(const example_set *s, int i);   // the source line of the i-th kept document
// The i-th kept document as trained (truncated to seq_len): its length; ids and mask (seq_len
// each, either may be NULL) get its tokens and loss mask.
int example_set_view(const example_set *s, int i, int32_t *ids, uint8_t *mask);

// Splits off a validation share (fraction in (0,1)) chosen by a seeded shuffle; the rest stays
// in s (with the report of the whole source). Returns 0, or -1 when either side would be empty,
// saying how many records were dropped before the split.
int example_set_split(example_set *s, example_set *val, double fraction, uint64_t seed,
                      char *err, size_t errlen);

// The rows of one epoch: examples shuffled with (seed, epoch) (no shuffle when shuffle == 0),
// packed greedily in that order (first fit into the current row, a new row when it does not
// fit). Deterministic: the same (seed, epoch) gives the same rows, so a resumed run needs only
// the epoch and the row cursor. Only the order is kept (4 bytes a document, 4 a row); rows are
// read from the mapping when a batch is filled. A row: T positions; unused tail positions are
// padding (ids 0, target −1, their own document so they see nothing real).
typedef struct {
    const example_set *set;   // borrowed: outlives the epoch
    int32_t *order;           // (n) positions in set->docs, in packed order
    int32_t *row_first;       // (nrows + 1) each row's first entry of order
    int nrows;
    int seq_len;
} packed_epoch;

int dataset_pack_epoch(const example_set *s, uint64_t seed, int epoch, int shuffle, packed_epoch *out,
                       char *err, size_t errlen);
void packed_epoch_free(packed_epoch *e);
int dataset_row_used(const packed_epoch *e, int r);   // positions of row r holding real tokens

// Fills rows [first, first+count) into contiguous batch arrays of count*T each (host memory):
// ids (token ids), targets (ids[t+1] of the same document when that token is trained, else −1),
// pos (position within its document), doc_start (index where t's document begins in its row);
// rows past the end are filled as padding. Returns the trained-token count of the batch.
long dataset_fill_batch(const packed_epoch *e, int first, int count, int32_t *ids, int32_t *targets,
                        int32_t *pos, int32_t *doc_start);
