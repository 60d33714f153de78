// cli/cmd_cost.c — `quarry cost`.
#include "commands.h"

int cmd_cost(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("cost");
}
