// trainer/examples.h — a Bedrock JSONL file → tokenized training examples (ids + loss mask),
// through the same path for train, eval and validate: data/bedrock (rules, diagnostics),
// data/chat (the model's template and mask), data/tokenizer.
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
} examples_source;

// One valid record → *e (ids, mask, line, keep_head: 1 when it begins with the tokenizer's BOS,
// which left truncation keeps). 0, or -1 with the template's or tokenizer's message in err.
int examples_encode(const examples_source *src, const record *r, example *e, char *err, size_t errlen);

// Reads every record. Invalid records are printed as FILE:LINE: error: … (at most 20) and make
// the call fail (-1), as does any record the template refuses; training never skips data
// silently. On success *out (malloc'ed) holds *n examples in file order.
int examples_load(const examples_source *src, example **out, int *n, char *err, size_t errlen);
