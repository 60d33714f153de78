// export/aws_sts.c — see aws_sts.h.
#include "aws_sts.h"
#include "aws_config.h"
#include "aws_credentials.h"
#include "aws_http.h"
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

time_t aws_parse_time(const char *s) {
    int Y, M, D, h, m, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || n != 19) return -1;
    const char *p = s + 19;
    if (*p == '.') for (p++; isdigit((unsigned char)*p); p++) {}
    long off = 0;
    if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2) return -1;
        off = (*p == '-' ? -1 : 1) * (oh * 3600L + om * 60L);
        p += 6;
    } else if (*p == 'Z') {
        p++;
    } else if (!strcmp(p, "UTC")) {
        p += 3;
    }
    if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) return -1;
    // Days since 1970-01-01 of a proleptic Gregorian date (no timegm in strict POSIX).
    int y = Y - (M <= 2);
    long era = (y >= 0 ? y : y - 399) / 400, yoe = y - era * 400;
    long doy = (153 * (M + (M > 2 ? -3 : 9)) + 2) / 5 + D - 1, doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long days = era * 146097 + doe - 719468;
    return (time_t)(days * 86400L + h * 3600L + m * 60L + sec - off);
}

void aws_temp_keys_free(aws_temp_keys *k) {
    aws_secret_free(&k->access_key);
    aws_secret_free(&k->secret_key);
    aws_secret_free(&k->session_token);
    k->expiration = 0;
}

// Appends &name=URI-encoded(value) to the form body.
static int form_add(char *body, size_t cap, const char *name, const char *value) {
    char *enc = sigv4_uri_encode(value, strlen(value), 0);
    if (!enc) return -1;
    size_t len = strlen(body);
    int n = snprintf(body + len, cap - len, "&%s=%s", name, enc);
    OPENSSL_cleanse(enc, strlen(enc));
    free(enc);
    return n < 0 || (size_t)n >= cap - len ? -1 : 0;
}

// Sends the form to STS and reads <Credentials> from the answer.
static int sts_call(const aws_sts_request *q, const char *action, const char *body, const sigv4_signer *sg,
                    aws_temp_keys *out, char *err, size_t errlen) {
    char ep[600];
    int have = aws_endpoint_resolve(NULL, q->profile_flag, "STS", "sts", ep, sizeof ep);
    if (have < 0) {
        snprintf(err, errlen, "the configured STS endpoint is too long");
        return -1;
    }
    if (!have) {
        if (q->region) snprintf(ep, sizeof ep, "https://sts.%s.amazonaws.com", q->region);
        else snprintf(ep, sizeof ep, "https://sts.amazonaws.com");
    }
    aws_url url;
    if (aws_url_parse(ep, &url, err, errlen)) return -1;
    aws_http *h = aws_http_new(&url, sg, 4);
    sigv4_headers hs = {0};
    if (!h || sigv4_headers_add(&hs, "Content-Type", "application/x-www-form-urlencoded; charset=utf-8")) {
        aws_http_free(h);
        sigv4_headers_free(&hs);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    aws_response r;
    int rc = aws_http_request(h, "POST", "/", NULL, &hs, body, strlen(body), NULL, &r);
    sigv4_headers_free(&hs);
    aws_http_free(h);
    if (rc || r.status != 200) {
        if (rc) snprintf(err, errlen, "STS %s at %s: no response: %s", action, url.base, r.message);
        else snprintf(err, errlen, "STS %s of %s at %s: HTTP %ld %s: %s", action, q->role_arn, url.base, r.status,
                      r.code, r.message);
        aws_response_free(&r);
        return -1;
    }
    char *vals[3] = {NULL, NULL, NULL}, exp[64] = "";
    const char *tags[3] = {"AccessKeyId", "SecretAccessKey", "SessionToken"};
    size_t cap = r.body_len + 1;
    int bad = 0;
    for (int i = 0; i < 3 && !bad; i++) {
        if (!(vals[i] = calloc(1, cap))) bad = 1;
        else aws_xml_tag(r.body, tags[i], vals[i], cap);
        if (!bad && !vals[i][0]) bad = 2;
    }
    aws_xml_tag(r.body, "Expiration", exp, sizeof exp);
    OPENSSL_cleanse(r.body, r.body_len);
    aws_response_free(&r);
    time_t t = exp[0] ? aws_parse_time(exp) : -1;
    if (bad || t < 0) {
        for (int i = 0; i < 3; i++) aws_secret_free(&vals[i]);
        snprintf(err, errlen, "STS %s at %s: %s", action, url.base,
                 bad == 1 ? "out of memory" : "the answer lacks the credentials or their expiration");
        return -1;
    }
    *out = (aws_temp_keys){vals[0], vals[1], vals[2], t};
    return 0;
}

static int common_form(char *body, size_t cap, const char *action, const aws_sts_request *q) {
    snprintf(body, cap, "Action=%s&Version=2011-06-15", action);
    char dur[32];
    snprintf(dur, sizeof dur, "%d", q->duration_seconds);
    return form_add(body, cap, "RoleArn", q->role_arn) || form_add(body, cap, "RoleSessionName", q->session_name) ||
           (q->duration_seconds && form_add(body, cap, "DurationSeconds", dur));
}

int aws_sts_assume_role(const aws_sts_request *q, const char *access_key, const char *secret_key,
                        const char *token, aws_temp_keys *out, char *err, size_t errlen) {
    char body[8192];
    if (common_form(body, sizeof body, "AssumeRole", q) ||
        (q->external_id && form_add(body, sizeof body, "ExternalId", q->external_id))) {
        snprintf(err, errlen, "the AssumeRole request for %s is too long", q->role_arn);
        return -1;
    }
    sigv4_signer sg = {.access_key = access_key, .secret_key = secret_key, .session_token = token,
                       .region = q->region ? q->region : "us-east-1", .service = "sts"};
    return sts_call(q, "AssumeRole", body, &sg, out, err, errlen);
}

int aws_sts_assume_role_web_identity(const aws_sts_request *q, const char *token_file, aws_temp_keys *out,
                                     char *err, size_t errlen) {
    FILE *f = fopen(token_file, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read the web identity token file %s: %s", token_file, strerror(errno));
        return -1;
    }
    size_t cap = 64 * 1024, n = 0;
    char *tok = malloc(cap), *body = malloc(4 * cap);
    if (tok) n = fread(tok, 1, cap - 1, f);
    int ferr = ferror(f);
    fclose(f);
    if (!tok || !body || ferr) {
        if (tok) OPENSSL_cleanse(tok, cap);
        free(tok);
        free(body);
        snprintf(err, errlen, "cannot read the web identity token file %s", token_file);
        return -1;
    }
    while (n && (tok[n - 1] == '\n' || tok[n - 1] == '\r' || tok[n - 1] == ' ')) n--;
    tok[n] = 0;
    int rc = -1;
    if (!n) snprintf(err, errlen, "the web identity token file %s is empty", token_file);
    else if (common_form(body, 4 * cap, "AssumeRoleWithWebIdentity", q) ||
             form_add(body, 4 * cap, "WebIdentityToken", tok))
        snprintf(err, errlen, "the AssumeRoleWithWebIdentity request for %s is too long", q->role_arn);
    else {
        sigv4_signer unsigned_req = {.region = q->region ? q->region : "us-east-1", .service = "sts"};
        rc = sts_call(q, "AssumeRoleWithWebIdentity", body, &unsigned_req, out, err, errlen);
    }
    OPENSSL_cleanse(tok, cap);
    OPENSSL_cleanse(body, 4 * cap);
    free(tok);
    free(body);
    return rc;
}
