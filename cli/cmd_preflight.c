// cli/cmd_preflight.c — `quarry preflight`.
#include "commands.h"

int cmd_preflight(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("preflight");
}
