// export/sigv4.c — see sigv4.h. The algorithm: docs.aws.amazon.com/IAM/latest/UserGuide/
// create-signed-request.html; path and query rules follow botocore's (the reference SDK).
#include "sigv4.h"
#include "../data/strbuf.h"
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int sigv4_headers_add(sigv4_headers *hs, const char *name, const char *value) {
    if (hs->n >= SIGV4_MAX_HEADERS) return -1;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) { free(n); free(v); return -1; }
    hs->h[hs->n].name = n;
    hs->h[hs->n].value = v;
    hs->n++;
    return 0;
}

const char *sigv4_headers_get(const sigv4_headers *hs, const char *name) {
    for (int i = 0; i < hs->n; i++)
        if (!strcasecmp(hs->h[i].name, name)) return hs->h[i].value;
    return NULL;
}

void sigv4_headers_remove(sigv4_headers *hs, const char *name) {
    int j = 0;
    for (int i = 0; i < hs->n; i++) {
        if (!strcasecmp(hs->h[i].name, name)) {
            free(hs->h[i].name);
            free(hs->h[i].value);
        } else {
            hs->h[j++] = hs->h[i];
        }
    }
    hs->n = j;
}

void sigv4_headers_free(sigv4_headers *hs) {
    for (int i = 0; i < hs->n; i++) {
        free(hs->h[i].name);
        free(hs->h[i].value);
    }
    hs->n = 0;
}

void sigv4_result_free(sigv4_result *r) {
    if (!r) return;
    free(r->canonical_request);
    free(r->string_to_sign);
    free(r->authorization);
    memset(r, 0, sizeof *r);
}

void sigv4_hex(const unsigned char *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

void sigv4_sha256_hex(const void *data, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    if (!EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) || len != 32) {
        out[0] = 0;   // callers treat an empty hash as failure
        return;
    }
    sigv4_hex(md, 32, out);
}

static int hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char out[32]) {
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len) || len != 32)
        return -1;
    return 0;
}

int sigv4_signing_key(const char *secret, const char *date8, const char *region, const char *service,
                      unsigned char key[32]) {
    size_t n = strlen(secret) + 5;
    char *k0 = malloc(n);
    if (!k0) return -1;
    snprintf(k0, n, "AWS4%s", secret);
    unsigned char a[32], b[32];
    int rc = hmac((unsigned char *)k0, strlen(k0), date8, a) || hmac(a, 32, region, b) ||
             hmac(b, 32, service, a) || hmac(a, 32, "aws4_request", key);
    OPENSSL_cleanse(k0, n);
    OPENSSL_cleanse(a, sizeof a);
    OPENSSL_cleanse(b, sizeof b);
    free(k0);
    return rc ? -1 : 0;
}

void sigv4_amz_date(char out[17]) {
    const char *fixed = getenv("QUARRY_TEST_FIXED_TIME");
    if (fixed && strlen(fixed) == 16 && fixed[8] == 'T' && fixed[15] == 'Z') {
        memcpy(out, fixed, 17);
        return;
    }
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int unreserved(unsigned char c) {
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

char *sigv4_uri_encode(const char *s, size_t n, int keep_slash) {
    static const char digits[] = "0123456789ABCDEF";
    char *out = malloc(3 * n + 1), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = digits[c >> 4];
            *p++ = digits[c & 15];
        }
    }
    *p = 0;
    return out;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decodes s[0..n) into a malloc'd buffer; *outn its length. Bad escapes stay literal.
static char *uri_decode(const char *s, size_t n, size_t *outn) {
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[j++] = s[i];
        }
    }
    out[j] = 0;
    *outn = j;
    return out;
}

// botocore's remove_dot_segments: drops empty and "." segments, ".." pops; keeps a leading
// '/' and a trailing '/' (when anything is left). "//a/./b/../" → "/a/".
static char *normalize_path(const char *path) {
    size_t n = strlen(path);
    if (!n) return strdup("/");
    char *work = strdup(path);
    const char **segs = calloc(n + 1, sizeof *segs);
    if (!work || !segs) { free(work); free(segs); return NULL; }
    int nseg = 0;
    char *save = NULL;
    for (char *tok = strtok_r(work, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (!strcmp(tok, ".")) continue;
        if (!strcmp(tok, "..")) {
            if (nseg) nseg--;
            continue;
        }
        segs[nseg++] = tok;
    }
    strbuf b = {0};
    if (path[0] == '/') strbuf_puts(&b, "/");
    for (int i = 0; i < nseg; i++) {
        if (i) strbuf_puts(&b, "/");
        strbuf_puts(&b, segs[i]);
    }
    if (path[n - 1] == '/' && nseg) strbuf_puts(&b, "/");
    free(work);
    free(segs);
    char *out = strbuf_take(&b);
    if (out && !*out) {   // a relative path that normalised to nothing
        free(out);
        out = strdup("/");
    }
    return out;
}

typedef struct {
    char *key, *value;   // URI-encoded
} qparam;

static int qparam_cmp(const void *a, const void *b) {
    const qparam *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->value, y->value);
}

