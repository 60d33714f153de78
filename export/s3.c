// export/s3.c — see s3.h. S3 API: PutObject, CreateMultipartUpload, UploadPart, ListParts,
// CompleteMultipartUpload, AbortMultipartUpload, HeadObject (docs.aws.amazon.com/AmazonS3/latest/API).
#include "s3.h"
#include "data/progress.h"
#include "export/aws_http.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ATTEMPTS 6

typedef struct {
    char bucket[64];
    char prefix[1024];
    aws_url url;
    int path_style;
    sigv4_signer signer;
    const s3_upload_options *o;
    const char *source;   // where the credentials came from, for error hints
} s3_ctx;

// Temporary keys are fetched again this long before they expire: an upload of hundreds of GB
// outlives an hour's session, and a request signed just before the end may still be in flight.
#define REFRESH_MARGIN_S 300

// Points sg (the main signer, or a part worker's own copy) at keys valid for the next minutes.
// Callers serialise: the main thread between files, workers under their job mutex. Replaced keys
// stay allocated until the upload ends, so another thread's copy never dangles.
static int fresh_signer(const s3_ctx *s, sigv4_signer *sg, char *err, size_t errlen) {
    aws_credentials *c = s->o->creds;
    if (aws_credentials_refresh(c, REFRESH_MARGIN_S, err, errlen) < 0) return -1;
    sg->access_key = c->access_key;
    sg->secret_key = c->secret_key;
    sg->session_token = c->session_token;
    return 0;
}

long long s3_choose_part_size(long long file_size, long long part_size) {
    if (file_size > S3_MAX_OBJECT_SIZE) return -1;
    long long ps = part_size;
    if ((file_size + ps - 1) / ps > S3_MAX_PARTS) {
        ps = (file_size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
        ps = (ps + (1 << 20) - 1) / (1 << 20) * (1 << 20);
    }
    return ps > S3_MAX_PART_SIZE ? S3_MAX_PART_SIZE : ps;
}

int s3_parse_uri(const char *uri, char *bucket, size_t bucketlen, char *prefix, size_t prefixlen,
                 char *err, size_t errlen) {
    if (strncmp(uri, "s3://", 5)) {
        snprintf(err, errlen, "destination '%s' must look like s3://bucket/prefix/", uri);
        return -1;
    }
    const char *b = uri + 5, *slash = strchr(b, '/');
    size_t blen = slash ? (size_t)(slash - b) : strlen(b);
    // Bucket naming rules: 3–63 of [a-z0-9.-], starting and ending with a letter or digit.
    int ok = blen >= 3 && blen <= 63 && isalnum((unsigned char)b[0]) && isalnum((unsigned char)b[blen - 1]);
    for (size_t i = 0; ok && i < blen; i++)
        ok = islower((unsigned char)b[i]) || isdigit((unsigned char)b[i]) || b[i] == '.' || b[i] == '-';
    if (!ok || blen >= bucketlen) {
        snprintf(err, errlen, "'%.*s' in '%s' is not a valid S3 bucket name (3-63 of a-z 0-9 . -)", (int)blen, b, uri);
        return -1;
    }
    memcpy(bucket, b, blen);
    bucket[blen] = 0;
    const char *p = slash ? slash + 1 : "";
    size_t plen = strlen(p);
    if (plen + 2 > prefixlen) {
        snprintf(err, errlen, "prefix of '%s' is too long", uri);
        return -1;
    }
    snprintf(prefix, prefixlen, "%s%s", p, plen && p[plen - 1] != '/' ? "/" : "");
    return 0;
}

// "/bucket/key" (path style) or "/key" (virtual-hosted), the key URI-encoded with '/' kept.
static char *object_path(const s3_ctx *s, const char *key) {
    char *k = sigv4_uri_encode(key, strlen(key), 1);
    if (!k) return NULL;
    size_t n = strlen(k) + strlen(s->bucket) + 4;
    char *p = malloc(n);
    if (p) {
        if (s->path_style) snprintf(p, n, "/%s/%s", s->bucket, k);
        else snprintf(p, n, "/%s", k);
    }
    free(k);
    return p;
}

// What a failed S3 call means, in words the user can act on.
static void explain(const s3_ctx *s, const char *op, const char *key, const aws_response *r, char *err, size_t errlen) {
    const char *code = r->code[0] ? r->code : "";
    const char *hint = "";
    char region_hint[200] = "";
    if (!r->status) {
        snprintf(err, errlen, "%s s3://%s/%s: no response from %s after %d attempts: %s\nhint: check the network, "
                 "the --endpoint-url and the region", op, s->bucket, key, s->url.base, r->attempts, r->message);
        return;
    }
    if (!strcmp(code, "SignatureDoesNotMatch"))
        hint = "the secret access key is wrong for this access key id (S3 computed a different signature); "
               "check AWS_SECRET_ACCESS_KEY or aws_secret_access_key in the profile";
    else if (!strcmp(code, "InvalidAccessKeyId"))
        hint = "the access key id is not known to AWS; check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id";
    else if (!strcmp(code, "ExpiredToken") || !strcmp(code, "TokenRefreshRequired"))
        hint = "the session token has expired; get fresh temporary credentials (aws sso login, aws sts ...)";
    else if (!strcmp(code, "InvalidToken"))
        hint = "the session token is malformed or does not belong to these keys; check AWS_SESSION_TOKEN";
    else if (!strcmp(code, "AccessDenied"))
        hint = "the credentials are valid but not allowed to do this; the IAM policy needs s3:PutObject, "
               "s3:GetObject, s3:ListMultipartUploadParts and s3:AbortMultipartUpload on the bucket";
    else if (!strcmp(code, "NoSuchBucket"))
        hint = "the bucket does not exist; create it first (aws s3 mb) or fix the name";
    else if (!strcmp(code, "RequestTimeTooSkewed"))
        hint = "this machine's clock is more than 15 minutes off; fix the time (NTP)";
    else if (!strcmp(code, "AuthorizationHeaderMalformed") || !strcmp(code, "PermanentRedirect") || r->status == 301) {
        char reg[64] = "";
        if (!aws_response_header(r, "x-amz-bucket-region", reg, sizeof reg))
            snprintf(region_hint, sizeof region_hint, "the bucket is in region %s; pass --region %s", reg, reg);
        else
            snprintf(region_hint, sizeof region_hint, "the bucket is in another region; pass its --region");
        hint = region_hint;
    } else if (!strcmp(code, "EntityTooSmall"))
        hint = "a part was smaller than 5 MiB; use a larger --part-size";
    else if (!strcmp(code, "BadDigest") || !strcmp(code, "InvalidDigest"))
        hint = "S3 received different bytes than were sent (checksum mismatch); rerun the upload";
    else if (!strcmp(code, "NoSuchUpload"))
        hint = "the multipart upload was aborted or expired (a bucket lifecycle rule?); rerun to start it afresh";
    else if (aws_http_retryable(r->status, code))
        hint = "S3 kept failing or throttling after retries; try again later or lower --jobs";
    snprintf(err, errlen, "%s s3://%s/%s failed: HTTP %ld %s%s%s%s%s", op, s->bucket, key, r->status, code,
             r->message[0] ? ": " : "", r->message, *hint ? "\nhint: " : "", hint);
}

static void sha256_raw(const void *p, size_t n, unsigned char out[32]) {
    unsigned int len = 0;
    if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL)) memset(out, 0, 32);
}

