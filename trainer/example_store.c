// trainer/example_store.c — see example_store.h.
#include "example_store.h"
#include "../data/fileio.h"
#include "../data/token_cache.h"
#include <stdio.h>

static int append_to_store(void *ctx, const example *e) {
    return token_store_writer_append(ctx, e->ids, e->mask, e->len, e->line, e->keep_head);
}

// src tokenized straight into a store at path (NULL: a private one), a chunk of lines at a time
// (trainer/examples' stream): the file's examples are never all in memory. *store_failed: the
// failure was the store's (writing), not the data's.
static token_store *write_store(const examples_source *src, const char *path, int *store_failed, char *err,
                                size_t errlen) {
    *store_failed = 1;
    token_store_writer *w = token_store_writer_open(path, tokenizer_vocab_size(src->tok), err, errlen);
    if (!w) return NULL;
    if (examples_stream(src, src->threads, append_to_store, w, err, errlen)) {
        const char *werr = token_store_writer_error(w);
        if (werr && *werr) snprintf(err, errlen, "%s", werr);
        else *store_failed = 0;
        token_store_writer_abort(w);
        return NULL;
    }
    return token_store_writer_commit(w, err, errlen);
}

// Tokenizes src into a store at path; a cache file that cannot be written (disk full, a
// read-only directory) is a warning and the store is private instead (tokenized again): not the
// run's failure.
static token_store *tokenize(const examples_source *src, const char *path, char *err, size_t errlen) {
    int store_failed;
    token_store *st = write_store(src, path, &store_failed, err, errlen);
    if (!st && path && store_failed) {
        fprintf(stderr, "quarry: warning: cannot write the token cache: %s\n", err);
        st = write_store(src, NULL, &store_failed, err, errlen);
    }
    if (!st && store_failed) {
        char why[600];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "%s: %s", src->path, why);
    }
    return st;
}

token_store *example_store_open(const examples_source *src, char *err, size_t errlen) {
    char key[65], path[4200], why[512];
    // The cache holds files that passed the strict rules; records accepted only with
    // --allow-extra-keys neither come from it nor go into it (a later strict run must see them).
    int cached = src->model_dir && !src->allow_extra_keys &&
                 token_cache_key(src->path, src->model_dir, src->tmpl, &src->chat, key) == 0 &&
                 token_cache_path(key, path, sizeof path) == 0;
    if (!cached) return tokenize(src, NULL, err, errlen);
    int lock = token_cache_lock(path);
    token_store *st = NULL;
    if (fileio_exists(path)) {
        st = token_store_open(path, why, sizeof why);
        if (st && !src->quiet)
            fprintf(stderr, "quarry: %ld examples of %s from the token cache\n", token_store_ndocs(st), src->path);
        if (!st) fprintf(stderr, "quarry: warning: token cache %s is damaged (%s); tokenizing again\n", path, why);
    }
    if (!st) st = tokenize(src, path, err, errlen);
    token_cache_unlock(path, lock);
    return st;
}
