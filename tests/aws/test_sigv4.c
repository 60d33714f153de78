// tests/aws/test_sigv4.c — every case of the official AWS SigV4 test suite
// (../shared/testdata/sigv4/aws4_testsuite, from botocore): our canonical request, string to
// sign, Authorization header and signed request equal the suite's files byte for byte.
//
// Two cases need a session token, as botocore's runner gives them:
//   get-vanilla-with-session-token: the signer holds the token "6e86…4267" and adds
//     X-Amz-Security-Token itself, so it is signed (the S3/STS "before" style).
//   post-sts-token/post-sts-header-after: the token is added only after signing (services that
//     want it unsigned), so we sign without a token and append the header afterwards.
// No case is skipped: the walk counts the cases and fails if fewer than the suite's 34 are found.
#include "export/sigv4.h"
#include "test.h"
#include <dirent.h>
#include <sys/stat.h>

#define SUITE_DATE "20150830T123600Z"
static const char *STS_TOKEN = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            char *p = realloc(s, cap *= 2);
            if (!p) { free(s); s = NULL; }
            else s = p;
        }
    }
    fclose(f);
    if (s) s[len] = 0;
    if (n) *n = len;
    return s;
}

static void expect_equal(const char *casename, const char *what, const char *got, const char *want) {
    if (got && want && !strcmp(got, want)) return;
    fprintf(stderr, "FAIL sigv4 %s: %s differs\n--- ours ---\n%s\n--- suite ---\n%s\n---\n", casename, what,
            got ? got : "(null)", want ? want : "(missing file)");
    test_failures++;
}

// One case: dir/name.{req,creq,sts,authz,sreq}.
static void run_case(const char *dir, const char *name) {
    char path[4096];
    size_t reqn;
    snprintf(path, sizeof path, "%s/%s.req", dir, name);
    char *req = read_all(path, &reqn);
    if (!req) { CHECK(0, "cannot read %s", path); return; }

    // Request line: METHOD SP URI SP HTTP/1.1 — the URI may itself hold spaces.
    char *eol = strchr(req, '\n');
    char *line_end = eol ? eol : req + reqn;
    char *sp = memchr(req, ' ', (size_t)(line_end - req));
    char *http = NULL;
    for (char *p = line_end - 1; p > req; p--)
        if (*p == ' ') { http = p; break; }
    if (!sp || !http || http <= sp) { CHECK(0, "%s: bad request line", name); free(req); return; }
    char *method = strndup(req, (size_t)(sp - req));
    char *target = strndup(sp + 1, (size_t)(http - sp - 1));
    char *q = strchr(target, '?');
    const char *query = NULL;
    if (q) { *q = 0; query = q + 1; }

    // Headers up to the blank line; continuation lines (leading whitespace) fold into the value.
    sigv4_headers hs = {0};
    const char *body = "";
    char *headers_text_end = line_end;
    char *p = eol ? eol + 1 : req + reqn;
    while (p < req + reqn) {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0) { body = e + 1; break; }
        if ((*p == ' ' || *p == '\t') && hs.n) {
            sigv4_header *h = &hs.h[hs.n - 1];
            size_t old = strlen(h->value);
            char *v = realloc(h->value, old + len + 2);
            if (v) { v[old] = '\n'; memcpy(v + old + 1, p, len); v[old + 1 + len] = 0; h->value = v; }
        } else {
            char *colon = memchr(p, ':', len);
            if (!colon) { CHECK(0, "%s: header line without ':'", name); break; }
            char *hname = strndup(p, (size_t)(colon - p)), *hval = strndup(colon + 1, len - (size_t)(colon - p) - 1);
            CHECK(!sigv4_headers_add(&hs, hname, hval), "%s: too many headers", name);
            free(hname);
            free(hval);
        }
        headers_text_end = e ? e : p + len;
        if (!e) break;
        p = e + 1;
    }
    int nparsed = hs.n;

    char payload[65];
    sigv4_sha256_hex(body, strlen(body), payload);
    sigv4_signer s = {.access_key = "AKIDEXAMPLE", .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                      .region = "us-east-1", .service = "service"};
    if (!strcmp(name, "get-vanilla-with-session-token"))
        s.session_token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    sigv4_result r;
    char err[200];
    int rc = sigv4_sign(&s, method, target, query, &hs, payload, SUITE_DATE, &r, err, sizeof err);
    CHECK(rc == 0, "%s: sigv4_sign failed: %s", name, err);
    if (rc == 0) {
        if (!strcmp(name, "post-sts-header-after")) sigv4_headers_add(&hs, "X-Amz-Security-Token", STS_TOKEN);
        const char *ext[] = {"creq", "sts", "authz"};
        const char *got[] = {r.canonical_request, r.string_to_sign, r.authorization};
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext[i]);
            char *want = read_all(path, NULL);
            expect_equal(name, ext[i], got[i], want);
            free(want);
        }
        // The signed request: the original text, then the headers we added, then Authorization.
        size_t cap = reqn + 4096;
        char *sreq = malloc(cap);
        if (sreq) {
            int n = snprintf(sreq, cap, "%.*s", (int)(headers_text_end - req), req);
            for (int i = nparsed; i < hs.n; i++)
                if (strcasecmp(hs.h[i].name, "Authorization"))
                    n += snprintf(sreq + n, cap - (size_t)n, "\n%s:%s", hs.h[i].name, hs.h[i].value);
            n += snprintf(sreq + n, cap - (size_t)n, "\nAuthorization: %s", r.authorization);
            if (*body) snprintf(sreq + n, cap - (size_t)n, "\n\n%s", body);
            snprintf(path, sizeof path, "%s/%s.sreq", dir, name);
            char *want = read_all(path, NULL);
            // The suite's own get-vanilla-with-session-token.sreq repeats get-vanilla's signature
            // (5fa00f…), contradicting its .authz (07ec16…, checked above); botocore's runner never
            // reads .sreq. For that case the signed request is compared up to the signature.
            if (want && !strcmp(name, "get-vanilla-with-session-token")) {
                char *a = strstr(sreq, "Signature="), *b = strstr(want, "Signature=");
                if (a) a[0] = 0;
                if (b) b[0] = 0;
            }
            expect_equal(name, "sreq", sreq, want);
            free(want);
            free(sreq);
        }
        sigv4_result_free(&r);
    }
    sigv4_headers_free(&hs);
    free(method);
    free(target);
    free(req);
}