static void md5_hex(const void *p, size_t n, char out[33]) {
    unsigned char md[16];
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_md5(), NULL)) memset(md, 0, 16);
    sigv4_hex(md, 16, out);
}

static void base64(const unsigned char *p, size_t n, char *out) {   // out: 4·ceil(n/3)+1
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
}

// Headers that every request with a body carries: the payload hash (signed) and its checksum.
static int body_headers(sigv4_headers *hs, const unsigned char digest[32], char hexout[65]) {
    char b64[48];
    sigv4_hex(digest, 32, hexout);
    base64(digest, 32, b64);
    return sigv4_headers_add(hs, "x-amz-content-sha256", hexout) || sigv4_headers_add(hs, "x-amz-checksum-sha256", b64);
}

static int empty_headers(sigv4_headers *hs, char hexout[65]) {
    sigv4_sha256_hex("", 0, hexout);
    return sigv4_headers_add(hs, "x-amz-content-sha256", hexout);
}

// Reads exactly n bytes at off; 0 or -1.
static int read_at(int fd, void *buf, size_t n, long long off) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(off + (long long)got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

typedef struct {
    char rel[PATH_MAX];   // path relative to DIR
    char key[2048];
    long long size;
    long long mtime_ns;
} src_file;

typedef struct {
    src_file *v;
    int n, cap;
} file_list;

static int list_files(const char *root, const char *rel, file_list *fl, const char *skip, char *err, size_t errlen) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        snprintf(err, errlen, "cannot read directory %s: %s", path, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[PATH_MAX], full[PATH_MAX];
        if ((size_t)snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >= sizeof sub ||
            (size_t)snprintf(full, sizeof full, "%s/%s", root, sub) >= sizeof full) {
            snprintf(err, errlen, "path too long under %s", root);
            rc = -1;
            break;
        }
        struct stat st;
        if (stat(full, &st)) {
            snprintf(err, errlen, "cannot stat %s: %s", full, strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            rc = list_files(root, sub, fl, skip, err, errlen);
        } else if (S_ISREG(st.st_mode) && !(skip && !strcmp(sub, skip))) {
            if (fl->n == fl->cap) {
                int cap = fl->cap ? 2 * fl->cap : 16;
                src_file *v = realloc(fl->v, (size_t)cap * sizeof *v);
                if (!v) {
                    snprintf(err, errlen, "out of memory");
                    rc = -1;
                    break;
                }
                fl->v = v;
                fl->cap = cap;
            }
            src_file *f = &fl->v[fl->n++];
            memset(f, 0, sizeof *f);
            snprintf(f->rel, sizeof f->rel, "%s", sub);
            f->size = (long long)st.st_size;
            f->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        }
    }
    closedir(d);
    return rc;
}

static int file_cmp(const void *a, const void *b) {
    return strcmp(((const src_file *)a)->rel, ((const src_file *)b)->rel);
}

// The journal: {"destination", "endpoint", "source", "files": {key: {size, mtime_ns (a string),
// part_size, upload_id?, done, checksum?}}}. Rewritten whole (temp file + rename) at each change.
typedef struct {
    char path[PATH_MAX + 128];
    cJSON *root, *files;
} journal;

static int mkdirs(char *path) {   // path of a directory; created with parents
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int r = mkdir(path, 0700);
        *p = '/';
        if (r && errno != EEXIST) return -1;
    }
    return mkdir(path, 0700) && errno != EEXIST ? -1 : 0;
}

