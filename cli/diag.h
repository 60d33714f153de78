// cli/diag.h — how a command prints an error: one `error:` per message, in the README's form.
// Lower layers write some messages as located diagnostics ("FILE:LINE: error: ...", "FILE: error:
// ...": model/config, trainer/examples, data/dataset); those are printed as they are. Any other
// message gets "quarry CMD: error: " in front.
#pragma once

void cli_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
