// data/record.h — one Bedrock training record in quarry's internal form, whatever its JSONL
// format: an optional system text and alternating user/assistant turns, or raw text for
// continued pre-training. Produced by data/bedrock, consumed by data/chat and data/dataset.
#pragma once
#include <stddef.h>

typedef enum {
    FORMAT_UNKNOWN = 0,
    FORMAT_PROMPT_COMPLETION,   // {"prompt", "completion"}
    FORMAT_MESSAGES,            // {"system"?: str, "messages": [{"role", "content": str}]}
    FORMAT_CONVERSE,            // {"schemaVersion"?, "system"?: [{"text"}], "messages": [{"role", "content": [{"text"}]}]}
    FORMAT_CPT,                 // {"input"}
} record_format;

typedef enum { ROLE_USER = 0, ROLE_ASSISTANT = 1 } record_role;

typedef struct {
    record_role role;
    char *text;                 // UTF-8, NUL-terminated; several content blocks already joined
    size_t len;
} record_turn;

typedef struct {
    record_format format;
    long line;                  // 1-based line in its file
    char *system;               // NULL when absent
    size_t system_len;
    record_turn *turns;         // prompt/completion → one user turn + one assistant turn
    int nturns;
    char *text;                 // FORMAT_CPT only: the document
    size_t text_len;
} record;

const char *record_format_name(record_format f);   // "prompt-completion", "messages", ...
void record_free(record *r);                        // frees the strings and turns, not r itself