static int journal_open(journal *j, const char *dir_abs, const char *dest, const char *endpoint, char *err, size_t errlen) {
    memset(j, 0, sizeof *j);
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[PATH_MAX];
    if (xdg && *xdg) snprintf(base, sizeof base, "%.3900s/quarry/uploads", xdg);
    else snprintf(base, sizeof base, "%.3900s/.cache/quarry/uploads", home && *home ? home : "/tmp");
    if (mkdirs(base)) {
        snprintf(err, errlen, "cannot create the upload journal directory %s: %s", base, strerror(errno));
        return -1;
    }
    // Keyed by what is uploaded where, so two uploads of different dirs never share a journal.
    char id[4096], hex[65];
    snprintf(id, sizeof id, "%.2000s\n%.1200s\n%.600s", dir_abs, dest, endpoint);
    sigv4_sha256_hex(id, strlen(id), hex);
    hex[20] = 0;
    snprintf(j->path, sizeof j->path, "%s/%s.json", base, hex);
    FILE *f = fopen(j->path, "rb");
    if (f) {
        char *text = NULL;
        long n = -1;
        if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) && (text = malloc((size_t)n + 1)) &&
            fread(text, 1, (size_t)n, f) == (size_t)n) {
            text[n] = 0;
            j->root = cJSON_Parse(text);
        }
        free(text);
        fclose(f);
        if (!j->root) fprintf(stderr, "quarry upload: warning: ignoring the unreadable journal %s\n", j->path);
    }
    if (j->root && !cJSON_IsObject(cJSON_GetObjectItem(j->root, "files"))) {
        cJSON_Delete(j->root);
        j->root = NULL;
    }
    if (!j->root) {
        j->root = cJSON_CreateObject();
        if (!j->root || !cJSON_AddStringToObject(j->root, "destination", dest) ||
            !cJSON_AddStringToObject(j->root, "endpoint", endpoint) || !cJSON_AddStringToObject(j->root, "source", dir_abs) ||
            !cJSON_AddObjectToObject(j->root, "files")) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    j->files = cJSON_GetObjectItem(j->root, "files");
    return 0;
}

