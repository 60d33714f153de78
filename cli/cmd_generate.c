// cli/cmd_generate.c — `quarry generate`.
#include "commands.h"

int cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("generate");
}
