// data/fileio.c — see fileio.h.
#include "fileio.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fileio_read_all(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path, buf ? "read error" : "out of memory");
        free(buf);
        return -1;
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return 0;
}

int fileio_fsync_path(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    if (fsync(fd) != 0 && errno != EINVAL) {  // some file systems refuse fsync on directories
        snprintf(err, errlen, "%s: fsync: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static void parent_dir(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (!slash) snprintf(out, n, ".");
    else if (slash == out) out[1] = 0;
    else *slash = 0;
}

int fileio_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    return fileio_write_atomic_mode(path, data, len, 0644, err, errlen);
}

int fileio_write_atomic_mode(const char *path, const void *data, size_t len, int mode, char *err, size_t errlen) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    // O_EXCL after an unlink: a leftover temp file of a dead process with the same pid (and
    // perhaps wider permissions) is never reused.
    if (unlink(tmp) != 0 && errno != ENOENT) { snprintf(err, errlen, "%s: %s", tmp, strerror(errno)); return -1; }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, (mode_t)mode);
    if (fd < 0) { snprintf(err, errlen, "%s: %s", tmp, strerror(errno)); return -1; }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errlen, "%s: write: %s%s", tmp, strerror(errno), errno == ENOSPC ? " (the disk is full)" : "");
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) {
        snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0) { snprintf(err, errlen, "%s: close: %s", tmp, strerror(errno)); unlink(tmp); return -1; }
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    char dir[4096];
    parent_dir(path, dir, sizeof dir);
    return fileio_fsync_path(dir, err, errlen);
}

int fileio_check_dir_path(const char *path, char *err, size_t errlen) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = strlen(buf);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        if (buf[i - 1] == '/') continue;   // "a//b"
        char c = buf[i];
        buf[i] = 0;
        struct stat st;
        int rc = stat(buf, &st);
        int e = errno;
        if (rc == 0 && !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, S_ISREG(st.st_mode) ? "%s is a file, not a directory" : "%s exists and is not a directory",
                     buf);
            return -1;
        }
        buf[i] = c;
        if (rc != 0) {
            if (e == ENOENT) return 0;   // the rest can be created
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            return -1;
        }
    }
    return 0;
}

int fileio_mkdir_p(const char *path, char *err, size_t errlen) {
    return fileio_mkdir_p_mode(path, 0755, err, errlen);
}

int fileio_mkdir_p_mode(const char *path, int mode, char *err, size_t errlen) {
    // A component that is a file would surface as ENOTDIR on the next one: name it instead.
    if (fileio_check_dir_path(path, err, errlen)) return -1;
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) { snprintf(err, errlen, "%s: %s", buf, strerror(errno)); return -1; }
        *p = '/';
    }
    if (mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) { snprintf(err, errlen, "%s: %s", buf, strerror(errno)); return -1; }
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) { snprintf(err, errlen, "%s: exists and is not a directory", buf); return -1; }
    return 0;
}

int fileio_mkdir_parent(const char *path, char *err, size_t errlen) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errlen, "%.64s...: path too long", path);
        return -1;
    }
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;   // "a/b/" names b, as "a/b" does
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return 0;                // "b" or "/b": the parent exists
    *slash = 0;
    return fileio_mkdir_p(buf, err, errlen);
}

int fileio_remove_tree(const char *path, char *err, size_t errlen) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            if (fileio_remove_tree(child, err, errlen)) { closedir(d); return -1; }
        }
        closedir(d);
        if (rmdir(path) != 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
        return 0;
    }
    if (unlink(path) != 0) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    return 0;
}

