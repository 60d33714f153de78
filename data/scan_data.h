// data/scan_data.h — the sensitive-data scan (data/scan) applied to Bedrock records and files:
// which field of a record each finding is in, and the check `quarry train --scan` runs on its
// data before anything is tokenized. `quarry validate` reports per record through scan_record;
// `quarry validate --redact` (data/redact) replaces what the same scan finds.
#pragma once
#include "record.h"
#include "scan.h"
#include <stddef.h>

typedef enum { SCAN_OFF, SCAN_WARN, SCAN_ERROR } scan_mode;

// "off", "warn", "error" → the mode; -1 for anything else.
int scan_mode_parse(const char *s);

// field: "system", "input", "prompt", "completion" or "messages[i].content"; text: that field's
// decoded text (h->offset and h->len index it).
typedef void (*scan_field_fn)(void *user, const char *field, const char *text, const scan_hit *h);
// Scans every text of r; returns the number of findings.
size_t scan_record(const record *r, scan_field_fn fn, void *user);

// The check behind `quarry CMD --scan MODE` (mode NULL = warn). Scans the valid records of each
// file (NULL paths skipped; invalid lines and unreadable files are left to the caller's own
// reading) and reports to stderr: under warn a warning with counts per kind, the first few
// FILE:LINE with masked values and the fix (`quarry validate --redact`); under error the same as
// an error. Returns 0 go on, 1 error mode found something (refuse the data), 2 a bad MODE
// (printed as a usage error).
int scan_data_check(const char *cmd, const char *mode, const char *const *paths, int npaths);
