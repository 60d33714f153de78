// export/aws_sso.c — see aws_sso.h.
#include "aws_sso.h"
#include "aws_credentials.h"
#include "aws_sts.h"
#include "aws_http.h"
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int aws_sso_configured(const aws_config *cfg, const char *profile) {
    static const char *keys[] = {"sso_session", "sso_start_url", "sso_account_id", "sso_role_name"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char *v = aws_profile_get(cfg, profile, keys[i], NULL);
        free(v);
        if (v) return 1;
    }
    return 0;
}

// Reads a whole small file (the token cache) into a malloc'd string; NULL when unreadable.
static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20;
    char *s = malloc(cap);
    size_t n = s ? fread(s, 1, cap - 1, f) : 0;
    if (s && ferror(f)) { OPENSSL_cleanse(s, cap); free(s); s = NULL; }
    fclose(f);
    if (s) { s[n] = 0; *len = cap; }
    return s;
}

static void wipe_json_free(char *s, size_t cap) {
    if (s) { OPENSSL_cleanse(s, cap); free(s); }
}

// The cached access token for key (session name or start URL); 0, or -1 with err.
static int cached_token(const char *key, char **token, char *err, size_t errlen) {
    unsigned char d[SHA_DIGEST_LENGTH];
    char hex[2 * SHA_DIGEST_LENGTH + 1], path[4300];
    SHA1((const unsigned char *)key, strlen(key), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    const char *home = getenv("HOME");
    snprintf(path, sizeof path, "%s/.aws/sso/cache/%s.json", home && *home ? home : ".", hex);
    size_t cap = 0;
    char *text = slurp(path, &cap);
    if (!text) {
        snprintf(err, errlen, "no SSO token cached for '%s' (%s); run `aws sso login` first", key, path);
        return -1;
    }
    cJSON *j = cJSON_Parse(text);
    wipe_json_free(text, cap);
    const cJSON *at = cJSON_GetObjectItem(j, "accessToken"), *ex = cJSON_GetObjectItem(j, "expiresAt");
    int rc = -1;
    if (!cJSON_IsString(at) || !cJSON_IsString(ex) || aws_parse_time(ex->valuestring) < 0)
        snprintf(err, errlen, "%s lacks accessToken/expiresAt; run `aws sso login` again", path);
    else if (aws_parse_time(ex->valuestring) <= time(NULL))
        snprintf(err, errlen, "the SSO token for '%s' expired at %s; run `aws sso login` again", key, ex->valuestring);
    else if (!(*token = strdup(at->valuestring)))
        snprintf(err, errlen, "out of memory");
    else
        rc = 0;
    if (cJSON_IsString(at)) OPENSSL_cleanse(at->valuestring, strlen(at->valuestring));
    cJSON_Delete(j);
    return rc;
}

int aws_sso_get_credentials(const aws_config *cfg, const char *profile, aws_temp_keys *out, char *err, size_t errlen) {
    int oom = 0, rc = -1;
    char *session = aws_profile_get(cfg, profile, "sso_session", &oom), *start = NULL, *region = NULL;
    char *account = aws_profile_get(cfg, profile, "sso_account_id", &oom);
    char *role = aws_profile_get(cfg, profile, "sso_role_name", &oom), *token = NULL;
    if (session) {
        start = aws_section_get(cfg, "sso-session", session, "sso_start_url", NULL, &oom);
        region = aws_section_get(cfg, "sso-session", session, "sso_region", NULL, &oom);
    } else {
        start = aws_profile_get(cfg, profile, "sso_start_url", &oom);
        region = aws_profile_get(cfg, profile, "sso_region", &oom);
    }
    char *q = NULL, *a_enc = NULL, *r_enc = NULL;
    if (oom) {
        snprintf(err, errlen, "out of memory");
    } else if (!start || !region || !account || !role) {
        snprintf(err, errlen, "profile '%s' is missing %s for SSO%s%s%s; run `aws configure sso`", profile,
                 !start ? "sso_start_url" : !region ? "sso_region" : !account ? "sso_account_id" : "sso_role_name",
                 session ? " (sso-session " : "", session ? session : "", session ? ")" : "");
    } else if (!cached_token(session ? session : start, &token, err, errlen)) {
        char ep[600];
        aws_url url;
        int have = aws_endpoint_resolve(NULL, cfg->explicit_profile ? profile : NULL, "SSO", "sso", ep, sizeof ep);
        if (!have) snprintf(ep, sizeof ep, "https://portal.sso.%s.amazonaws.com", region);
        a_enc = sigv4_uri_encode(account, strlen(account), 0);
        r_enc = sigv4_uri_encode(role, strlen(role), 0);
        size_t qn = (a_enc ? strlen(a_enc) : 0) + (r_enc ? strlen(r_enc) : 0) + 32;
        q = a_enc && r_enc ? malloc(qn) : NULL;
        sigv4_signer unsigned_req = {.region = region, .service = "sso"};
        sigv4_headers hs = {0};
        aws_http *h = NULL;
        if (have < 0 || aws_url_parse(ep, &url, err, errlen)) {
            if (have < 0) snprintf(err, errlen, "the configured SSO endpoint is too long");
        } else if (!q || !(h = aws_http_new(&url, &unsigned_req, 4)) ||
                   sigv4_headers_add(&hs, "x-amz-sso_bearer_token", token)) {
            snprintf(err, errlen, "out of memory");
        } else {
            snprintf(q, qn, "account_id=%s&role_name=%s", a_enc, r_enc);
            aws_response r;
            int hr = aws_http_request(h, "GET", "/federation/credentials", q, &hs, NULL, 0, NULL, &r);
            if (hr || r.status != 200) {
                snprintf(err, errlen, "SSO GetRoleCredentials for role %s in account %s at %s: %s%s%s", role, account,
                         url.base, hr ? "no response: " : r.code, hr ? "" : " ", r.message);
                if (!hr && r.status == 401) snprintf(err + strlen(err), errlen - strlen(err), " (run `aws sso login` again)");
            } else {
                cJSON *j = cJSON_Parse(r.body);
                const cJSON *rc_ = cJSON_GetObjectItem(j, "roleCredentials");
                const cJSON *ak = cJSON_GetObjectItem(rc_, "accessKeyId"), *sk = cJSON_GetObjectItem(rc_, "secretAccessKey");
                const cJSON *st = cJSON_GetObjectItem(rc_, "sessionToken"), *ex = cJSON_GetObjectItem(rc_, "expiration");
                if (!cJSON_IsString(ak) || !cJSON_IsString(sk) || !cJSON_IsString(st) || !cJSON_IsNumber(ex)) {
                    snprintf(err, errlen, "SSO GetRoleCredentials at %s: the answer lacks roleCredentials", url.base);
                } else {
                    out->access_key = strdup(ak->valuestring);
                    out->secret_key = strdup(sk->valuestring);
                    out->session_token = strdup(st->valuestring);
                    out->expiration = (time_t)(ex->valuedouble / 1000.0);   // milliseconds since the epoch
                    if (!out->access_key || !out->secret_key || !out->session_token) {
                        aws_temp_keys_free(out);
                        snprintf(err, errlen, "out of memory");
                    } else {
                        rc = 0;
                    }
                }
                if (cJSON_IsString(sk)) OPENSSL_cleanse(sk->valuestring, strlen(sk->valuestring));
                if (cJSON_IsString(st)) OPENSSL_cleanse(st->valuestring, strlen(st->valuestring));
                cJSON_Delete(j);
                OPENSSL_cleanse(r.body, r.body_len);
            }
            aws_response_free(&r);
        }
        for (int i = 0; i < hs.n; i++) OPENSSL_cleanse(hs.h[i].value, strlen(hs.h[i].value));   // the bearer token
        sigv4_headers_free(&hs);
        aws_http_free(h);
    }
    aws_secret_free(&token);
    free(q);
    free(a_enc);
    free(r_enc);
    free(session);
    free(start);
    free(region);
    free(account);
    free(role);
    return rc;
}
