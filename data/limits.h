// data/limits.h — what Bedrock accepts from a customization job's training data, per base model:
// record counts, tokens per record, record formats, Nova's reserved words, and the per-record
// rules AWS's own dataset validators apply (aws-samples/amazon-bedrock-samples, one script per
// family: schemaVersion, system blocks, Claude's turn markers, extra keys, media blocks). Each
// row names the Bedrock model id it covers, the documentation page and the date the figures
// were taken. A figure the documentation did not give is -1 (unknown), never a guess.
#pragma once
#include "record.h"

typedef struct {
    const char *id;            // Bedrock base model id, e.g. "meta.llama3-1-8b-instruct-v1:0"
    const char *name;          // "Meta Llama 3.1 8B Instruct"
    unsigned formats;          // bit (1u << record_format) for each format Bedrock's job takes
    long min_records;          // training records, -1 unknown
    long max_records;
    long max_tokens;           // tokens per record (prompt + completion), -1 unknown
    int reserved_words;        // 1: Nova's reserved words are refused in user and system text
    const char *source;        // documentation page the figures come from
    const char *date;          // when they were taken (YYYY-MM-DD)
    // Per-record rules of AWS's validator script for the family (`rules` names it).
    const char *schema_version;  // converse: the only schemaVersion taken; NULL = any string
    int max_system_blocks;       // converse: at most this many system blocks; 0 = no limit
    int turn_markers;            // 1: "\nHuman:" / "\nAssistant:" refused in any text (Claude)
    int strict_keys;             // 1: unknown keys refused; 0: a warning (the script ignores them)
    unsigned media;              // LIMITS_MEDIA_* blocks the job takes in user turns; 0 = text only
    const char *rules;           // "AWS's Llama validator (...)": cited in messages
} base_model_limits;

#define LIMITS_MEDIA_IMAGE 1u
#define LIMITS_MEDIA_VIDEO 2u

// Exact id, or the id with a customization suffix such as ":128k". NULL when not in the table.
const base_model_limits *limits_find(const char *id);
const base_model_limits *limits_table(int *n);
// For an id not in the table that names a family Bedrock does not fine-tune but Custom Model
// Import imports (Qwen2/2.5/3, Qwen3-MoE, Mistral, Mixtral: "qwen.qwen3-32b-v1:0", "Qwen/Qwen3-8B",
// "mistral.mixtral-8x7b-instruct-v0:1"): the family's name, else NULL.
const char *limits_import_only_family(const char *id);
// Nova's reserved words, NULL-terminated.
extern const char *const limits_reserved_words[];
