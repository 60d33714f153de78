// data/token_cache.h — tokenized examples (token stores, data/token_store.h) kept between runs, keyed by the SHA-256 of what
// produced them (the data file, the tokenizer and template files, the template family, its date
// and the masking rule), so a second run over the same data skips tokenization. Files live in
// $QUARRY_CACHE_DIR, else $XDG_CACHE_HOME/quarry/tokens, else ~/.cache/quarry/tokens;
// QUARRY_TOKEN_CACHE=off turns the cache off. A damaged file is a miss, never an error.
// The files hold the training text as ids: the directory is 0700 and each file 0600 (a directory
// found more open is chmod'ed, with a note).
#pragma once
#include "chat.h"
#include "dataset.h"

// 0 with the key in key[65]; -1 when a file cannot be hashed (the cache is then not used).
int token_cache_key(const char *data_path, const char *model_dir, const chat_template *tmpl,
                    const chat_options *o, char key[65]);
// The file of key (data/token_store.h's format) into path, its directory made (0700, owner's
// only); -1 when the cache is off or the directory cannot be made (a warning says why).
int token_cache_path(const char *key, char *path, size_t n);
// One tokenization per machine: an exclusive lock on path.lock (data-parallel ranks started as
// processes wait here while the first tokenizes, then map its file). The fd, or -1 (no lock:
// proceed without). _unlock removes the lock file and releases it.
int token_cache_lock(const char *path);
void token_cache_unlock(const char *path, int fd);

// The cache directory into dir; -1 when the cache is off (or no HOME).
int token_cache_dir(char *dir, size_t n);

typedef struct {
    char dir[4096];
    int exists, mode;             // the directory's permission bits when it exists
    long entries;                 // cache files (<sha256>.bin, and temp files of interrupted writes)
    unsigned long long bytes;
} token_cache_usage;
// What the cache holds; -1 with err when it is off or unreadable.
int token_cache_usage_get(token_cache_usage *u, char *err, size_t errlen);
// Deletes the cache's own files (nothing else in the directory); *removed says what went.
int token_cache_clear(token_cache_usage *removed, char *err, size_t errlen);
