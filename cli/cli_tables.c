// cli/cli_tables.c — see cli_tables.h.
#include "cli_tables.h"
#include "commands.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    arg_parser copy;
    int ok;    // 1: copied; −1: out of memory
} capture;

static char *dup_or_null(const char *s, int *oom) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = 1;
    return d;
}

static void capture_parser(const arg_parser *p, void *ctx) {
    capture *c = ctx;
    int oom = 0;
    arg_spec *specs = p->nspecs ? calloc((size_t)p->nspecs, sizeof *specs) : NULL;
    if (p->nspecs && !specs) { c->ok = -1; return; }
    for (int i = 0; i < p->nspecs; i++) {
        specs[i] = (arg_spec){dup_or_null(p->specs[i].name, &oom), p->specs[i].kind, NULL,
                              dup_or_null(p->specs[i].metavar, &oom), dup_or_null(p->specs[i].help, &oom)};
    }
    c->copy = (arg_parser){dup_or_null(p->command, &oom), dup_or_null(p->usage, &oom),
                           dup_or_null(p->summary, &oom), specs, p->nspecs, p->min_positional, p->max_positional};
    c->ok = oom ? -1 : 1;
}

static void parser_free(arg_parser *p) {
    for (int i = 0; i < p->nspecs; i++) {
        free((char *)p->specs[i].name);
        free((char *)p->specs[i].metavar);
        free((char *)p->specs[i].help);
    }
    free((arg_spec *)p->specs);
    free((char *)p->command);
    free((char *)p->usage);
    free((char *)p->summary);
}

void cli_tables_free(cli_table *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) parser_free(&t[i].parser);
    free(t);
}

int cli_tables_collect(cli_table **out) {
    cli_table *t = calloc((size_t)quarry_ncommands, sizeof *t);
    if (!t) return -1;
    int n = 0;
    for (int i = 0; i < quarry_ncommands; i++) {
        capture c = {0};
        args_set_help_hook(capture_parser, &c);
        char *argv[] = {"--help", NULL};
        quarry_commands[i].run(1, argv);
        args_set_help_hook(NULL, NULL);
        if (c.ok < 0) { parser_free(&c.copy); cli_tables_free(t, n); return -1; }
        if (c.ok == 0) continue;   // a command without a table (none today)
        t[n++] = (cli_table){quarry_commands[i].name, quarry_commands[i].summary, c.copy};
    }
    *out = t;
    return n;
}

void cli_metavar_choices(const char *metavar, char *buf, size_t cap) {
    size_t len = 0;
    if (cap) buf[0] = '\0';
    if (!metavar || !strchr(metavar, '|') || !cap) return;
    const char *s = metavar;
    while (*s) {
        size_t w = strcspn(s, "|");
        // A word starts with a lowercase letter or a digit ("--tokenizer" in a usage is an option).
        int lower = w > 0 && (islower((unsigned char)s[0]) || isdigit((unsigned char)s[0]));
        for (size_t i = 0; i < w; i++)
            if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-' || s[i] == ':')) lower = 0;
        if (lower && len + w + 2 < cap) {
            if (len) buf[len++] = ' ';
            memcpy(buf + len, s, w);
            len += w;
            buf[len] = '\0';
        }
        s += w;
        if (*s == '|') s++;
    }
}
