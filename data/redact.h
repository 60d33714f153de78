// data/redact.h — a copy of a JSONL data file with every scanner finding (data/scan) replaced by
// a stable placeholder: the same value becomes the same placeholder throughout the file,
// numbered per kind in order of first appearance ("[EMAIL_1]", "[AWS_ACCESS_KEY_ID_2]"), so the
// output is deterministic and a model can still learn that two mentions are the same thing.
//
// Each line's JSON string values are scanned decoded (as `quarry validate` scans the record's
// texts) and the record re-serialised; a line that is not JSON is redacted in its raw text. A
// line without findings is copied byte for byte, line ends and a BOM included: the output has
// the same lines, in the same Bedrock format. It is written atomically, mode 0600.
#pragma once
#include "scan.h"
#include <stddef.h>

typedef struct {
    long lines, lines_changed, raw_lines;   // raw_lines: not JSON, redacted in their raw text
    long replaced[SCAN_NKINDS];             // occurrences
    long distinct[SCAN_NKINDS];             // values (= placeholders)
} redact_stats;

// "[EMAIL_" for SCAN_EMAIL: the placeholder before its number.
const char *redact_placeholder_prefix(scan_kind k);

// Writes the redacted copy of in to out. out must not exist unless force, and is never the input
// itself (same file by device and inode, links included). 0, or -1 with err (nothing written).
int redact_file(const char *in, const char *out, int force, redact_stats *st, char *err, size_t errlen);
