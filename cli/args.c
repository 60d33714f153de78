// cli/args.c — see args.h.
#include "args.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

long long args_parse_bytes(const char *s) {
    if (!s || !*s) return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    while (*end == ' ') end++;
    static const struct { const char *suffix; double mult; } units[] = {
        {"", 1}, {"B", 1}, {"K", 1e3}, {"KB", 1e3}, {"KiB", 1024.0}, {"M", 1e6}, {"MB", 1e6},
        {"MiB", 1048576.0}, {"G", 1e9}, {"GB", 1e9}, {"GiB", 1073741824.0}, {"T", 1e12},
        {"TB", 1e12}, {"TiB", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(end, units[i].suffix)) return (long long)(v * units[i].mult + 0.5);
    return -1;
}

void args_print_help(const arg_parser *p) {
    printf("usage: %s\n", p->usage);
    if (p->summary) printf("\n%s\n", p->summary);
    if (p->nspecs) printf("\noptions:\n");
    for (int i = 0; i < p->nspecs; i++) {
        const arg_spec *s = &p->specs[i];
        char left[64];
        if (s->kind == ARG_FLAG) snprintf(left, sizeof left, "--%s", s->name);
        else snprintf(left, sizeof left, "--%s %s", s->name, s->metavar ? s->metavar : "VALUE");
        // A long option and value get a line of their own, the help below, aligned.
        if (strlen(left) > 28) printf("  %s\n  %-28s %s\n", left, "", s->help ? s->help : "");
        else printf("  %-28s %s\n", left, s->help ? s->help : "");
    }
    printf("  %-28s %s\n", "--help", "show this help");
}

static args_help_hook help_hook;
static void *help_hook_ctx;

void args_set_help_hook(args_help_hook hook, void *ctx) {
    help_hook = hook;
    help_hook_ctx = ctx;
}

static int usage_error(const arg_parser *p, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "quarry %s: error: ", p->command);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\nusage: %s\n", p->usage);
    return 2;
}

static int set_value(const arg_parser *p, const arg_spec *s, const char *v) {
    char *end;
    switch (s->kind) {
    case ARG_STRING: *(const char **)s->dest = v; return 0;
    case ARG_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (end == v || *end || (errno && errno != ERANGE))
            return usage_error(p, "--%s needs an integer, got '%s'", s->name, v);
        // A well-formed integer out of int's range is named as such, not as "not an integer".
        if (x > 2147483647L || (errno == ERANGE && x > 0))
            return usage_error(p, "--%s %s is too large (at most 2147483647)", s->name, v);
        if (x < -2147483647L || errno == ERANGE)
            return usage_error(p, "--%s %s is too small (at least -2147483647)", s->name, v);
        *(int *)s->dest = (int)x;
        return 0;
    }
    case ARG_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end || errno) return usage_error(p, "--%s needs a number, got '%s'", s->name, v);
        *(double *)s->dest = x;
        return 0;
    }
    case ARG_BYTES: {
        long long x = args_parse_bytes(v);
        if (x < 0) return usage_error(p, "--%s needs a size such as 64MiB or 5GB, got '%s'", s->name, v);
        *(long long *)s->dest = x;
        return 0;
    }
    case ARG_FLAG: break;
    }
    return 2;
}

int args_parse(const arg_parser *p, int argc, char **argv, const char **positional, int *npositional) {
    int npos = 0, only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && !strcmp(a, "--")) { only_positional = 1; continue; }
        if (!only_positional && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            if (help_hook) help_hook(p, help_hook_ctx);
            else args_print_help(p);
            return 1;
        }
        if (!only_positional && a[0] == '-' && a[1] == '-' && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const arg_spec *s = NULL;
            for (int j = 0; j < p->nspecs; j++)
                if (strlen(p->specs[j].name) == len && !strncmp(p->specs[j].name, name, len)) s = &p->specs[j];
            if (!s) return usage_error(p, "unknown option '%s'%s", a, "");
            if (s->kind == ARG_FLAG) {
                if (eq) return usage_error(p, "--%s takes no value%s", s->name, "");
                *(int *)s->dest = 1;
                continue;
            }
            const char *v = eq ? eq + 1 : NULL;
            if (!v) {
                if (i + 1 >= argc) return usage_error(p, "--%s needs a value%s", s->name, "");
                v = argv[++i];
            }
            int rc = set_value(p, s, v);
            if (rc) return rc;
            continue;
        }
        if (!only_positional && a[0] == '-' && a[1] && strcmp(a, "-"))
            return usage_error(p, "unknown option '%s'%s", a, "");
        if (npos >= p->max_positional) return usage_error(p, "unexpected argument '%s'%s", a, "");
        positional[npos++] = a;
    }
    if (npos < p->min_positional) return usage_error(p, "missing argument%s%s", p->min_positional > 1 ? "s" : "", "");
    *npositional = npos;
    return 0;
}
