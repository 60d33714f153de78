// cli/cmd_eval.c — `quarry eval`.
#include "commands.h"

int cmd_eval(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("eval");
}
