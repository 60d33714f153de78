// cli/cmd_init.c — `quarry init`.
#include "commands.h"

int cmd_init(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("init");
}