static int journal_save(journal *j) {
    char *text = cJSON_Print(j->root);
    if (!text) return -1;
    char tmp[PATH_MAX + 140];
    snprintf(tmp, sizeof tmp, "%s.tmp", j->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = -1;
    if (fd >= 0) {
        size_t n = strlen(text), off = 0;
        while (off < n) {
            ssize_t w = write(fd, text + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            off += (size_t)w;
        }
        rc = (off == n && !fsync(fd)) ? 0 : -1;
        if (close(fd)) rc = -1;
        if (!rc) rc = rename(tmp, j->path) ? -1 : 0;
    }
    if (rc) fprintf(stderr, "quarry upload: warning: cannot write the journal %s: %s\n", j->path, strerror(errno));
    free(text);
    return rc;
}

// mtime_ns is kept as a decimal string: ~1.8e18 needs 19 digits, and cJSON prints a number with
// 15 significant digits whenever that reads back within DBL_EPSILON (relative), which for about
// one mtime in twenty is a different double, so the file looked changed and was never resumed.
// size and part_size (at most 5 TiB, 13 digits) print exactly.
static int journal_matches(const cJSON *e, const src_file *f, long long part_size) {
    const cJSON *sz = cJSON_GetObjectItem(e, "size"), *mt = cJSON_GetObjectItem(e, "mtime_ns"),
                *ps = cJSON_GetObjectItem(e, "part_size");
    char mtime[32];
    snprintf(mtime, sizeof mtime, "%lld", f->mtime_ns);
    return cJSON_IsNumber(sz) && sz->valuedouble == (double)f->size && cJSON_IsString(mt) &&
           !strcmp(mt->valuestring, mtime) && cJSON_IsNumber(ps) && ps->valuedouble == (double)part_size;
}

static cJSON *journal_put(journal *j, const src_file *f, long long part_size, const char *upload_id, int done,
                          const char *checksum) {
    char mtime[32];
    snprintf(mtime, sizeof mtime, "%lld", f->mtime_ns);
    cJSON_DeleteItemFromObject(j->files, f->key);
    cJSON *e = cJSON_AddObjectToObject(j->files, f->key);
    if (!e || !cJSON_AddNumberToObject(e, "size", (double)f->size) || !cJSON_AddStringToObject(e, "mtime_ns", mtime) ||
        !cJSON_AddNumberToObject(e, "part_size", (double)part_size) || !cJSON_AddBoolToObject(e, "done", done) ||
        (upload_id && !cJSON_AddStringToObject(e, "upload_id", upload_id)) ||
        (checksum && !cJSON_AddStringToObject(e, "checksum", checksum)))
        return NULL;
    journal_save(j);
    return e;
}

static void journal_drop(journal *j, const src_file *f) {
    cJSON_DeleteItemFromObject(j->files, f->key);
    journal_save(j);
}

typedef struct {
    int number;            // 1-based
    long long off, len;
    int done;              // in S3 (sent now or found by ListParts)
    char etag[128];
    unsigned char sha[32];
} part;

typedef struct {
    const s3_ctx *s;
    const src_file *f;
    const char *path;      // object path
    const char *upload_q;    // "uploadId=ID", the id URI-encoded
    int fd;
    part *parts;
    int nparts;
    pthread_mutex_t mu;
    int next, failed, no_response;   // no_response: the failure was S3 being unreachable
    char err[2048];
    long long *bytes_done;
    int *parts_sent;
    int kill_after;        // QUARRY_TEST_KILL_AFTER_PARTS; 0 off
    progress *prog;
    double t0;
    const long long *bytes_resumed;
} part_job;

// The progress line's own rate counts everything done; after a resume it also says how much was
// already in S3 and how fast this run is actually sending.
static void progress_show(progress *prog, long long done, long long resumed, double t0) {
    char extra[96] = "";
    double dt = now_seconds() - t0;
    if (resumed > 0)
        snprintf(extra, sizeof extra, "(%.0f MB already in S3; sending %.1f MB/s)", (double)resumed / 1e6,
                 dt > 0 ? (double)(done - resumed) / 1e6 / dt : 0.0);
    progress_update(prog, (double)done / 1e6, extra);
}

static void progress_tick(part_job *pj, long long add) {
    *pj->bytes_done += add;
    progress_show(pj->prog, *pj->bytes_done, *pj->bytes_resumed, pj->t0);
}

static void *part_worker(void *arg) {
    part_job *pj = arg;
    sigv4_signer sg = pj->s->signer;   // this thread's own, refreshed below
    aws_http *h = aws_http_new(&pj->s->url, &sg, MAX_ATTEMPTS);
    long long maxlen = 0;
    for (int i = 0; i < pj->nparts; i++) if (pj->parts[i].len > maxlen) maxlen = pj->parts[i].len;
    unsigned char *buf = h ? malloc((size_t)maxlen + 1) : NULL;
    if (!buf) {
        pthread_mutex_lock(&pj->mu);
        if (!pj->failed) snprintf(pj->err, sizeof pj->err, "out of memory for a %lld-byte part buffer", maxlen);
        pj->failed = 1;
        pthread_mutex_unlock(&pj->mu);
    }
    while (buf) {
        pthread_mutex_lock(&pj->mu);
        while (pj->next < pj->nparts && pj->parts[pj->next].done) pj->next++;
        int i = pj->failed || pj->next >= pj->nparts ? -1 : pj->next++;
        char rerr[2048];
        if (i >= 0 && fresh_signer(pj->s, &sg, rerr, sizeof rerr)) {
            snprintf(pj->err, sizeof pj->err, "%s", rerr);
            pj->failed = 1;
            i = -1;
        }
        pthread_mutex_unlock(&pj->mu);
        if (i < 0) break;
        part *p = &pj->parts[i];
        char err[2048] = "";
        int no_response = 0;
        if (read_at(pj->fd, buf, (size_t)p->len, p->off)) {
            snprintf(err, sizeof err, "cannot read %.1000s at offset %lld: %s", pj->f->rel, p->off, strerror(errno));
        } else {
            sha256_raw(buf, (size_t)p->len, p->sha);
            sigv4_headers hs = {0};
            char hex[65], query[3300];
            snprintf(query, sizeof query, "partNumber=%d&%s", p->number, pj->upload_q);
            aws_response r;
            if (body_headers(&hs, p->sha, hex) || sigv4_headers_add(&hs, "Content-Type", "application/octet-stream")) {
                snprintf(err, sizeof err, "out of memory");
            } else if (aws_http_request(h, "PUT", pj->path, query, &hs, buf, (size_t)p->len, hex, &r) || r.status != 200) {
                explain(pj->s, "UploadPart", pj->f->key, &r, err, sizeof err);
                if (!r.status) no_response = 1;
                aws_response_free(&r);
            } else {
                if (aws_response_header(&r, "ETag", p->etag, sizeof p->etag))
                    snprintf(err, sizeof err, "UploadPart %d of s3://%s/%.1024s: S3 sent no ETag", p->number,
                             pj->s->bucket, pj->f->key);
                aws_response_free(&r);
            }
            sigv4_headers_free(&hs);
        }
        pthread_mutex_lock(&pj->mu);
        if (err[0]) {
            if (!pj->failed) {
                snprintf(pj->err, sizeof pj->err, "%s", err);
                pj->no_response = no_response;
            }
            pj->failed = 1;
        } else {
            p->done = 1;
            (*pj->parts_sent)++;
            progress_tick(pj, p->len);
            // Test hook: die like a killed process after N parts, to exercise resuming.
            if (pj->kill_after && *pj->parts_sent >= pj->kill_after) raise(SIGKILL);
        }
        pthread_mutex_unlock(&pj->mu);
    }
    free(buf);
    aws_http_free(h);
    return NULL;
}

// Unescapes the XML entities S3 puts in ETags (&quot;).
static void xml_unescape(char *s) {
    char *w = s;
    for (char *r = s; *r;) {
        if (!strncmp(r, "&quot;", 6)) { *w++ = '"'; r += 6; }
        else if (!strncmp(r, "&amp;", 5)) { *w++ = '&'; r += 5; }
        else *w++ = *r++;
    }
    *w = 0;
}

static void xml_get(const char *from, const char *until, const char *tag, char *out, size_t outlen) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    out[0] = 0;
    const char *a = strstr(from, open);
    if (!a || (until && a >= until)) return;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b || (until && b > until)) return;
    snprintf(out, outlen, "%.*s", (int)(b - a), a);
    xml_unescape(out);
}