// Each key and value is decoded and re-encoded the AWS way, then pairs are sorted by key, then value.
static char *canonical_query(const char *query) {
    if (!query || !*query) return strdup("");
    size_t n = strlen(query), count = 1;
    for (size_t i = 0; i < n; i++) count += query[i] == '&';
    qparam *ps = calloc(count, sizeof *ps);
    if (!ps) return NULL;
    size_t np = 0;
    int oom = 0;
    const char *p = query;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len) {
            const char *eq = memchr(p, '=', len);
            size_t klen = eq ? (size_t)(eq - p) : len;
            size_t kd, vd;
            char *k = uri_decode(p, klen, &kd);
            char *v = eq ? uri_decode(eq + 1, len - klen - 1, &vd) : (vd = 0, strdup(""));
            if (k && v) {
                ps[np].key = sigv4_uri_encode(k, kd, 0);
                ps[np].value = sigv4_uri_encode(v, vd, 0);
                if (!ps[np].key || !ps[np].value) oom = 1;
                np++;
            } else {
                oom = 1;
            }
            free(k);
            free(v);
            if (oom) break;
        }
        if (!amp) break;
        p = amp + 1;
    }
    strbuf b = {0};
    if (!oom) {
        qsort(ps, np, sizeof *ps, qparam_cmp);
        for (size_t i = 0; i < np; i++) {
            if (i) strbuf_puts(&b, "&");
            strbuf_puts(&b, ps[i].key);
            strbuf_puts(&b, "=");
            strbuf_puts(&b, ps[i].value);
        }
    }
    for (size_t i = 0; i < np; i++) {
        free(ps[i].key);
        free(ps[i].value);
    }
    free(ps);
    if (oom) {
        free(b.s);
        return NULL;
    }
    return strbuf_take(&b);
}

// Trims and collapses every run of whitespace (line folds included) to one space.
static void put_header_value(strbuf *b, const char *v) {
    int pending_space = 0, any = 0;
    for (const char *p = v; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            pending_space = any;
            continue;
        }
        if (pending_space) strbuf_put(b, " ", 1);
        pending_space = 0;
        strbuf_put(b, p, 1);
        any = 1;
    }
}

typedef struct {
    char *lname;
    int first;   // index of the first occurrence, to keep value order stable
} hname;

static int hname_cmp(const void *a, const void *b) {
    return strcmp(((const hname *)a)->lname, ((const hname *)b)->lname);
}

static void set_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

