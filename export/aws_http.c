// export/aws_http.c — see aws_http.h.
#include "aws_http.h"
#include <curl/curl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct aws_http {
    CURL *curl;
    aws_url url;
    const sigv4_signer *signer;
    int max_attempts;
};

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} grow;

static void grow_put(grow *g, const void *p, size_t n) {
    if (g->oom) return;
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 1024;
        while (cap < g->len + n + 1) cap *= 2;
        char *q = realloc(g->s, cap);
        if (!q) { g->oom = 1; return; }
        g->s = q;
        g->cap = cap;
    }
    memcpy(g->s + g->len, p, n);
    g->len += n;
    g->s[g->len] = 0;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
    grow_put(ud, p, size * n);
    return ((grow *)ud)->oom ? 0 : size * n;
}

typedef struct {
    const char *data;
    size_t len, off;
} reader;

static size_t on_read(char *p, size_t size, size_t n, void *ud) {
    reader *r = ud;
    size_t want = size * n, left = r->len - r->off;
    if (want > left) want = left;
    memcpy(p, r->data + r->off, want);
    r->off += want;
    return want;
}

static int on_seek(void *ud, curl_off_t off, int origin) {
    reader *r = ud;
    if (origin != SEEK_SET || off < 0 || (size_t)off > r->len) return CURL_SEEKFUNC_CANTSEEK;
    r->off = (size_t)off;
    return CURL_SEEKFUNC_OK;
}

int aws_url_parse(const char *url, aws_url *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const char *sep = strstr(url, "://");
    if (!sep || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        snprintf(err, errlen, "endpoint URL '%s' must start with http:// or https://", url);
        return -1;
    }
    const char *host = sep + 3, *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    if (!hlen || hlen >= sizeof out->host || strchr(host, '?') || strchr(host, '@')) {
        snprintf(err, errlen, "endpoint URL '%s' has no usable host", url);
        return -1;
    }
    if (slash && strcmp(slash, "/")) {
        snprintf(err, errlen, "endpoint URL '%s' must not have a path (give scheme://host[:port])", url);
        return -1;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = 0;
    snprintf(out->base, sizeof out->base, "%.*s%s", (int)(host - url), url, out->host);
    return 0;
}

void aws_url_warn_plain(const aws_url *u, const char *command) {
    // Said for loopback too: a local proxy or tunnel may forward it anywhere.
    if (!strncmp(u->base, "http://", 7))
        fprintf(stderr, "quarry %s: warning: %s is plain HTTP: the access key id, session token, request signatures and "
                "the data travel unencrypted; use https:// unless this endpoint is on this machine\n", command, u->base);
}

void aws_response_free(aws_response *r) {
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

int aws_response_header(const aws_response *r, const char *name, char *out, size_t outlen) {
    if (!r->headers) return -1;
    size_t n = strlen(name);
    int found = -1;
    // Several header blocks may be present (100 Continue); the last match wins.
    for (const char *p = r->headers; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > n && p[n] == ':' && !strncasecmp(p, name, n)) {
            const char *v = p + n + 1;
            const char *end = p + len;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ')) end--;
            snprintf(out, outlen, "%.*s", (int)(end - v), v);
            found = 0;
        }
        p = e ? e + 1 : NULL;
    }
    return found;
}

aws_http *aws_http_new(const aws_url *url, const sigv4_signer *signer, int max_attempts) {
    aws_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) {
        free(h);
        return NULL;
    }
    h->url = *url;
    h->signer = signer;
    h->max_attempts = max_attempts < 1 ? 1 : max_attempts;
    return h;
}

void aws_http_free(aws_http *h) {
    if (!h) return;
    curl_easy_cleanup(h->curl);
    free(h);
}

int aws_http_retryable(long status, const char *code) {
    if (status == 429 || status == 500 || status == 502 || status == 503 || status == 504) return 1;
    static const char *codes[] = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                                  "InternalError", "ServiceUnavailable", "RequestLimitExceeded",
                                  "TooManyRequestsException", "ProvisionedThroughputExceededException"};
    for (size_t i = 0; code && i < sizeof codes / sizeof codes[0]; i++)
        if (!strcmp(code, codes[i])) return 1;
    return 0;
}

