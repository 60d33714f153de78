// cli/cmd_import.c — `quarry import`.
#include "commands.h"

int cmd_import(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("import");
}
