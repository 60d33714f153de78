// trainer/example_store.c — see example_store.h.
#include "example_store.h"
#include "../data/fileio.h"
#include "../data/token_cache.h"
#include <stdio.h>
#include <stdlib.h>

// ex[0..n) into a store at path (NULL: a private one).
static token_store *write_store(const example *ex, int n, const char *path, int vocab, char *err, size_t errlen) {
    token_store_writer *w = token_store_writer_open(path, vocab, err, errlen);
    if (!w) return NULL;
    for (int i = 0; i < n; i++)
        if (token_store_writer_append(w, ex[i].ids, ex[i].mask, ex[i].len, ex[i].line, ex[i].keep_head)) {
            snprintf(err, errlen, "%s", token_store_writer_error(w));
            token_store_writer_abort(w);
            return NULL;
        }
    return token_store_writer_commit(w, err, errlen);
}

// Tokenizes src into a store at path; a cache file that cannot be written (disk full, a
// read-only directory) is a warning and the store is private instead: not the run's failure.
static token_store *tokenize(const examples_source *src, const char *path, char *err, size_t errlen) {
    example *ex = NULL;
    int n = 0;
    // The file's examples are held once here until data-tok's streaming tokenizer feeds the
    // writer record by record; every later run only maps the store.
    if (examples_load(src, &ex, &n, err, errlen)) return NULL;
    int vocab = tokenizer_vocab_size(src->tok);
    token_store *st = write_store(ex, n, path, vocab, err, errlen);
    if (!st && path) {
        fprintf(stderr, "quarry: warning: cannot write the token cache: %s\n", err);
        st = write_store(ex, n, NULL, vocab, err, errlen);
    }
    for (int i = 0; i < n; i++) {
        free(ex[i].ids);
        free(ex[i].mask);
    }
    free(ex);
    if (!st) {
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
