// cli/cmd_validate.c — `quarry validate`.
#include "commands.h"

int cmd_validate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("validate");
}