int sigv4_sign(const sigv4_signer *s, const char *method, const char *path, const char *query,
               sigv4_headers *hs, const char *payload_hash, const char *amz_date, sigv4_result *out,
               char *err, size_t errlen) {
    if (out) memset(out, 0, sizeof *out);
    sigv4_headers_remove(hs, "Authorization");
    const char *date = sigv4_headers_get(hs, "X-Amz-Date");
    if (!date) {
        if (!amz_date || sigv4_headers_add(hs, "X-Amz-Date", amz_date)) {
            set_err(err, errlen, "no X-Amz-Date (or too many headers)");
            return -1;
        }
        date = sigv4_headers_get(hs, "X-Amz-Date");
    }
    if (strlen(date) != 16 || date[8] != 'T') {
        set_err(err, errlen, "X-Amz-Date must look like 20150830T123600Z");
        return -1;
    }
    if (s->session_token && *s->session_token && !sigv4_headers_get(hs, "X-Amz-Security-Token") &&
        sigv4_headers_add(hs, "X-Amz-Security-Token", s->session_token)) {
        set_err(err, errlen, "too many headers");
        return -1;
    }
    if (!sigv4_headers_get(hs, "Host")) {
        set_err(err, errlen, "the request has no Host header");
        return -1;
    }

    int rc = -1;
    char *curi = NULL, *cquery = NULL, *creq = NULL, *sts = NULL, *signed_list = NULL;
    hname names[SIGV4_MAX_HEADERS];
    int nnames = 0;
    for (int i = 0; i < hs->n; i++) {
        char lname[256];
        size_t len = strlen(hs->h[i].name);
        if (len >= sizeof lname) { set_err(err, errlen, "header name too long"); goto done; }
        for (size_t k = 0; k <= len; k++) lname[k] = (char)tolower((unsigned char)hs->h[i].name[k]);
        int seen = 0;
        for (int j = 0; j < nnames; j++) seen |= !strcmp(names[j].lname, lname);
        if (seen) continue;
        names[nnames].lname = strdup(lname);
        if (!names[nnames].lname) goto oom;
        names[nnames].first = i;
        nnames++;
    }
    qsort(names, (size_t)nnames, sizeof *names, hname_cmp);

    if (s->s3) {
        curi = strdup(path && *path ? path : "/");
    } else {
        char *norm = normalize_path(path ? path : "/");
        if (!norm) goto oom;
        curi = sigv4_uri_encode(norm, strlen(norm), 1);
        free(norm);
    }
    cquery = canonical_query(query);
    if (!curi || !cquery) goto oom;

    strbuf b = {0}, sl = {0};
    strbuf_puts(&b, method);
    strbuf_puts(&b, "\n");
    strbuf_puts(&b, curi);
    strbuf_puts(&b, "\n");
    strbuf_puts(&b, cquery);
    strbuf_puts(&b, "\n");
    for (int j = 0; j < nnames; j++) {
        strbuf_puts(&b, names[j].lname);
        strbuf_puts(&b, ":");
        int nvals = 0;
        for (int i = names[j].first; i < hs->n; i++) {
            if (strcasecmp(hs->h[i].name, names[j].lname)) continue;
            if (nvals++) strbuf_puts(&b, ",");
            put_header_value(&b, hs->h[i].value);
        }
        strbuf_puts(&b, "\n");
        if (j) strbuf_puts(&sl, ";");
        strbuf_puts(&sl, names[j].lname);
    }
    signed_list = strbuf_take(&sl);
    strbuf_puts(&b, "\n");
    strbuf_puts(&b, signed_list ? signed_list : "");
    strbuf_puts(&b, "\n");
    strbuf_puts(&b, payload_hash);
    creq = strbuf_take(&b);
    if (!creq || !signed_list) goto oom;

    char date8[9], scope[256], creq_hash[65];
    memcpy(date8, date, 8);
    date8[8] = 0;
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", date8, s->region, s->service);
    sigv4_sha256_hex(creq, strlen(creq), creq_hash);
    strbuf t = {0};
    strbuf_puts(&t, "AWS4-HMAC-SHA256\n");
    strbuf_puts(&t, date);
    strbuf_puts(&t, "\n");
    strbuf_puts(&t, scope);
    strbuf_puts(&t, "\n");
    strbuf_puts(&t, creq_hash);
    sts = strbuf_take(&t);
    if (!sts || !creq_hash[0]) goto oom;

    unsigned char key[32], sig[32];
    char sighex[65];
    if (sigv4_signing_key(s->secret_key, date8, s->region, s->service, key) ||
        hmac(key, 32, sts, sig)) {
        OPENSSL_cleanse(key, sizeof key);
        set_err(err, errlen, "OpenSSL HMAC-SHA256 failed");
        goto done;
    }
    OPENSSL_cleanse(key, sizeof key);
    sigv4_hex(sig, 32, sighex);
    size_t alen = strlen(s->access_key) + strlen(scope) + strlen(signed_list) + 128;
    char *authz = malloc(alen);
    if (!authz) goto oom;
    snprintf(authz, alen, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
             s->access_key, scope, signed_list, sighex);
    if (sigv4_headers_add(hs, "Authorization", authz)) {
        free(authz);
        set_err(err, errlen, "too many headers");
        goto done;
    }
    if (out) {
        out->canonical_request = creq;
        out->string_to_sign = sts;
        out->authorization = authz;
        creq = sts = NULL;
    } else {
        free(authz);
    }
    rc = 0;
    goto done;
oom:
    set_err(err, errlen, "out of memory");
done:
    for (int j = 0; j < nnames; j++) free(names[j].lname);
    free(curi);
    free(cquery);
    free(creq);
    free(sts);
    free(signed_list);
    return rc;
}
