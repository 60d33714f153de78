// cli/cmd_train.c — `quarry train`.
#include "commands.h"

int cmd_train(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("train");
}
