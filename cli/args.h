// cli/args.h — option parsing shared by every subcommand: `--name value`, `--name=value`,
// flags, and positionals; a one-line error with usage on misuse.
#pragma once
#include <stddef.h>

typedef enum { ARG_FLAG, ARG_STRING, ARG_INT, ARG_FLOAT, ARG_BYTES } arg_kind;

typedef struct {
    const char *name;     // without the leading "--"
    arg_kind kind;
    void *dest;           // int* (FLAG, INT), const char** (STRING), double* (FLOAT), long long* (BYTES)
    const char *metavar;  // shown in help, e.g. "FILE"
    const char *help;
} arg_spec;

typedef struct {
    const char *command;  // e.g. "validate"
    const char *usage;    // e.g. "quarry validate FILE [options]"
    const char *summary;  // one paragraph shown by --help
    const arg_spec *specs;
    int nspecs;
    int min_positional, max_positional;
} arg_parser;

// Returns 0 parsed, 1 when --help was printed (exit 0), 2 on a usage error (printed; exit 2).
// positional receives argv strings; *npositional their count.
int args_parse(const arg_parser *p, int argc, char **argv, const char **positional, int *npositional);
void args_print_help(const arg_parser *p);

// While a hook is set, `--help` hands the parser to it instead of printing (args_parse still
// returns 1, so the command exits without doing anything): how `quarry completion` and
// `quarry manpage` read every command's own table, so they cannot drift from it.
typedef void (*args_help_hook)(const arg_parser *p, void *ctx);
void args_set_help_hook(args_help_hook hook, void *ctx);

// "64MiB", "5GB", "1024" → bytes; -1 on a malformed value.
long long args_parse_bytes(const char *s);
