// data/token_cache.h — tokenized examples kept between runs, keyed by the SHA-256 of what
// produced them (the data file, the tokenizer and template files, the template family, its date
// and the masking rule), so a second run over the same data skips tokenization. Files live in
// $QUARRY_CACHE_DIR, else $XDG_CACHE_HOME/quarry/tokens, else ~/.cache/quarry/tokens;
// QUARRY_TOKEN_CACHE=off turns the cache off. A damaged file is a miss, never an error.
#pragma once
#include "chat.h"
#include "dataset.h"

// 0 with the key in key[65]; -1 when a file cannot be hashed (the cache is then not used).
int token_cache_key(const char *data_path, const char *model_dir, const chat_template *tmpl,
                    const chat_options *o, char key[65]);
// 1 when the cache held the examples (*out malloc'ed, *n of them), 0 on a miss.
int token_cache_load(const char *key, example **out, int *n);
// Best effort: a failure to write is reported as a warning and otherwise ignored.
void token_cache_store(const char *key, const example *ex, int n);
