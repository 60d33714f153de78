// export/aws_config.c — see aws_config.h.
#include "aws_config.h"
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

void aws_secret_free(char **p) {
    if (*p) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static void default_path(char *out, size_t n, const char *envname, const char *leaf) {
    const char *p = env(envname), *home = env("HOME");
    if (p && p[0] == '~' && p[1] == '/' && home) snprintf(out, n, "%s%s", home, p + 1);
    else if (p) snprintf(out, n, "%s", p);
    else snprintf(out, n, "%s/.aws/%s", home ? home : ".", leaf);
}

int aws_config_init(aws_config *cfg, const char *profile_flag) {
    memset(cfg, 0, sizeof *cfg);
    cfg->explicit_profile = profile_flag && *profile_flag;
    const char *p = cfg->explicit_profile ? profile_flag : env("AWS_PROFILE") ? env("AWS_PROFILE") : "default";
    if (strlen(p) >= sizeof cfg->profile) return -1;
    snprintf(cfg->profile, sizeof cfg->profile, "%s", p);
    default_path(cfg->cred_path, sizeof cfg->cred_path, "AWS_SHARED_CREDENTIALS_FILE", "credentials");
    default_path(cfg->conf_path, sizeof cfg->conf_path, "AWS_CONFIG_FILE", "config");
    return 0;
}

// Walks [section] of path. With key == NULL only tells whether the section exists (returns a
// non-NULL dummy). Nested blocks: an indented `sub = v` line after `key =` belongs to key.
static char *ini_scan(const char *path, const char *section, const char *key, const char *sub, int *oom, int *found) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char line[8192], *val = NULL;
    int in = 0, in_block = 0;
    while (fgets(line, sizeof line, f)) {
        int indented = line[0] == ' ' || line[0] == '\t';
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';') continue;
        if (!indented && *s == '[') {
            char *e = strchr(s, ']');
            in_block = 0;
            if (!e) { in = 0; continue; }
            *e = 0;
            // "[profile  dev]": botocore splits on whitespace.
            char *name = trim(s + 1), norm[600];
            char *sp = name + strcspn(name, " \t");
            if (*sp) snprintf(norm, sizeof norm, "%.*s %s", (int)(sp - name), name, trim(sp));
            else snprintf(norm, sizeof norm, "%s", name);
            in = !strcmp(norm, section);
            if (in && found) *found = 1;
            continue;
        }
        if (!in || !key) continue;
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        if (!indented) {
            in_block = sub && !strcmp(k, key) && !*v;
            if (sub || strcmp(k, key)) continue;
        } else if (!in_block || strcmp(k, sub)) {
            continue;
        }
        aws_secret_free(&val);   // the last occurrence wins
        if (!(val = strdup(v)) && oom) *oom = 1;
    }
    OPENSSL_cleanse(line, sizeof line);
    fclose(f);
    return val;
}

char *aws_ini_get(const char *path, const char *section, const char *key, const char *sub, int *oom) {
    return ini_scan(path, section, key, sub, oom, NULL);
}

int aws_ini_has_section(const char *path, const char *section) {
    int found = 0;
    ini_scan(path, section, NULL, NULL, NULL, &found);
    return found;
}

static void conf_section(const char *profile, char *out, size_t n) {
    if (!strcmp(profile, "default")) snprintf(out, n, "default");
    else snprintf(out, n, "profile %s", profile);
}

char *aws_profile_get(const aws_config *cfg, const char *profile, const char *key, int *oom) {
    char sec[600];
    char *v = aws_ini_get(cfg->cred_path, profile, key, NULL, oom);
    if (v) return v;
    conf_section(profile, sec, sizeof sec);
    return aws_ini_get(cfg->conf_path, sec, key, NULL, oom);
}

int aws_profile_exists(const aws_config *cfg, const char *profile) {
    char sec[600];
    conf_section(profile, sec, sizeof sec);
    return aws_ini_has_section(cfg->cred_path, profile) || aws_ini_has_section(cfg->conf_path, sec);
}

char *aws_section_get(const aws_config *cfg, const char *kind, const char *name, const char *key,
                      const char *sub, int *oom) {
    char sec[600];
    snprintf(sec, sizeof sec, "%s %s", kind, name);
    return aws_ini_get(cfg->conf_path, sec, key, sub, oom);
}

static int truthy(const char *v) {
    return v && !strcasecmp(v, "true");
}

int aws_endpoint_resolve(const char *flag, const char *profile_flag, const char *service_env,
                         const char *service_key, char *out, size_t outlen) {
    if (flag && *flag) return (size_t)snprintf(out, outlen, "%s", flag) < outlen ? 1 : -1;
    aws_config cfg;
    if (aws_config_init(&cfg, profile_flag)) return 0;
    // botocore's order: service env, global env, the profile's services section, its endpoint_url;
    // AWS_IGNORE_CONFIGURED_ENDPOINT_URLS (or ignore_configured_endpoint_urls) turns all four off.
    char *ignore = aws_profile_get(&cfg, cfg.profile, "ignore_configured_endpoint_urls", NULL);
    int off = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") ? truthy(env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"))
                                                         : truthy(ignore);
    free(ignore);
    if (off) return 0;
    char name[64];
    snprintf(name, sizeof name, "AWS_ENDPOINT_URL_%s", service_env);
    const char *e = env(name) ? env(name) : env("AWS_ENDPOINT_URL");
    char *v = NULL;
    if (!e) {
        char *services = aws_profile_get(&cfg, cfg.profile, "services", NULL);
        if (services) v = aws_section_get(&cfg, "services", services, service_key, "endpoint_url", NULL);
        free(services);
        if (!v) v = aws_profile_get(&cfg, cfg.profile, "endpoint_url", NULL);
        e = v;
    }
    int rc = !e ? 0 : (size_t)snprintf(out, outlen, "%s", e) < outlen ? 1 : -1;
    free(v);
    return rc;
}
