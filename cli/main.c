// cli/main.c — `quarry <command> [options]`.
#include "commands.h"
#include <stdio.h>
#include <string.h>

static void print_usage(FILE *f) {
    fprintf(f, "usage: quarry <command> [options]\n\n"
               "Fine-tune open models on your own GPUs from Amazon Bedrock training data, and\n"
               "package the result for Bedrock Custom Model Import.\n\ncommands:\n");
    for (int i = 0; i < quarry_ncommands; i++)
        fprintf(f, "  %-10s %s\n", quarry_commands[i].name, quarry_commands[i].summary);
    fprintf(f, "\n`quarry <command> --help` shows a command's options; `quarry --version` the build.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || (!strcmp(name, "help") && argc < 3)) {
        print_usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        print_version();
        return 0;
    }
    // `quarry help CMD` is `quarry CMD --help`.
    int help = !strcmp(name, "help");
    if (help) name = argv[2];
    for (int i = 0; i < quarry_ncommands; i++) {
        if (strcmp(quarry_commands[i].name, name)) continue;
        if (!help) return quarry_commands[i].run(argc - 2, argv + 2);
        char *help_argv[] = {"--help", NULL};
        return quarry_commands[i].run(1, help_argv);
    }
    fprintf(stderr, "quarry: error: unknown command '%s'\n", name);
    print_usage(stderr);
    return 2;
}
