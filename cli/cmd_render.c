// cli/cmd_render.c — `quarry render`.
#include "commands.h"

int cmd_render(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("render");
}
