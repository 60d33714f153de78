// cli/cmd_upload.c — `quarry upload`.
#include "commands.h"

int cmd_upload(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return command_not_available("upload");
}
