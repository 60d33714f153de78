// cli/cmd_export.c — `quarry export`.
#include "commands.h"

int cmd_export(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("export");
}
