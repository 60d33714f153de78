// data/bedrock.h — Amazon Bedrock customization datasets: which of the four JSONL formats a
// record is, whether Bedrock would accept it, and the record in quarry's form (data/record.h).
//
//   prompt-completion      {"prompt": str, "completion": str}
//   messages               {"system"?: str, "messages": [{"role": "user"|"assistant", "content": str}, ...]}
//   converse               {"schemaVersion"?: str, "system"?: [{"text"}], "messages": [{"role", "content": [{"text"}, ...]}]}
//   continued-pretraining  {"input": str}
//
// The format is detected per record; the first valid record fixes the file's format and a
// record in another format is an error (unless opts.force names one). Diagnostics go to a
// callback with the 1-based line (and column for JSON syntax errors); nothing is printed here.
// Several text blocks of one converse turn are concatenated in order, with no separator.
// Image and video blocks are refused unless opts.limits names a base model whose jobs take them
// (then they are checked by AWS's media rules and left out of the record's text: quarry itself
// trains text only, so `train`, which passes no limits, refuses them).
#pragma once
#include "jsonl.h"
#include "limits.h"
#include "record.h"
#include <stddef.h>

typedef enum { BEDROCK_ERROR = 0, BEDROCK_WARNING = 1 } bedrock_severity;

// line 0 = about the whole file; col 0 = no column.
typedef void (*bedrock_diag_fn)(void *user, long line, int col, bedrock_severity sev, const char *msg);

typedef struct {
    record_format force;                // FORMAT_UNKNOWN: detect
    int allow_extra_keys;               // unknown keys become warnings
    const base_model_limits *limits;    // NULL: no per-model rules (Nova reserved words, ...)
    size_t max_record_bytes;            // 0: 16 MiB
    bedrock_diag_fn diag;
    void *user;
} bedrock_options;

typedef struct bedrock_stream bedrock_stream;

// path "-" = standard input. NULL with a message in err when it cannot be opened.
bedrock_stream *bedrock_open(const char *path, const bedrock_options *opts, char *err, size_t errlen);
// 1 = a valid record in *out (free with record_free), 0 = end of file, -1 = read error
// (bedrock_error). Invalid lines are reported through opts.diag and skipped.
int bedrock_next(bedrock_stream *s, record *out);
const char *bedrock_error(const bedrock_stream *s);
void bedrock_close(bedrock_stream *s);

typedef struct {
    long lines;              // lines read (including empty and oversized ones)
    long valid, invalid;     // records
    long errors, warnings;   // diagnostics sent
    long media_records;      // valid records with image/video blocks (only where limits->media allows them)
    record_format format;    // the file's format (first valid record), FORMAT_UNKNOWN when none
    long format_line;        // line that fixed it
    unsigned long long bytes;
} bedrock_stats;
const bedrock_stats *bedrock_stream_stats(const bedrock_stream *s);

// The same checks on one line of text already in memory (fuzzing, tests). Returns 1 valid
// (*out filled when out != NULL), 0 invalid. state carries the file's format between lines:
// start it zeroed.
typedef struct bedrock_checker bedrock_checker;
bedrock_checker *bedrock_checker_new(const bedrock_options *opts);
int bedrock_check(bedrock_checker *c, const char *text, size_t len, long line, record *out);
const bedrock_stats *bedrock_checker_stats(const bedrock_checker *c);
void bedrock_checker_free(bedrock_checker *c);

// "prompt-completion" | "messages" | "converse" | "continued-pretraining" (also "pc", "cpt") → format.
record_format bedrock_format_from_name(const char *name);
