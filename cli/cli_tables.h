// cli/cli_tables.h — every command's own option table, read by running the command with
// `--help` under args' help hook (cli/args.h): the source `quarry completion` and
// `quarry manpage` generate from, so neither can drift from what the commands parse.
#pragma once
#include "args.h"

typedef struct {
    const char *name, *summary;   // from the command table (cli/commands.c)
    arg_parser parser;            // copied, specs included; dest pointers cleared
} cli_table;

// Collects the tables of all commands in command-table order. Returns the count (≥ 0), or −1
// when out of memory. *out is freed with cli_tables_free.
int cli_tables_collect(cli_table **out);
void cli_tables_free(cli_table *t, int n);

// The choices a value takes, from the metavar's lowercase words ("lora|full" → "lora full";
// "N|auto" → "auto"); empty when it has none. Writes at most cap bytes.
void cli_metavar_choices(const char *metavar, char *buf, size_t cap);
