// data/token_cache.c — see token_cache.h. The files' format is data/token_store.h.
#include "token_cache.h"
#include "fileio.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int token_cache_dir(char *dir, size_t n) {
    const char *off = getenv("QUARRY_TOKEN_CACHE");
    if (off && !strcmp(off, "off")) return -1;
    const char *d = getenv("QUARRY_CACHE_DIR"), *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    if (d && *d) snprintf(dir, n, "%s", d);
    else if (x && *x) snprintf(dir, n, "%s/quarry/tokens", x);
    else if (h && *h) snprintf(dir, n, "%s/.cache/quarry/tokens", h);
    else return -1;
    return 0;
}

// A cache file is a name for a file: only these are the cache's (QUARRY_CACHE_DIR may be shared).
static int is_cache_file(const char *name) {
    size_t n = strlen(name);
    if (n < 64 + 4 || strspn(name, "0123456789abcdef") != 64) return 0;
    return !strcmp(name + 64, ".bin") || !strncmp(name + 64, ".bin.tmp.", 9);
}

// The cache holds the training text as token ids: it is the owner's only (0700, files 0600).
// A directory left more open (by an older quarry, or umask 0) is closed with a note.
static void make_private(const char *dir) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !(st.st_mode & 077)) return;
    if (chmod(dir, 0700) != 0) {
        fprintf(stderr, "quarry: warning: the token cache %s is readable by others (mode %03o) and chmod failed: %s\n"
                "hint: chmod 700 %s, or `quarry cache clear`\n", dir, (unsigned)(st.st_mode & 0777), strerror(errno), dir);
        return;
    }
    fprintf(stderr, "quarry: note: the token cache %s was readable by others (mode %03o); made it 0700\n", dir,
            (unsigned)(st.st_mode & 0777));
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[4400];
        if (!is_cache_file(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (chmod(path, 0600) != 0) fprintf(stderr, "quarry: warning: chmod 600 %s: %s\n", path, strerror(errno));
    }
    closedir(d);
}

int token_cache_key(const char *data_path, const char *model_dir, const chat_template *tmpl,
                    const chat_options *o, char key[65]) {
    char dir[4096], text[2048], err[256], hex[65];
    if (token_cache_dir(dir, sizeof dir)) return -1;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) { EVP_MD_CTX_free(ctx); return -1; }
    int rc = 0;
    // An unpinned date line follows the calendar (Llama 3.2), so today's date is part of the key.
    char today[32];
    time_t now = o->now ? o->now : time(NULL);
    strftime(today, sizeof today, "%Y-%m-%d", gmtime(&now));
    snprintf(text, sizeof text, "quarry-token-cache-v2\ntemplate=%s\ndate=%s\ntrain_on_prompt=%d\n",
             tmpl->name, o->date ? o->date : today, o->train_on_prompt);
    rc |= EVP_DigestUpdate(ctx, text, strlen(text)) != 1;
    if (fileio_sha256_file(data_path, hex, err, sizeof err)) rc = 1;
    else rc |= EVP_DigestUpdate(ctx, hex, 64) != 1;
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                                        "chat_template.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0] && !rc; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", model_dir, files[i]);
        if (!fileio_exists(path)) continue;
        if (fileio_sha256_file(path, hex, err, sizeof err)) rc = 1;
        else rc |= EVP_DigestUpdate(ctx, files[i], strlen(files[i])) != 1 || EVP_DigestUpdate(ctx, hex, 64) != 1;
    }
    unsigned char md[32];
    unsigned int len = 0;
    rc |= EVP_DigestFinal_ex(ctx, md, &len) != 1 || len != 32;
    EVP_MD_CTX_free(ctx);
    if (rc) return -1;
    for (int i = 0; i < 32; i++) snprintf(key + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int token_cache_path(const char *key, char *path, size_t n) {
    char dir[4096], err[512];
    if (token_cache_dir(dir, sizeof dir)) return -1;
    if (fileio_mkdir_p_mode(dir, 0700, err, sizeof err)) {
        fprintf(stderr, "quarry: warning: cannot use the token cache: %s\n", err);
        return -1;
    }
    make_private(dir);
    snprintf(path, n, "%s/%s.bin", dir, key);
    return 0;
}

int token_cache_lock(const char *path) {
    char lock[4400];
    snprintf(lock, sizeof lock, "%s.lock", path);
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) { close(fd); return -1; }
    }
    return fd;
}

void token_cache_unlock(const char *path, int fd) {
    if (fd < 0) return;
    char lock[4400];
    snprintf(lock, sizeof lock, "%s.lock", path);
    unlink(lock);   // a waiter holding the unlinked file finds the cache file written
    close(fd);      // releases the lock
}

// Calls fn on each cache file of dir; returns -1 when dir cannot be read (absent: 0).
static int each_file(const char *dir, int (*fn)(const char *path, const struct stat *st, void *user), void *user,
                     char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        char path[4400];
        struct stat st;
        if (!is_cache_file(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        rc = fn(path, &st, user);
        if (rc) snprintf(err, errlen, "%s: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

static int count_one(const char *path, const struct stat *st, void *user) {
    (void)path;
    token_cache_usage *u = user;
    u->entries++;
    u->bytes += (unsigned long long)st->st_size;
    return 0;
}

static int remove_one(const char *path, const struct stat *st, void *user) {
    if (unlink(path) != 0) return -1;
    return count_one(path, st, user);
}

int token_cache_usage_get(token_cache_usage *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    if (token_cache_dir(u->dir, sizeof u->dir)) { snprintf(err, errlen, "the token cache is off"); return -1; }
    struct stat st;
    if (stat(u->dir, &st) == 0) {
        u->exists = 1;
        u->mode = (int)(st.st_mode & 0777);
    }
    return each_file(u->dir, count_one, u, err, errlen);
}

int token_cache_clear(token_cache_usage *removed, char *err, size_t errlen) {
    memset(removed, 0, sizeof *removed);
    if (token_cache_dir(removed->dir, sizeof removed->dir)) { snprintf(err, errlen, "the token cache is off"); return -1; }
    return each_file(removed->dir, remove_one, removed, err, errlen);
}