static int curl_retryable(CURLcode c) {
    return c == CURLE_COULDNT_CONNECT || c == CURLE_OPERATION_TIMEDOUT || c == CURLE_SEND_ERROR ||
           c == CURLE_RECV_ERROR || c == CURLE_GOT_NOTHING || c == CURLE_PARTIAL_FILE ||
           c == CURLE_COULDNT_RESOLVE_HOST || c == CURLE_SSL_CONNECT_ERROR || c == CURLE_HTTP2 ||
           c == CURLE_HTTP2_STREAM;
}

void aws_xml_tag(const char *xml, const char *tag, char *out, size_t outlen) {
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *a = strstr(xml, open);
    const char *b = a ? strstr(a, close) : NULL;
    if (a && b) snprintf(out, outlen, "%.*s", (int)(b - a - strlen(open)), a + strlen(open));
}

// A JSON string member "name":"value" (no unescaping beyond the plain case).
static void json_member(const char *json, const char *name, char *out, size_t outlen) {
    char key[64];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *k = strstr(json, key);
    if (!k) return;
    const char *p = k + strlen(key);
    while (*p == ' ' || *p == ':') p++;
    if (*p != '"') return;
    const char *e = ++p;
    while (*e && *e != '"') e += (*e == '\\' && e[1]) ? 2 : 1;
    snprintf(out, outlen, "%.*s", (int)(e - p), p);
}

static void parse_error(aws_response *r) {
    r->code[0] = r->message[0] = 0;
    if (r->status < 300 && !(r->body && strstr(r->body, "<Error>"))) return;
    char t[256] = "";
    if (!aws_response_header(r, "x-amzn-ErrorType", t, sizeof t)) {
        t[strcspn(t, ":")] = 0;   // "ValidationException:http://internal.amazon.com/..."
        snprintf(r->code, sizeof r->code, "%s", t);
    }
    if (r->body && r->body_len) {
        if (r->body[0] == '<' || strstr(r->body, "<Error>")) {
            aws_xml_tag(r->body, "Code", r->code, sizeof r->code);
            aws_xml_tag(r->body, "Message", r->message, sizeof r->message);
        } else {
            if (!r->code[0]) json_member(r->body, "__type", r->code, sizeof r->code);
            if (!r->code[0]) json_member(r->body, "code", r->code, sizeof r->code);
            json_member(r->body, "message", r->message, sizeof r->message);
            if (!r->message[0]) json_member(r->body, "Message", r->message, sizeof r->message);
        }
        char *hash = strrchr(r->code, '#');   // "com.amazon...#ValidationException"
        if (hash) memmove(r->code, hash + 1, strlen(hash));
    }
}

// memmem (a GNU extension, outside the project's feature set).
static const char *find_bytes(const char *hay, size_t hlen, const char *needle, size_t n) {
    for (const char *p = hay; hlen >= n && (p = memchr(p, needle[0], hlen - n + 1 - (size_t)(p - hay))); p++)
        if (!memcmp(p, needle, n)) return p;
    return NULL;
}

// Replaces every occurrence of secret (n bytes) in the text *s (*len bytes, NUL-terminated,
// malloc'ed) with "[REDACTED]". -1 when out of memory (*s then freed and NULL).
static int replace_secret(char **s, size_t *len, const char *secret, size_t n) {
    static const char mark[] = "[REDACTED]";
    if (!*s || n < 8) return 0;   // shorter "secrets" would hit ordinary text
    size_t count = 0;
    for (const char *p = *s; (p = find_bytes(p, *len - (size_t)(p - *s), secret, n)); p += n) count++;
    if (!count) return 0;
    size_t m = sizeof mark - 1, nlen = *len - count * n + count * m;
    char *out = malloc(nlen + 1), *o = out;
    if (!out) { OPENSSL_cleanse(*s, *len); free(*s); *s = NULL; return -1; }
    const char *p = *s, *end = *s + *len;
    for (const char *q; (q = find_bytes(p, (size_t)(end - p), secret, n)); p = q + n) {
        memcpy(o, p, (size_t)(q - p)); o += q - p;
        memcpy(o, mark, m); o += m;
    }
    memcpy(o, p, (size_t)(end - p)); o += end - p;
    *o = 0;
    OPENSSL_cleanse(*s, *len);
    free(*s);
    *s = out;
    *len = nlen;
    return 0;
}

