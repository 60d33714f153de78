// export/aws_credentials.c — see aws_credentials.h.
#include "aws_credentials.h"
#include "aws_config.h"
#include "aws_process.h"
#include "aws_sso.h"
#include "aws_sts.h"
#include <curl/curl.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROLE_CHAIN 8

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int set_dup(char **dst, const char *v) {
    char *d = strdup(v);
    if (!d) return -1;
    aws_secret_free(dst);
    *dst = d;
    return 0;
}

void aws_credentials_free(aws_credentials *c) {
    aws_secret_free(&c->access_key);
    aws_secret_free(&c->secret_key);
    aws_secret_free(&c->session_token);
    for (int i = 0; i < c->n_retired; i++) aws_secret_free(&c->retired[i]);
    free(c->retired);
    free(c->region);
    free(c->profile_flag);
    c->retired = NULL;
    c->n_retired = 0;
    c->region = c->profile_flag = NULL;
}

// Moves temporary keys into c.
static void take(aws_credentials *c, aws_temp_keys *k, const char *method) {
    c->access_key = k->access_key;
    c->secret_key = k->secret_key;
    c->session_token = k->session_token;
    c->expiration = k->expiration;
    c->method = method;
    memset(k, 0, sizeof *k);
}

// Static keys of one file's section: 0 found, 1 none, -1 a key without its secret (or OOM).
static int static_keys(aws_credentials *c, const char *path, const char *section, const char *profile,
                       const char *method, char *err, size_t errlen) {
    int oom = 0;
    char *ak = aws_ini_get(path, section, "aws_access_key_id", NULL, &oom);
    char *sk = aws_ini_get(path, section, "aws_secret_access_key", NULL, &oom);
    char *tk = aws_ini_get(path, section, "aws_session_token", NULL, &oom);
    int rc = 1;
    if (oom) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (ak && !sk) {
        snprintf(err, errlen, "profile '%s' in %s has aws_access_key_id but no aws_secret_access_key; add it", profile, path);
        rc = -1;
    } else if (ak) {
        c->access_key = ak;
        c->secret_key = sk;
        c->session_token = tk;
        ak = sk = tk = NULL;
        c->method = method;
        snprintf(c->source, sizeof c->source, "profile %s in %s", profile, path);
        rc = 0;
    }
    aws_secret_free(&ak);
    aws_secret_free(&sk);
    aws_secret_free(&tk);
    return rc;
}

