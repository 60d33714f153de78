// export/aws_credentials.c — see aws_credentials.h.
#include "aws_credentials.h"
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static void free_secret(char **p) {
    if (*p) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

// The INI keys we read from one section of one file.
typedef struct {
    char *access_key, *secret_key, *session_token, *region;
    int found_section;
} ini_values;

static void ini_free(ini_values *v) {
    free_secret(&v->access_key);
    free_secret(&v->secret_key);
    free_secret(&v->session_token);
    free(v->region);
    v->region = NULL;
}

static int set_dup(char **dst, const char *v) {
    char *d = strdup(v);
    if (!d) return -1;
    free_secret(dst);
    *dst = d;
    return 0;
}

// Reads [section] of an AWS INI file. Returns 0 (also when the file does not exist), -1 on OOM.
// Indented lines belong to a nested block (e.g. `s3 =` settings) and are skipped.
static int ini_read(const char *path, const char *section, ini_values *out) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[8192];
    int in = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == ' ' || line[0] == '\t') continue;
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (!e) { in = 0; continue; }
            *e = 0;
            in = !strcmp(trim(s + 1), section);
            if (in) out->found_section = 1;
            continue;
        }
        if (!in) continue;
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        char **dst = !strcmp(k, "aws_access_key_id")       ? &out->access_key
                     : !strcmp(k, "aws_secret_access_key") ? &out->secret_key
                     : !strcmp(k, "aws_session_token")     ? &out->session_token
                     : !strcmp(k, "region")                ? &out->region
                                                           : NULL;
        if (dst && *v && set_dup(dst, v)) { rc = -1; break; }
    }
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    return rc;
}

static void default_path(char *out, size_t n, const char *envname, const char *leaf) {
    const char *p = env(envname), *home = env("HOME");
    if (p) snprintf(out, n, "%s", p);
    else snprintf(out, n, "%s/.aws/%s", home ? home : ".", leaf);
}

void aws_credentials_free(aws_credentials *c) {
    free_secret(&c->access_key);
    free_secret(&c->secret_key);
    free_secret(&c->session_token);
    free(c->region);
    c->region = NULL;
}

int aws_credentials_load(aws_credentials *c, const char *profile_flag, const char *region_flag,
                         char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    const char *profile = profile_flag && *profile_flag ? profile_flag : env("AWS_PROFILE");
    if (!profile) profile = "default";
    char cred_path[4096], conf_path[4096], conf_section[512];
    default_path(cred_path, sizeof cred_path, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    default_path(conf_path, sizeof conf_path, "AWS_CONFIG_FILE", "config");
    if (!strcmp(profile, "default")) snprintf(conf_section, sizeof conf_section, "default");
    else snprintf(conf_section, sizeof conf_section, "profile %s", profile);

    ini_values cred = {0}, conf = {0};
    if (ini_read(cred_path, profile, &cred) || ini_read(conf_path, conf_section, &conf)) goto oom;

    const char *ek = env("AWS_ACCESS_KEY_ID"), *es = env("AWS_SECRET_ACCESS_KEY");
    int use_env = !(profile_flag && *profile_flag) && (ek || es);
    if (use_env) {
        if (!ek || !es) {
            snprintf(err, errlen, "%s is set but %s is not; set both (or unset it to use ~/.aws/credentials)",
                     ek ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                     ek ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
            goto fail;
        }
        if (set_dup(&c->access_key, ek) || set_dup(&c->secret_key, es)) goto oom;
        if (env("AWS_SESSION_TOKEN") && set_dup(&c->session_token, env("AWS_SESSION_TOKEN"))) goto oom;
        snprintf(c->source, sizeof c->source, "environment (AWS_ACCESS_KEY_ID)");
    } else {
        ini_values *from = cred.access_key && cred.secret_key ? &cred
                           : conf.access_key && conf.secret_key ? &conf
                                                                : NULL;
        if (!from) {
            if (profile_flag && *profile_flag && !cred.found_section && !conf.found_section)
                snprintf(err, errlen, "profile '%s' not found in %s or %s; check the name (aws configure list-profiles)",
                         profile, cred_path, conf_path);
            else
                snprintf(err, errlen,
                         "no AWS credentials found (profile '%s'); provide them with AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or "
                         "aws_access_key_id/aws_secret_access_key under [%s] in %s (`aws configure`), "
                         "or choose a profile with --profile / AWS_PROFILE",
                         profile, profile, cred_path);
            goto fail;
        }
        c->access_key = from->access_key;
        c->secret_key = from->secret_key;
        c->session_token = from->session_token;
        from->access_key = from->secret_key = from->session_token = NULL;
        snprintf(c->source, sizeof c->source, "profile %s in %s", profile, from == &cred ? cred_path : conf_path);
    }

    const char *region = region_flag && *region_flag ? region_flag
                         : env("AWS_REGION")         ? env("AWS_REGION")
                         : env("AWS_DEFAULT_REGION") ? env("AWS_DEFAULT_REGION")
                                                     : conf.region;
    if (region && !(c->region = strdup(region))) goto oom;
    ini_free(&cred);
    ini_free(&conf);
    return 0;
oom:
    snprintf(err, errlen, "out of memory reading AWS credentials");
fail:
    ini_free(&cred);
    ini_free(&conf);
    aws_credentials_free(c);
    return -1;
}