// Servers and proxies may echo the request (an error page quoting its headers): everything that
// comes back — body and headers, hence the code and message parsed from them and any text a
// caller prints — is cleared of the request's secrets, as sent, JSON-escaped ('/' as "\/") and
// URI-encoded: the secret key, the session token, the Authorization signature and the access key id.
static int redact_response(const sigv4_signer *sg, const char *signature, aws_response *r) {
    const char *secrets[] = {sg->secret_key, sg->session_token, signature, sg->access_key};
    size_t hlen = r->headers ? strlen(r->headers) : 0;
    int rc = 0;
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        if (!secrets[i] || !*secrets[i]) continue;
        size_t n = strlen(secrets[i]);
        char *forms[3] = {NULL, malloc(2 * n + 1), sigv4_uri_encode(secrets[i], n, 0)};
        if (forms[1]) {   // JSON may escape '/'
            char *o = forms[1];
            for (size_t k = 0; k < n; k++) {
                if (secrets[i][k] == '/') *o++ = '\\';
                *o++ = secrets[i][k];
            }
            *o = 0;
        }
        for (int f = 0; f < 3; f++) {
            const char *form = f == 0 ? secrets[i] : forms[f];
            if (!form) { rc = -1; continue; }
            if (f && !strcmp(form, secrets[i])) continue;
            rc |= replace_secret(&r->body, &r->body_len, form, strlen(form));
            rc |= replace_secret(&r->headers, &hlen, form, strlen(form));
        }
        for (int f = 1; f < 3; f++)
            if (forms[f]) { OPENSSL_cleanse(forms[f], strlen(forms[f])); free(forms[f]); }
    }
    return rc;
}

