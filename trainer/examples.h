// trainer/examples.h — a Bedrock JSONL file → tokenized training examples (ids + loss mask),
// through the same path for train, eval and validate: data/bedrock (rules, diagnostics),
// data/chat (the model's template and mask), data/tokenizer.
// examples_stream tokenizes on a pool of threads and hands every example to a sink in file
// order, in memory bounded by a few chunks of lines; examples_load collects them into an array.
// Ids, masks and messages are the same at any thread count.
#pragma once
#include "../data/chat.h"
#include "../data/dataset.h"
#include "../data/tokenizer.h"

typedef struct {
    const char *path;
    const tokenizer *tok;
    const chat_template *tmpl;
    chat_options chat;
    int quiet;
    const char *model_dir;     // with it, tokenized examples are cached (data/token_cache.h)
    int allow_extra_keys;      // unknown keys are warnings (as `quarry validate --allow-extra-keys`)
    int threads;               // tokenizing threads (--data-threads); 0 = examples_default_threads()
} examples_source;

// One valid record → *e (ids, mask, line, keep_head: 1 when it begins with the tokenizer's BOS,
// which left truncation keeps). 0, or -1 with the template's or tokenizer's message in err.
int examples_encode(const examples_source *src, const record *r, example *e, char *err, size_t errlen);

// The sink sees every example once, in file order, from the calling thread. e->ids and e->mask
// are freed by the stream after the call (copy what is kept). A non-zero return stops the
// stream: -1 with "FILE:LINE: stopped here: ..." in err (a caller with its own message puts it
// there). threads: tokenizing threads; 0 = $QUARRY_DATA_THREADS, else every online core.
// Invalid records, a template's refusal, no records: as examples_load. Shows a "tokenize"
// progress display (MB of the file) unless src->quiet.
int examples_stream(const examples_source *src, int threads, int (*sink)(void *ctx, const example *e), void *ctx,
                    char *err, size_t errlen);

// The thread count that threads = 0 means (≥ 1).
int examples_default_threads(void);

// Reads every record (tokenizing on src->threads threads). Invalid records are
// printed as FILE:LINE: error: … (at most 20) and make the call fail (-1), as does any record
// the template refuses; training never skips data silently. On success *out (malloc'ed) holds
// *n examples in file order.
int examples_load(const examples_source *src, example **out, int *n, char *err, size_t errlen);
