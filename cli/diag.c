// cli/diag.c — see diag.h.
#include "diag.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// A located diagnostic carries ": error: " on its first line ("read error: ..." does not).
static int is_located(const char *msg) {
    const char *e = strstr(msg, ": error: "), *nl = strchr(msg, '\n');
    return e && (!nl || e < nl);
}

void cli_error(const char *command, const char *fmt, ...) {
    char msg[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (is_located(msg)) fprintf(stderr, "%s\n", msg);
    else fprintf(stderr, "quarry %s: error: %s\n", command, msg);
}