static void backoff_sleep(int attempt) {
    // Full jitter: uniform in [0, min(cap, base·2^attempt)) — spreads retries of parallel parts.
    double cap = 20.0, base = 0.25, limit = base;
    for (int i = 0; i < attempt && limit < cap; i++) limit *= 2;
    if (limit > cap) limit = cap;
    unsigned int rnd = 0;
    if (RAND_bytes((unsigned char *)&rnd, sizeof rnd) != 1) rnd = (unsigned int)time(NULL) * 2654435761u;
    double s = limit * (rnd / 4294967296.0);
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int aws_http_request(aws_http *h, const char *method, const char *path, const char *query,
                     const sigv4_headers *extra, const void *body, size_t body_len,
                     const char *payload_hash, aws_response *r) {
    memset(r, 0, sizeof *r);
    char hash[65];
    if (!payload_hash) {
        sigv4_sha256_hex(body ? body : "", body ? body_len : 0, hash);
        payload_hash = hash;
    }
    size_t urllen = strlen(h->url.base) + strlen(path) + (query ? strlen(query) : 0) + 4;
    char *url = malloc(urllen);
    if (!url) {
        snprintf(r->message, sizeof r->message, "out of memory");
        return -1;
    }
    snprintf(url, urllen, "%s%s%s%s", h->url.base, path, query && *query ? "?" : "", query && *query ? query : "");

    int rc = -1;
    for (int attempt = 0; attempt < h->max_attempts; attempt++) {
        if (attempt) backoff_sleep(attempt);
        free(r->body);
        free(r->headers);
        r->body = r->headers = NULL;
        r->body_len = 0;
        r->status = 0;
        r->attempts = attempt + 1;

        // Signed afresh each attempt: X-Amz-Date must be within 15 minutes of the server's clock.
        sigv4_headers hs = {0};
        char amz_date[17], serr[200];
        sigv4_amz_date(amz_date);
        int bad = sigv4_headers_add(&hs, "Host", h->url.host);
        for (int i = 0; extra && i < extra->n && !bad; i++) bad = sigv4_headers_add(&hs, extra->h[i].name, extra->h[i].value);
        // A signer without keys sends the request unsigned (STS web identity, the SSO portal).
        if (bad || (h->signer->access_key &&
                    sigv4_sign(h->signer, method, path, query, &hs, payload_hash, amz_date, NULL, serr, sizeof serr))) {
            snprintf(r->message, sizeof r->message, "cannot sign the request: %s", bad ? "too many headers" : serr);
            sigv4_headers_free(&hs);
            break;
        }
        // The signature, to clear it from whatever the server sends back.
        char signature[128] = "";
        const char *auth = sigv4_headers_get(&hs, "Authorization"), *sig = auth ? strstr(auth, "Signature=") : NULL;
        if (sig) snprintf(signature, sizeof signature, "%s", sig + 10);
        struct curl_slist *list = NULL, *l;
        int ok = 1;
        for (int i = 0; i < hs.n && ok; i++) {
            size_t n = strlen(hs.h[i].name) + strlen(hs.h[i].value) + 3;
            char *line = malloc(n);
            if (!line) { ok = 0; break; }
            snprintf(line, n, "%s: %s", hs.h[i].name, hs.h[i].value);
            l = curl_slist_append(list, line);
            OPENSSL_cleanse(line, n);   // the line may hold a session token
            free(line);
            if (!l) ok = 0;
            else list = l;
        }
        // curl would add these unsigned; Expect also costs a round trip per part.
        if (ok && (l = curl_slist_append(list, "Expect:"))) list = l;
        if (ok && !sigv4_headers_get(&hs, "Content-Type") && (l = curl_slist_append(list, "Content-Type:"))) list = l;
        if (ok && (l = curl_slist_append(list, "Accept:"))) list = l;
        sigv4_headers_free(&hs);
        if (!ok) {
            curl_slist_free_all(list);
            snprintf(r->message, sizeof r->message, "out of memory");
            break;
        }

        CURL *c = h->curl;
        curl_easy_reset(c);
        grow gb = {0}, gh = {0};
        reader rd = {body, body ? body_len : 0, 0};
        char errbuf[CURL_ERROR_SIZE] = "";
        int setup = curl_easy_setopt(c, CURLOPT_URL, url) || curl_easy_setopt(c, CURLOPT_HTTPHEADER, list) ||
                    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write) || curl_easy_setopt(c, CURLOPT_WRITEDATA, &gb) ||
                    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_write) || curl_easy_setopt(c, CURLOPT_HEADERDATA, &gh) ||
                    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf) || curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) ||
                    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L) ||
                    // A stalled transfer (< 1 KB/s for 60 s) is a timeout, then a retry.
                    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L) || curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        if (!strcmp(method, "PUT")) {
            setup = setup || curl_easy_setopt(c, CURLOPT_UPLOAD, 1L) || curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read) ||
                    curl_easy_setopt(c, CURLOPT_READDATA, &rd) || curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek) ||
                    curl_easy_setopt(c, CURLOPT_SEEKDATA, &rd) ||
                    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rd.len);
        } else if (!strcmp(method, "POST")) {
            setup = setup || curl_easy_setopt(c, CURLOPT_POST, 1L) ||
                    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? (const char *)body : "") ||
                    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rd.len);
        } else if (!strcmp(method, "HEAD")) {
            setup = setup || curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        } else if (strcmp(method, "GET")) {
            setup = setup || curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        }
        CURLcode cc = setup ? CURLE_FAILED_INIT : curl_easy_perform(c);
        curl_slist_free_all(list);
        r->body = gb.s ? gb.s : calloc(1, 1);
        r->body_len = gb.s ? gb.len : 0;
        r->headers = gh.s;
        int redact_failed = r->body && redact_response(h->signer, signature, r);
        OPENSSL_cleanse(signature, sizeof signature);
        if (gb.oom || gh.oom || !r->body || redact_failed) {
            snprintf(r->message, sizeof r->message, "out of memory reading the response");
            break;
        }
        if (cc != CURLE_OK) {
            snprintf(r->message, sizeof r->message, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
            if (curl_retryable(cc)) continue;
            break;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        parse_error(r);
        rc = 0;
        if (aws_http_retryable(r->status, r->code) && attempt + 1 < h->max_attempts) {
            rc = -1;
            continue;
        }
        break;
    }
    free(url);
    if (rc && r->status) rc = 0;   // retries exhausted on a retryable status: the caller reports it
    return rc;
}