static int env_keys(aws_credentials *c, char *err, size_t errlen) {
    const char *ek = env("AWS_ACCESS_KEY_ID"), *es = env("AWS_SECRET_ACCESS_KEY");
    if (!ek && !es) return 1;
    if (!ek || !es) {
        snprintf(err, errlen, "%s is set but %s is not; set both (or unset it to use ~/.aws/credentials)",
                 ek ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY", ek ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        return -1;
    }
    if (set_dup(&c->access_key, ek) || set_dup(&c->secret_key, es) ||
        (env("AWS_SESSION_TOKEN") && set_dup(&c->session_token, env("AWS_SESSION_TOKEN")))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->method = "env";
    snprintf(c->source, sizeof c->source, "environment (AWS_ACCESS_KEY_ID)");
    return 0;
}

static int resolve(aws_credentials *c, const aws_config *cfg, const char *profile, int with_env, int with_role,
                   int depth, const char *region, char *err, size_t errlen);

static char *pget(const aws_config *cfg, const char *profile, const char *key, int *oom) {
    return aws_profile_get(cfg, profile, key, oom);
}

// role_arn + source_profile / credential_source: STS AssumeRole.
static int assume_role(aws_credentials *c, const aws_config *cfg, const char *profile, const char *role_arn, int depth,
                       const char *region, char *err, size_t errlen) {
    int oom = 0, rc = -1;
    char *src = pget(cfg, profile, "source_profile", &oom), *csrc = pget(cfg, profile, "credential_source", &oom);
    char *mfa = pget(cfg, profile, "mfa_serial", &oom), *name = pget(cfg, profile, "role_session_name", &oom);
    char *ext = pget(cfg, profile, "external_id", &oom), *dur = pget(cfg, profile, "duration_seconds", &oom);
    aws_credentials base = {0};
    aws_temp_keys k = {0};
    char session[128], *end = NULL;
    long d = dur ? strtol(dur, &end, 10) : 0;
    if (oom) {
        snprintf(err, errlen, "out of memory");
    } else if (mfa) {
        snprintf(err, errlen, "profile '%s' sets mfa_serial: quarry cannot prompt for an MFA code during a long "
                 "job; get temporary keys first (aws sts assume-role ... --serial-number --token-code, or "
                 "`aws configure export-credentials --profile %s --format env`) and pass them in the environment",
                 profile, profile);
    } else if (dur && (*end || d < 900 || d > 43200)) {
        snprintf(err, errlen, "profile '%s': duration_seconds = %s must be a number of seconds from 900 to 43200", profile, dur);
    } else if (src && csrc) {
        snprintf(err, errlen, "profile '%s' sets both source_profile and credential_source; keep one", profile);
    } else if (!src && !csrc) {
        snprintf(err, errlen, "profile '%s' has role_arn but neither source_profile nor credential_source; "
                 "add source_profile = PROFILE with the keys that may assume the role", profile);
    } else if (depth >= MAX_ROLE_CHAIN) {
        snprintf(err, errlen, "profile '%s': the chain of source_profile roles is longer than %d (a loop?)", profile,
                 MAX_ROLE_CHAIN);
    } else {
        int got;
        if (csrc) {
            if (strcmp(csrc, "Environment")) {
                snprintf(err, errlen, "profile '%s': credential_source = %s is not supported by quarry (only "
                         "Environment; instance and container metadata are not read)", profile, csrc);
                got = -1;
            } else {
                got = env_keys(&base, err, errlen);
                if (got > 0) snprintf(err, errlen, "profile '%s' has credential_source = Environment but "
                                      "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set", profile);
            }
        } else if (!aws_profile_exists(cfg, src)) {
            snprintf(err, errlen, "the source_profile \"%s\" referenced in the profile \"%s\" does not exist", src, profile);
            got = -1;
        } else {
            // botocore: a source profile with static keys (or no role of its own, or the profile
            // itself) gives its own credentials; otherwise its role is assumed first (a chain).
            char *sak = pget(cfg, src, "aws_access_key_id", &oom), *sarn = pget(cfg, src, "role_arn", &oom);
            int own = sak || !sarn || !strcmp(src, profile);
            aws_secret_free(&sak);
            free(sarn);
            got = resolve(&base, cfg, src, 0, !own, depth + 1, region, err, errlen);
            if (got > 0) snprintf(err, errlen, "the source profile \"%s\" of profile \"%s\" must have credentials", src, profile);
        }
        if (!got) {
            snprintf(session, sizeof session, "quarry-session-%lld", (long long)time(NULL));
            aws_sts_request q = {.role_arn = role_arn, .session_name = name ? name : session, .external_id = ext,
                                 .duration_seconds = (int)d, .region = region,
                                 .profile_flag = cfg->explicit_profile ? cfg->profile : NULL};
            if (!aws_sts_assume_role(&q, base.access_key, base.secret_key, base.session_token, &k, err, errlen)) {
                take(c, &k, "assume-role");
                snprintf(c->source, sizeof c->source, "role %.600s assumed with %.3000s (profile %.200s)", role_arn, base.source, profile);
                rc = 0;
            }
        }
    }
    aws_credentials_free(&base);
    free(src); free(csrc); free(mfa); free(name); free(ext); free(dur);
    return rc;
}

// web_identity_token_file + role_arn (from the environment unless disabled): AssumeRoleWithWebIdentity.
static int web_identity(aws_credentials *c, const aws_config *cfg, const char *profile, int with_env,
                        const char *region, char *err, size_t errlen) {
    int oom = 0, rc = 1;
    const char *keys[3] = {"web_identity_token_file", "role_arn", "role_session_name"};
    const char *envs[3] = {"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME"};
    char *v[3];
    for (int i = 0; i < 3; i++) {
        v[i] = with_env && env(envs[i]) ? strdup(env(envs[i])) : pget(cfg, profile, keys[i], &oom);
        if (with_env && env(envs[i]) && !v[i]) oom = 1;
    }
    char session[128];
    aws_temp_keys k = {0};
    if (oom) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (v[0] && !v[1]) {
        snprintf(err, errlen, "a web identity token file is set (%s) but no role_arn / AWS_ROLE_ARN to assume", v[0]);
        rc = -1;
    } else if (v[0]) {
        snprintf(session, sizeof session, "quarry-session-%lld", (long long)time(NULL));
        aws_sts_request q = {.role_arn = v[1], .session_name = v[2] ? v[2] : session, .region = region,
                             .profile_flag = cfg->explicit_profile ? cfg->profile : NULL};
        rc = -1;
        if (!aws_sts_assume_role_web_identity(&q, v[0], &k, err, errlen)) {
            take(c, &k, "assume-role-with-web-identity");
            snprintf(c->source, sizeof c->source, "role %s assumed with the web identity token in %s", v[1], v[0]);
            rc = 0;
        }
    }
    for (int i = 0; i < 3; i++) free(v[i]);
    return rc;
}

// The profile chain (see the header). 0 found, 1 nothing configured, -1 error.
static int resolve(aws_credentials *c, const aws_config *cfg, const char *profile, int with_env, int with_role,
                   int depth, const char *region, char *err, size_t errlen) {
    int rc, oom = 0;
    if (with_env && (rc = env_keys(c, err, errlen)) <= 0) return rc;
    char *role = pget(cfg, profile, "role_arn", &oom), *wif = pget(cfg, profile, "web_identity_token_file", &oom);
    int role_cfg = role && !wif;
    free(wif);
    if (with_role && role_cfg) {
        rc = assume_role(c, cfg, profile, role, depth, region, err, errlen);
        free(role);
        return rc;
    }
    free(role);
    if ((rc = web_identity(c, cfg, profile, with_env, region, err, errlen)) <= 0) return rc;
    if (aws_sso_configured(cfg, profile)) {
        aws_temp_keys k = {0};
        if (aws_sso_get_credentials(cfg, profile, &k, err, errlen)) return -1;
        take(c, &k, "sso");
        snprintf(c->source, sizeof c->source, "SSO (profile %s)", profile);
        return 0;
    }
    if ((rc = static_keys(c, cfg->cred_path, profile, profile, "shared-credentials-file", err, errlen)) <= 0) return rc;
    char *proc = pget(cfg, profile, "credential_process", &oom);
    if (proc) {
        aws_temp_keys k = {0};
        rc = aws_process_credentials(proc, &k, err, errlen);
        if (!rc) {
            take(c, &k, "custom-process");
            snprintf(c->source, sizeof c->source, "credential_process of profile %s", profile);
        }
        free(proc);
        return rc ? -1 : 0;
    }
    char sec[600];
    if (!strcmp(profile, "default")) snprintf(sec, sizeof sec, "default");
    else snprintf(sec, sizeof sec, "profile %s", profile);
    if (oom) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return static_keys(c, cfg->conf_path, sec, profile, "config-file", err, errlen);
}

int aws_credentials_load(aws_credentials *c, const char *profile_flag, const char *region_flag,
                         char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    // STS and SSO calls below need libcurl; its global init is reference-counted, so callers that
    // init again later are fine, and a refresh on a worker thread finds it done.
    static int curl_ready;
    if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK) curl_ready = 1;
    aws_config cfg;
    if (aws_config_init(&cfg, profile_flag)) {
        snprintf(err, errlen, "the profile name is too long");
        return -1;
    }
    int oom = 0;
    char *conf_region = aws_profile_get(&cfg, cfg.profile, "region", &oom);
    const char *region = region_flag && *region_flag ? region_flag
                         : env("AWS_REGION")         ? env("AWS_REGION")
                         : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION")
                                                     : conf_region;
    int rc = oom ? -1 : resolve(c, &cfg, cfg.profile, !cfg.explicit_profile, 1, 0, region, err, errlen);
    if (oom) snprintf(err, errlen, "out of memory reading AWS credentials");
    if (rc > 0) {
        if (cfg.explicit_profile && !aws_profile_exists(&cfg, cfg.profile))
            snprintf(err, errlen, "profile '%s' not found in %s or %s; check the name (aws configure list-profiles)",
                     cfg.profile, cfg.cred_path, cfg.conf_path);
        else
            snprintf(err, errlen,
                     "no AWS credentials found (profile '%s'); provide them with AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or "
                     "aws_access_key_id/aws_secret_access_key under [%s] in %s (`aws configure`), a "
                     "credential_process, role_arn or SSO settings in %s, or choose a profile with --profile / AWS_PROFILE",
                     cfg.profile, cfg.profile, cfg.cred_path, cfg.conf_path);
        rc = -1;
    }
    if (!rc && ((region && !(c->region = strdup(region))) ||
                (profile_flag && *profile_flag && !(c->profile_flag = strdup(profile_flag))))) {
        snprintf(err, errlen, "out of memory reading AWS credentials");
        rc = -1;
    }
    free(conf_region);
    if (rc) aws_credentials_free(c);
    return rc;
}

static int retire(aws_credentials *c, char **p) {
    if (!*p) return 0;
    char **r = realloc(c->retired, (size_t)(c->n_retired + 1) * sizeof *r);
    if (!r) return -1;
    c->retired = r;
    r[c->n_retired++] = *p;
    *p = NULL;
    return 0;
}

int aws_credentials_refresh(aws_credentials *c, int margin_s, char *err, size_t errlen) {
    if (!c->expiration || time(NULL) + margin_s < c->expiration) return 0;
    aws_credentials fresh;
    if (aws_credentials_load(&fresh, c->profile_flag, c->region, err, errlen)) return -1;
    if (retire(c, &c->access_key) || retire(c, &c->secret_key) || retire(c, &c->session_token)) {
        aws_credentials_free(&fresh);
        snprintf(err, errlen, "out of memory refreshing the AWS credentials");
        return -1;
    }
    c->access_key = fresh.access_key;
    c->secret_key = fresh.secret_key;
    c->session_token = fresh.session_token;
    c->expiration = fresh.expiration;
    c->method = fresh.method;
    snprintf(c->source, sizeof c->source, "%s", fresh.source);
    fresh.access_key = fresh.secret_key = fresh.session_token = NULL;
    aws_credentials_free(&fresh);
    return 1;
}
