// cli/cmd_manpage.c — `quarry manpage`: the man page quarry(1) in roff, generated from the
// command table and the commands' own option tables and help texts (cli/cli_tables.h).
#include "args.h"
#include "cli_tables.h"
#include "commands.h"
#include "version.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Text as roff reads it: backslashes escaped, hyphens as \- (options must stay copy-pasteable),
// UTF-8 characters as \[uXXXX] (troff reads bytes), and a line that would start with a control
// character protected by \&.
static void roff_text(const char *s, size_t n) {
    int line_start = 1;
    for (size_t i = 0; i < n && s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (line_start && (ch == '.' || ch == '\'')) fputs("\\&", stdout);
        line_start = ch == '\n';
        if (ch == '\\') fputs("\\e", stdout);
        else if (ch == '-') fputs("\\-", stdout);
        else if (ch < 0x80) putchar(ch);
        else {
            // A lead byte and its continuation bytes; the help texts are ours and valid UTF-8.
            int extra = ch >= 0xF0 ? 3 : ch >= 0xE0 ? 2 : 1;
            unsigned cp = ch & (0x3Fu >> extra);
            for (int k = 0; k < extra && i + 1 < n && s[i + 1]; k++) cp = cp << 6 | ((unsigned char)s[++i] & 0x3Fu);
            printf("\\[u%04X]", cp);
        }
    }
}

static void roff_line(const char *s) {
    roff_text(s, strlen(s));
    putchar('\n');
}

// The page's date: SOURCE_DATE_EPOCH when set (reproducible package builds), else today.
static void page_date(char *buf, size_t cap) {
    const char *e = getenv("SOURCE_DATE_EPOCH");
    time_t t = e && *e ? (time_t)strtoll(e, NULL, 10) : time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%d", &tm)) snprintf(buf, cap, "%s", "");
}

static void print_page(const cli_table *t, int n) {
    char date[32];
    page_date(date, sizeof date);
    printf(".TH QUARRY 1 \"%s\" \"quarry %s\" \"User Commands\"\n", date, QUARRY_VERSION);
    // Left-aligned: long usage lines and option lists read badly justified.
    printf(".ad l\n.SH NAME\nquarry \\- fine\\-tune open models on your own GPUs for Amazon Bedrock Custom Model Import\n");
    printf(".SH SYNOPSIS\n.B quarry\n.I command\n.RI [ options ]\n.br\n.B quarry help\n.I command\n");
    printf(".SH DESCRIPTION\n");
    roff_line("quarry reads training data in Amazon Bedrock's JSONL formats, fine-tunes open models (LoRA or all "
              "weights) on the CPU or on NVIDIA GPUs, writes a package that Bedrock Custom Model Import accepts, "
              "and uploads and imports it. Only `quarry upload` and `quarry import` use the network.");
    printf(".SH COMMANDS\n");
    for (int i = 0; i < n; i++) {
        const arg_parser *p = &t[i].parser;
        printf(".SS \"");
        roff_text(p->usage, strlen(p->usage));
        printf("\"\n");
        roff_line(t[i].summary);
        if (p->summary) {
            // The help text is laid out for a terminal: keep its lines.
            printf(".PP\n.nf\n");
            roff_line(p->summary);
            printf(".fi\n");
        }
        for (int j = 0; j < p->nspecs; j++) {
            const arg_spec *s = &p->specs[j];
            // The tag line: the option in bold, its value in italics.
            printf(".TP\n.BI \"\\-\\-");
            roff_text(s->name, strlen(s->name));
            printf(s->kind != ARG_FLAG ? " \" \"" : "\"");
            if (s->kind != ARG_FLAG) roff_text(s->metavar ? s->metavar : "VALUE", strlen(s->metavar ? s->metavar : "VALUE"));
            printf("%s\n", s->kind != ARG_FLAG ? "\"" : "");
            roff_line(s->help ? s->help : "");
        }
    }
    printf(".SH EXIT STATUS\n0: done; 1: a failure or invalid input (the message names the file, line or flag, and the fix); "
           "2: a usage error.\n");
    printf(".SH ENVIRONMENT\n.TP\n.B QUARRY_CACHE_DIR\nwhere tokenized training data is kept between runs "
           "(else $XDG_CACHE_HOME/quarry/tokens or ~/.cache/quarry/tokens; see \\fBquarry cache\\fR).\n"
           ".TP\n.B AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL\nthe AWS settings \\fBupload\\fR and \\fBimport\\fR "
           "read, resolved as the AWS CLI does; credentials are never printed or stored.\n");
    printf(".SH FILES\n.TP\n.I /usr/share/quarry/examples\nthe examples the README uses: model configs, a tiny model, "
           "demo data.\n");
    printf(".SH SEE ALSO\nThe README in /usr/share/doc/quarry (quarry\\-cuda13 for the CUDA package).\n");
    (void)n;
}

int cmd_manpage(int argc, char **argv) {
    const arg_parser p = {"manpage", "quarry manpage",
                          "Prints the man page quarry(1) in roff, generated from the commands' own help:\n"
                          "`quarry manpage > quarry.1; man -l quarry.1`. The .deb installs it.\n"
                          "Exit 0 done, 1 failure, 2 usage error.",
                          NULL, 0, 0, 0};
    int npos = 0, rc = args_parse(&p, argc, argv, NULL, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    cli_table *t;
    int n = cli_tables_collect(&t);
    if (n < 0) {
        fprintf(stderr, "quarry manpage: error: out of memory\n");
        return 1;
    }
    print_page(t, n);
    cli_tables_free(t, n);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "quarry manpage: error: cannot write the page to standard output\n");
        return 1;
    }
    return 0;
}
