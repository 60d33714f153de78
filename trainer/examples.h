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
} examples_source;

// Reads every record. Invalid records are printed as FILE:LINE: error: … (at most 20) and make
// the call fail (-1), as does any record the template refuses; training never skips data
// silently. On success *out (malloc'ed) holds *n examples in file order.
int examples_load(const examples_source *src, example **out, int *n, char *err, size_t errlen);