// Marks the parts S3 already holds from an earlier run (ListParts, paginated) after checking
// each against the local bytes: its SHA-256 checksum when S3 reports one, else its MD5 ETag.
static int resume_parts(aws_http *h, part_job *pj, int *resumed, char *err, size_t errlen) {
    char marker[32] = "0";
    unsigned char *buf = NULL;
    size_t bufcap = 0;
    int rc = 0;
    for (int page = 0; page < 1000 && !rc; page++) {
        char query[3300];
        snprintf(query, sizeof query, "part-number-marker=%s&%s", marker, pj->upload_q);
        sigv4_headers hs = {0};
        char hex[65];
        aws_response r;
        if (empty_headers(&hs, hex)) { sigv4_headers_free(&hs); return -1; }
        int bad = aws_http_request(h, "GET", pj->path, query, &hs, NULL, 0, hex, &r) || r.status != 200;
        sigv4_headers_free(&hs);
        if (bad) {
            if (r.status == 404) {   // NoSuchUpload: aborted or expired; start over
                aws_response_free(&r);
                return 1;
            }
            explain(pj->s, "ListParts", pj->f->key, &r, err, errlen);
            aws_response_free(&r);
            return -1;
        }
        for (const char *p = strstr(r.body, "<Part>"); p; p = strstr(p + 6, "<Part>")) {
            const char *end = strstr(p, "</Part>");
            char num[32], size[32], etag[128], cks[64];
            xml_get(p, end, "PartNumber", num, sizeof num);
            xml_get(p, end, "Size", size, sizeof size);
            xml_get(p, end, "ETag", etag, sizeof etag);
            xml_get(p, end, "ChecksumSHA256", cks, sizeof cks);
            int n = atoi(num);
            if (n < 1 || n > pj->nparts) continue;
            part *pt = &pj->parts[n - 1];
            if (atoll(size) != pt->len) continue;
            if ((size_t)pt->len > bufcap) {
                free(buf);
                bufcap = (size_t)pt->len;
                if (!(buf = malloc(bufcap))) {
                    snprintf(err, errlen, "out of memory");
                    rc = -1;
                    break;
                }
            }
            if (read_at(pj->fd, buf, (size_t)pt->len, pt->off)) {
                snprintf(err, errlen, "cannot read %s: %s", pj->f->rel, strerror(errno));
                rc = -1;
                break;
            }
            sha256_raw(buf, (size_t)pt->len, pt->sha);
            int same;
            if (cks[0]) {
                char b64[48];
                base64(pt->sha, 32, b64);
                same = !strcmp(b64, cks);
            } else {
                char md5[33], quoted[40];
                md5_hex(buf, (size_t)pt->len, md5);
                snprintf(quoted, sizeof quoted, "\"%s\"", md5);
                same = !strcmp(etag, quoted) || !strcmp(etag, md5);
            }
            if (!same) continue;   // sent again
            pt->done = 1;
            snprintf(pt->etag, sizeof pt->etag, "%s", etag);
            (*resumed)++;
        }
        char truncated[16], next[32];
        xml_get(r.body, NULL, "IsTruncated", truncated, sizeof truncated);
        xml_get(r.body, NULL, "NextPartNumberMarker", next, sizeof next);
        aws_response_free(&r);
        if (strcmp(truncated, "true") || !next[0] || !strcmp(next, marker)) break;
        snprintf(marker, sizeof marker, "%s", next);
    }
    free(buf);
    return rc;
}

// "uploadId=ID" with the id URI-encoded (S3's ids are URL-safe, other servers' may not be).
static void upload_id_query(char *out, size_t n, const char *upload_id) {
    char *enc = sigv4_uri_encode(upload_id, strlen(upload_id), 0);
    snprintf(out, n, "uploadId=%s", enc ? enc : upload_id);
    free(enc);
}

static void abort_upload(aws_http *h, const s3_ctx *s, const char *path, const char *upload_id) {
    char query[3200], hex[65];
    upload_id_query(query, sizeof query, upload_id);
    sigv4_headers hs = {0};
    aws_response r;
    if (!empty_headers(&hs, hex) && !aws_http_request(h, "DELETE", path, query, &hs, NULL, 0, hex, &r)) {
        if (r.status != 204 && r.status != 200 && r.status != 404)
            fprintf(stderr, "quarry upload: warning: could not abort multipart upload of s3://%s (HTTP %ld %s)\n",
                    s->bucket, r.status, r.code);
        aws_response_free(&r);
    }
    sigv4_headers_free(&hs);
}

// Writes base64(SHA-256) of the file (single PUT) into checksum; the file is read into memory.
static int put_object(aws_http *h, const s3_ctx *s, const char *dir, const src_file *f, const char *path,
                      char *checksum, long long *bytes_sent, char *err, size_t errlen) {
    char full[PATH_MAX * 2];
    snprintf(full, sizeof full, "%s/%s", dir, f->rel);
    int fd = open(full, O_RDONLY);
    unsigned char *buf = malloc((size_t)f->size + 1);
    if (fd < 0 || !buf || read_at(fd, buf, (size_t)f->size, 0)) {
        snprintf(err, errlen, "cannot read %s: %s", full, fd < 0 || buf ? strerror(errno) : "out of memory");
        if (fd >= 0) close(fd);
        free(buf);
        return -1;
    }
    close(fd);
    unsigned char sha[32];
    sha256_raw(buf, (size_t)f->size, sha);
    base64(sha, 32, checksum);
    sigv4_headers hs = {0};
    char hex[65];
    aws_response r;
    int rc = 0;
    // x-amz-sdk-checksum-algorithm is what the AWS SDKs send with a checksum; some
    // S3-compatible servers store the checksum only when it is present.
    if (body_headers(&hs, sha, hex) || sigv4_headers_add(&hs, "Content-Type", "application/octet-stream") ||
        sigv4_headers_add(&hs, "x-amz-sdk-checksum-algorithm", "SHA256")) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (aws_http_request(h, "PUT", path, NULL, &hs, buf, (size_t)f->size, hex, &r) || r.status != 200) {
        explain(s, "PutObject", f->key, &r, err, errlen);
        aws_response_free(&r);
        rc = -1;
    } else {
        aws_response_free(&r);
        *bytes_sent += f->size;
    }
    sigv4_headers_free(&hs);
    free(buf);
    return rc;
}

typedef struct {
    journal *j;
    progress *prog;
    long long bytes_done, bytes_resumed;   // done: sent now or already in S3; resumed: the latter
    double t0;
    int kill_after;
    s3_upload_stats *st;
} run_state;