static int walk(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int ncases = 0;
    struct dirent *e;
    char **subs = NULL;
    int nsubs = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) || !S_ISDIR(st.st_mode)) continue;
        char **n = realloc(subs, (size_t)(nsubs + 1) * sizeof *subs);
        if (!n) break;
        subs = n;
        subs[nsubs++] = strdup(path);
    }
    closedir(d);
    for (int i = 0; i < nsubs; i++) {
        const char *base = strrchr(subs[i], '/') + 1;
        char req[4096];
        snprintf(req, sizeof req, "%s/%s.req", subs[i], base);
        struct stat st;
        if (!stat(req, &st)) {
            run_case(subs[i], base);
            ncases++;
        }
        ncases += walk(subs[i]);   // normalize-path/ and post-sts-token/ hold cases one level down
        free(subs[i]);
    }
    free(subs);
    return ncases;
}

static void test_helpers(void) {
    char *e = sigv4_uri_encode("a b/ሴ~", strlen("a b/ሴ~"), 0);
    CHECK(e && !strcmp(e, "a%20b%2F%E1%88%B4~"), "uri_encode gave %s", e ? e : "(null)");
    free(e);
    // A signing key from the AWS documentation's example (secret wJalr…, 20120215, us-east-1, iam).
    unsigned char key[32];
    char hex[65];
    CHECK(!sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam", key), "key");
    sigv4_hex(key, 32, hex);
    CHECK(!strcmp(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"), "signing key %s", hex);
}

int main(void) {
    const char *data = test_env("QUARRY_TESTDATA", "../shared/testdata");
    char suite[4096];
    snprintf(suite, sizeof suite, "%s/sigv4/aws4_testsuite", data);
    struct stat st;
    if (stat(suite, &st)) SKIP("%s not found", suite);
    test_helpers();
    int n = walk(suite);
    printf("sigv4: %d suite cases checked\n", n);
    CHECK(n >= 34, "expected the 34 cases of the suite, found %d", n);
    return test_finish("test_sigv4");
}
