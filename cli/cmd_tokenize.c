// cli/cmd_tokenize.c — `quarry tokenize`.
#include "commands.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("tokenize");
}