// Sends one large file in parts. checksum receives the composite "base64(SHA-256 of the part
// digests)-N". Returns 0, or -1 with err (the upload is aborted unless S3 was unreachable: then
// the journal keeps it for a rerun).
static int multipart_object(aws_http *h, s3_ctx *s, const char *dir, const src_file *f, const char *path,
                            long long part_size, run_state *rs, char *checksum, char *err, size_t errlen) {
    char full[PATH_MAX * 2];
    snprintf(full, sizeof full, "%s/%s", dir, f->rel);
    int fd = open(full, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", full, strerror(errno));
        return -1;
    }
    int nparts = (int)((f->size + part_size - 1) / part_size);
    part *parts = calloc((size_t)nparts, sizeof *parts);
    if (!parts) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < nparts; i++) {
        parts[i].number = i + 1;
        parts[i].off = (long long)i * part_size;
        parts[i].len = i + 1 < nparts ? part_size : f->size - parts[i].off;
    }
    part_job pj = {.s = s, .f = f, .path = path, .fd = fd, .parts = parts, .nparts = nparts,
                   .bytes_done = &rs->bytes_done, .parts_sent = &rs->st->parts_sent, .kill_after = rs->kill_after,
                   .prog = rs->prog, .t0 = rs->t0, .bytes_resumed = &rs->bytes_resumed};
    char upload_id[1024] = "", upload_q[3200];
    int rc = -1, resumed = 0, reachable = 1;

    cJSON *e = cJSON_GetObjectItem(rs->j->files, f->key);
    const cJSON *uid = e ? cJSON_GetObjectItem(e, "upload_id") : NULL;
    if (e && journal_matches(e, f, part_size) && cJSON_IsString(uid) && !cJSON_IsTrue(cJSON_GetObjectItem(e, "done"))) {
        snprintf(upload_id, sizeof upload_id, "%s", uid->valuestring);
        upload_id_query(upload_q, sizeof upload_q, upload_id);
        pj.upload_q = upload_q;
        int r = resume_parts(h, &pj, &resumed, err, errlen);
        if (r < 0) goto out_keep;
        if (r > 0) upload_id[0] = 0;   // gone: start a new one
        if (resumed) {
            fprintf(stderr, "quarry upload: resuming %s: %d of %d parts already in S3\n", f->key, resumed, nparts);
            long long have = 0;
            for (int i = 0; i < nparts; i++) if (parts[i].done) have += parts[i].len;
            rs->bytes_done += have;
            rs->bytes_resumed += have;
        }
    }
    if (!upload_id[0]) {
        sigv4_headers hs = {0};
        char hex[65];
        aws_response r;
        if (empty_headers(&hs, hex) || sigv4_headers_add(&hs, "x-amz-checksum-algorithm", "SHA256") ||
            sigv4_headers_add(&hs, "Content-Type", "application/octet-stream")) {
            sigv4_headers_free(&hs);
            snprintf(err, errlen, "out of memory");
            goto out_keep;
        }
        int bad = aws_http_request(h, "POST", path, "uploads", &hs, NULL, 0, hex, &r) || r.status != 200;
        sigv4_headers_free(&hs);
        if (!bad) xml_get(r.body, NULL, "UploadId", upload_id, sizeof upload_id);
        if (bad || !upload_id[0]) {
            if (bad) explain(s, "CreateMultipartUpload", f->key, &r, err, errlen);
            else snprintf(err, errlen, "CreateMultipartUpload s3://%s/%s: no UploadId in the answer", s->bucket, f->key);
            aws_response_free(&r);
            goto out_keep;
        }
        aws_response_free(&r);
        upload_id_query(upload_q, sizeof upload_q, upload_id);
        pj.upload_q = upload_q;
        if (!journal_put(rs->j, f, part_size, upload_id, 0, NULL)) {
            snprintf(err, errlen, "out of memory");
            goto out_abort;
        }
    }
    rs->st->parts_resumed += resumed;

    int jobs = s->o->jobs < nparts ? s->o->jobs : nparts;
    pthread_t tids[64];
    if (jobs > 64) jobs = 64;
    int started = 0;
    pthread_mutex_init(&pj.mu, NULL);
    long long before = rs->bytes_done;
    for (int t = 0; t < jobs; t++) {
        if (pthread_create(&tids[t], NULL, part_worker, &pj)) break;
        started++;
    }
    if (!started) part_worker(&pj);
    for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
    pthread_mutex_destroy(&pj.mu);
    long long sent = rs->bytes_done - before;
    rs->st->bytes_sent += sent;
    if (pj.failed) {
        snprintf(err, errlen, "%s", pj.err);
        reachable = !pj.no_response;
        if (reachable) goto out_abort;
        goto out_keep;
    }

    // CompleteMultipartUpload with every part's ETag and checksum.
    if (fresh_signer(s, &s->signer, err, errlen)) {
        reachable = 0;   // the parts stay in S3 for a rerun with working credentials
        goto out_keep;
    }
    size_t cap = (size_t)nparts * 256 + 128, len = 0;
    char *xml = malloc(cap);
    unsigned char *cat = malloc((size_t)nparts * 32);
    if (!xml || !cat) {
        free(xml);
        free(cat);
        snprintf(err, errlen, "out of memory");
        goto out_abort;
    }
    len += (size_t)snprintf(xml + len, cap - len, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (int i = 0; i < nparts; i++) {
        char b64[48];
        base64(parts[i].sha, 32, b64);
        memcpy(cat + 32 * i, parts[i].sha, 32);
        char etag[160];
        // ETags are quoted strings; XML wants the quotes escaped only inside attributes, so plain is fine.
        snprintf(etag, sizeof etag, "%s", parts[i].etag);
        len += (size_t)snprintf(xml + len, cap - len,
                                "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag><ChecksumSHA256>%s</ChecksumSHA256></Part>",
                                parts[i].number, etag, b64);
    }
    len += (size_t)snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
    unsigned char whole[32];
    sha256_raw(cat, (size_t)nparts * 32, whole);
    free(cat);
    char b64[48];
    base64(whole, 32, b64);
    snprintf(checksum, 64, "%s-%d", b64, nparts);

    char query[3200];
    upload_id_query(query, sizeof query, upload_id);
    sigv4_headers hs = {0};
    char hex[65];
    aws_response r;
    unsigned char xsha[32];
    sha256_raw(xml, len, xsha);
    sigv4_hex(xsha, 32, hex);
    if (sigv4_headers_add(&hs, "x-amz-content-sha256", hex) || sigv4_headers_add(&hs, "Content-Type", "application/xml")) {
        sigv4_headers_free(&hs);
        free(xml);
        snprintf(err, errlen, "out of memory");
        goto out_abort;
    }
    int bad = aws_http_request(h, "POST", path, query, &hs, xml, len, hex, &r);
    sigv4_headers_free(&hs);
    free(xml);
    // S3 may answer 200 and still put an <Error> in the body of a CompleteMultipartUpload.
    if (bad || r.status != 200 || strstr(r.body, "<Error>")) {
        if (!bad && r.status == 200) {
            char code[128] = "", msg[512] = "";
            xml_get(r.body, NULL, "Code", code, sizeof code);
            xml_get(r.body, NULL, "Message", msg, sizeof msg);
            snprintf(err, errlen, "CompleteMultipartUpload s3://%s/%s failed: %s: %s", s->bucket, f->key, code, msg);
        } else {
            explain(s, "CompleteMultipartUpload", f->key, &r, err, errlen);
            reachable = r.status != 0;
        }
        aws_response_free(&r);
        if (reachable) goto out_abort;
        goto out_keep;
    }
    aws_response_free(&r);
    rc = 0;
    goto out_keep;
out_abort:
    if (upload_id[0]) {
        abort_upload(h, s, path, upload_id);
        journal_drop(rs->j, f);
        size_t n = strlen(err);
        if (n + 1 < errlen) snprintf(err + n, errlen - n, "\n(the multipart upload of %s was aborted)", f->key);
    }
out_keep:
    if (rc && !reachable && upload_id[0]) {
        size_t n = strlen(err);
        if (n + 1 < errlen)
            snprintf(err + n, errlen - n, "\n(the parts sent so far stay in S3: rerun the same command to resume)");
    }
    close(fd);
    free(parts);
    return rc;
}

