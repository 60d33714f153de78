// export/aws_process.h — a profile's credential_process, run as botocore runs it: the command line
// split like Python's shlex.split (POSIX rules: quotes and backslashes, no shell, no expansion),
// executed directly (posix_spawnp, PATH searched), its stdout parsed as
// {"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken"?, "Expiration"?}. IAM Roles
// Anywhere's aws_signing_helper is the usual one. Its stderr goes to ours.
#pragma once
#include <stddef.h>
#include "export/aws_sts.h"

// Splits cmdline into a NULL-terminated argv (malloc'd; free with aws_argv_free). 0, or -1 with
// err (an unclosed quote, an empty command, out of memory).
int aws_shell_split(const char *cmdline, char ***argv, char *err, size_t errlen);
void aws_argv_free(char **argv);

// Runs the command and parses its answer. 0, or -1 with err. expiration is 0 without one.
int aws_process_credentials(const char *cmdline, aws_temp_keys *out, char *err, size_t errlen);