int fileio_is_empty_or_absent(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT || errno == ENOTDIR;   // ENOTDIR: under a file, cannot exist
    if (!S_ISDIR(st.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) { empty = 0; break; }
    closedir(d);
    return empty;
}

int fileio_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Hashes already computed in this process, by file identity and version (device, inode, size,
// modification time): a run hashes its data for the token cache and again for run.json, and
// every rank thread does the same. Guarded: rank threads hash at once.
typedef struct { dev_t dev; ino_t ino; off_t size; struct timespec mtime; char hex[65]; } hash_memo;
static hash_memo memo[16];
static int memo_n, memo_next;
static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;

static int memo_same(const hash_memo *h, const struct stat *st) {
    return h->dev == st->st_dev && h->ino == st->st_ino && h->size == st->st_size &&
           h->mtime.tv_sec == st->st_mtim.tv_sec && h->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static int sha256_stream(FILE *f, const char *path, char hex[65], char *err, size_t errlen);

int fileio_sha256_file(const char *path, char hex[65], char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    struct stat st;
    int known = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);
    if (known) {
        pthread_mutex_lock(&memo_lock);
        int hit = 0;
        for (int i = 0; i < memo_n && !hit; i++)
            if (memo_same(&memo[i], &st)) {
                memcpy(hex, memo[i].hex, 65);
                hit = 1;
            }
        pthread_mutex_unlock(&memo_lock);
        if (hit) {
            fclose(f);
            return 0;
        }
    }
    int rc = sha256_stream(f, path, hex, err, errlen);
    fclose(f);
    if (rc == 0 && known) {
        pthread_mutex_lock(&memo_lock);
        hash_memo *h = &memo[memo_next];
        h->dev = st.st_dev;
        h->ino = st.st_ino;
        h->size = st.st_size;
        h->mtime = st.st_mtim;
        memcpy(h->hex, hex, 65);
        memo_next = (memo_next + 1) % 16;
        if (memo_n < 16) memo_n++;
        pthread_mutex_unlock(&memo_lock);
    }
    return rc;
}

static int sha256_stream(FILE *f, const char *path, char hex[65], char *err, size_t errlen) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "OpenSSL: cannot start SHA-256");
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    static __thread unsigned char buf[1 << 20];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (EVP_DigestUpdate(ctx, buf, n) != 1) break;
    int bad = ferror(f);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (bad || EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        snprintf(err, errlen, "%s: cannot hash: %s", path, bad ? "read error" : "OpenSSL failure");
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int fileio_copy_file(const char *src, const char *dst, char *err, size_t errlen) {
    char *data;
    size_t len;
    if (fileio_read_all(src, &data, &len, err, errlen)) return -1;
    int rc = fileio_write_atomic(dst, data, len, err, errlen);
    free(data);
    return rc;
}

int fileio_resolve_path(const char *path, char *out, size_t outlen, char *err, size_t errlen) {
    char buf[4096], real[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    size_t cut = strlen(buf);   // path + cut: the components that do not exist (yet)
    for (;;) {
        if (realpath(buf[0] ? buf : ".", real)) break;
        if ((errno != ENOENT && errno != ENOTDIR) || !buf[0]) {
            snprintf(err, errlen, "%s: %s", buf[0] ? buf : path, strerror(errno));
            return -1;
        }
        char *slash = strrchr(buf, '/');
        if (!slash) buf[0] = 0;          // a relative name: from the working directory
        else if (slash == buf) buf[1] = 0;
        else *slash = 0;
        cut = strlen(buf);
    }
    // What does not exist has no symlinks to follow: "." and ".." are taken lexically.
    size_t len = strlen(real);
    for (const char *t = path + cut; *t;) {
        while (*t == '/') t++;
        const char *e = t;
        while (*e && *e != '/') e++;
        size_t cl = (size_t)(e - t);
        if (cl == 2 && t[0] == '.' && t[1] == '.') {
            char *s = strrchr(real, '/');
            if (s == real) real[1] = 0;
            else if (s) *s = 0;
            len = strlen(real);
        } else if (cl && !(cl == 1 && t[0] == '.')) {
            if (len + cl + 2 > sizeof real) {
                snprintf(err, errlen, "%s: path too long", path);
                return -1;
            }
            if (len > 1) real[len++] = '/';
            memcpy(real + len, t, cl);
            len += cl;
            real[len] = 0;
        }
        t = e;
    }
    if (len + 1 > outlen) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    memcpy(out, real, len + 1);
    return 0;
}

int fileio_path_within(const char *inner, const char *outer) {
    size_t n = strlen(outer);
    if (n == 1 && outer[0] == '/') return 1;
    return !strncmp(inner, outer, n) && (inner[n] == 0 || inner[n] == '/');
}