// HeadObject with checksum mode: the object's size and SHA-256 checksum must be what we sent.
// checksum is "B64" (single PUT) or "B64-N" (multipart composite); S3 answers "B64-N", some
// S3-compatible servers "B64" for both.
static int verify_object(aws_http *h, const s3_ctx *s, const src_file *f, const char *path, const char *checksum,
                         char *err, size_t errlen) {
    sigv4_headers hs = {0};
    char hex[65];
    aws_response r;
    if (empty_headers(&hs, hex) || sigv4_headers_add(&hs, "x-amz-checksum-mode", "ENABLED")) {
        sigv4_headers_free(&hs);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int bad = aws_http_request(h, "HEAD", path, NULL, &hs, NULL, 0, hex, &r) || r.status != 200;
    sigv4_headers_free(&hs);
    if (bad) {
        explain(s, "HeadObject", f->key, &r, err, errlen);
        aws_response_free(&r);
        return -1;
    }
    char len[32] = "", got[128] = "";
    aws_response_header(&r, "Content-Length", len, sizeof len);
    aws_response_header(&r, "x-amz-checksum-sha256", got, sizeof got);
    aws_response_free(&r);
    if (atoll(len) != f->size) {
        snprintf(err, errlen, "verification failed: s3://%s/%s is %s bytes, %s has %lld", s->bucket, f->key, len, f->rel, f->size);
        return -1;
    }
    size_t base = strcspn(checksum, "-"), gbase = strcspn(got, "-");
    if (!got[0] || base != gbase || strncmp(checksum, got, base) || (got[gbase] && strcmp(got + gbase, checksum + base))) {
        snprintf(err, errlen, "verification failed: s3://%s/%s has SHA-256 checksum '%s', expected '%s'%s", s->bucket,
                 f->key, got[0] ? got : "(none)", checksum, got[0] ? "" : " (the object was stored without a checksum)");
        return -1;
    }
    return 0;
}

int s3_upload_dir(const char *dir, const char *s3_uri, const s3_upload_options *o, s3_upload_stats *st,
                  char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    s3_ctx s = {.o = o};
    if (s3_parse_uri(s3_uri, s.bucket, sizeof s.bucket, s.prefix, sizeof s.prefix, err, errlen)) return 1;
    if (o->part_size < S3_MIN_PART_SIZE || o->part_size > S3_MAX_PART_SIZE) {
        snprintf(err, errlen, "--part-size must be between 5MiB and 5GiB (S3's limits for a part)");
        return 1;
    }
    if (o->jobs < 1 || o->jobs > 64) {
        snprintf(err, errlen, "--jobs must be between 1 and 64");
        return 1;
    }
    const char *region = o->region;
    char endpoint[600];
    if (o->endpoint_url) {
        snprintf(endpoint, sizeof endpoint, "%s", o->endpoint_url);
        s.path_style = 1;   // S3-compatible servers and loopback have no per-bucket host names
        if (!region) region = "us-east-1";
    } else {
        if (!region) {
            snprintf(err, errlen, "no AWS region: pass --region, set AWS_REGION, or set region in ~/.aws/config");
            return 1;
        }
        // Virtual-hosted addressing, except for bucket names with dots (TLS wildcard certificates
        // do not cover them): path style there.
        s.path_style = strchr(s.bucket, '.') != NULL;
        if (s.path_style) snprintf(endpoint, sizeof endpoint, "https://s3.%s.amazonaws.com", region);
        else snprintf(endpoint, sizeof endpoint, "https://%s.s3.%s.amazonaws.com", s.bucket, region);
    }
    if (aws_url_parse(endpoint, &s.url, err, errlen)) return 1;
    s.signer = (sigv4_signer){.access_key = o->creds->access_key, .secret_key = o->creds->secret_key,
                              .session_token = o->creds->session_token, .region = region, .service = "s3", .s3 = 1};

    char dir_abs[PATH_MAX];
    struct stat dst;
    if (!realpath(dir, dir_abs) || stat(dir_abs, &dst) || !S_ISDIR(dst.st_mode)) {
        snprintf(err, errlen, "%s is not a readable directory", dir);
        return 1;
    }
    file_list fl = {0};
    if (list_files(dir_abs, "", &fl, NULL, err, errlen)) {
        free(fl.v);
        return 1;
    }
    if (!fl.n) {
        snprintf(err, errlen, "%s holds no files to upload", dir);
        free(fl.v);
        return 1;
    }
    qsort(fl.v, (size_t)fl.n, sizeof *fl.v, file_cmp);
    for (int i = 0; i < fl.n; i++) {
        if ((size_t)snprintf(fl.v[i].key, sizeof fl.v[i].key, "%s%s", s.prefix, fl.v[i].rel) >= 1024) {
            snprintf(err, errlen, "object key for %s is longer than S3's 1024 bytes", fl.v[i].rel);
            free(fl.v);
            return 1;
        }
        st->bytes += fl.v[i].size;
    }
    st->files = fl.n;

    journal j;
    char dest[1200];
    snprintf(dest, sizeof dest, "s3://%s/%s", s.bucket, s.prefix);
    if (journal_open(&j, dir_abs, dest, s.url.base, err, errlen)) {
        free(fl.v);
        cJSON_Delete(j.root);
        return 1;
    }
    aws_http *h = aws_http_new(&s.url, &s.signer, MAX_ATTEMPTS);
    char **checksums = calloc((size_t)fl.n, sizeof *checksums);
    if (!h || !checksums) {
        snprintf(err, errlen, "cannot start libcurl (out of memory?)");
        aws_http_free(h);
        free(checksums);
        free(fl.v);
        cJSON_Delete(j.root);
        return 1;
    }
    progress prog;
    progress_start(&prog, "upload", "MB", (double)st->bytes / 1e6, o->quiet);
    run_state rs = {.j = &j, .prog = &prog, .t0 = now_seconds(), .st = st};
    const char *kill = getenv("QUARRY_TEST_KILL_AFTER_PARTS");
    rs.kill_after = kill ? atoi(kill) : 0;

    int rc = 0;
    for (int i = 0; i < fl.n && !rc; i++) {
        src_file *f = &fl.v[i];
        if (fresh_signer(&s, &s.signer, err, errlen)) {
            rc = 1;
            break;
        }
        checksums[i] = calloc(1, 64);
        char *path = object_path(&s, f->key);
        if (!checksums[i] || !path) {
            free(path);
            snprintf(err, errlen, "out of memory");
            rc = 1;
            break;
        }
        long long ps = s3_choose_part_size(f->size, o->part_size);
        if (ps < 0) {
            snprintf(err, errlen, "%s is %lld bytes; S3 objects are at most 5 TiB", f->rel, f->size);
            free(path);
            rc = 1;
            break;
        }
        cJSON *e = cJSON_GetObjectItem(j.files, f->key);
        const cJSON *old_uid = e ? cJSON_GetObjectItem(e, "upload_id") : NULL;
        if (e && cJSON_IsString(old_uid) && (!journal_matches(e, f, ps) || f->size <= ps)) {
            // The file changed since the interrupted run: its old parts are useless, free them in S3.
            abort_upload(h, &s, path, old_uid->valuestring);
            journal_drop(&j, f);
            e = NULL;
        }
        const cJSON *ck = e ? cJSON_GetObjectItem(e, "checksum") : NULL;
        if (e && journal_matches(e, f, ps) && cJSON_IsTrue(cJSON_GetObjectItem(e, "done")) && cJSON_IsString(ck)) {
            snprintf(checksums[i], 64, "%s", ck->valuestring);   // sent by an earlier run; verified below
            st->files_skipped++;
            rs.bytes_done += f->size;
            rs.bytes_resumed += f->size;
        } else if (f->size <= ps) {
            rc = put_object(h, &s, dir_abs, f, path, checksums[i], &st->bytes_sent, err, errlen) ? 1 : 0;
            if (!rc) {
                rs.bytes_done += f->size;
                journal_put(&j, f, ps, NULL, 1, checksums[i]);
            }
        } else {
            rc = multipart_object(h, &s, dir_abs, f, path, ps, &rs, checksums[i], err, errlen) ? 1 : 0;
            if (!rc) journal_put(&j, f, ps, NULL, 1, checksums[i]);
        }
        progress_show(&prog, rs.bytes_done, rs.bytes_resumed, rs.t0);
        free(path);
    }
    progress_finish(&prog);
    if (!rc && fresh_signer(&s, &s.signer, err, errlen)) rc = 1;
    for (int i = 0; i < fl.n && !rc; i++) {
        char *path = object_path(&s, fl.v[i].key);
        if (!path || verify_object(h, &s, &fl.v[i], path, checksums[i], err, errlen)) {
            if (!path) snprintf(err, errlen, "out of memory");
            // A journal record that no longer matches S3 must not make a rerun skip the file.
            journal_drop(&j, &fl.v[i]);
            rc = 1;
        }
        free(path);
    }
    if (!rc) remove(j.path);   // all done and verified: nothing to resume
    for (int i = 0; i < fl.n; i++) free(checksums[i]);
    free(checksums);
    aws_http_free(h);
    cJSON_Delete(j.root);
    free(fl.v);
    return rc;
}
