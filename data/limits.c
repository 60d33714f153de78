// data/limits.c — see limits.h. Sources, per row: record counts and tokens per record for the
// Llama 3.x and Claude 3 Haiku rows are the figures issue 3 quotes from Bedrock's "Prepare data
// for fine-tuning your models" page (Llama 3.x: 100-10,000 records, 16,000 tokens prompt +
// completion; Claude 3 Haiku: 32-10,000 records, 32,000 tokens); they were not re-read from the
// live page for this table. The Nova rows (8-20,000 records) and the reserved words were checked
// against the Amazon Nova user guide's "Preparing data for fine-tuning Understanding models"
// page, which also says schemaVersion may be any string value. Dates: when the row was written.
#include "limits.h"
#include <ctype.h>
#include <string.h>

#define F(x) (1u << (x))
#define SRC_BEDROCK "https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-prepare.html"
#define SRC_NOVA "https://docs.aws.amazon.com/nova/latest/userguide/fine-tune-prepare-data-understanding.html"
#define DATE "2026-11-26"

const char *const limits_reserved_words[] = {"User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]", NULL};

static const base_model_limits table[] = {
    {"meta.llama3-1-8b-instruct-v1:0", "Meta Llama 3.1 8B Instruct",
     F(FORMAT_PROMPT_COMPLETION) | F(FORMAT_MESSAGES), 100, 10000, 16000, 0, SRC_BEDROCK, DATE},
    {"meta.llama3-1-70b-instruct-v1:0", "Meta Llama 3.1 70B Instruct",
     F(FORMAT_PROMPT_COMPLETION) | F(FORMAT_MESSAGES), 100, 10000, 16000, 0, SRC_BEDROCK, DATE},
    {"meta.llama3-2-1b-instruct-v1:0", "Meta Llama 3.2 1B Instruct",
     F(FORMAT_PROMPT_COMPLETION) | F(FORMAT_MESSAGES) | F(FORMAT_CONVERSE), 100, 10000, 16000, 0, SRC_BEDROCK, DATE},
    {"meta.llama3-2-3b-instruct-v1:0", "Meta Llama 3.2 3B Instruct",
     F(FORMAT_PROMPT_COMPLETION) | F(FORMAT_MESSAGES) | F(FORMAT_CONVERSE), 100, 10000, 16000, 0, SRC_BEDROCK, DATE},
    {"meta.llama3-2-11b-instruct-v1:0", "Meta Llama 3.2 11B Instruct",
     F(FORMAT_PROMPT_COMPLETION) | F(FORMAT_MESSAGES) | F(FORMAT_CONVERSE), 100, 10000, 16000, 0, SRC_BEDROCK, DATE},
    {"meta.llama3-2-90b-instruct-v1:0", "Meta Llama 3.2 90B Instruct",
     F(FORMAT_PROMPT_COMPLETION) | F(FORMAT_MESSAGES) | F(FORMAT_CONVERSE), 100, 10000, 16000, 0, SRC_BEDROCK, DATE},
    {"meta.llama3-3-70b-instruct-v1:0", "Meta Llama 3.3 70B Instruct",
     F(FORMAT_PROMPT_COMPLETION) | F(FORMAT_MESSAGES) | F(FORMAT_CONVERSE), 100, 10000, 16000, 0, SRC_BEDROCK, DATE},
    {"anthropic.claude-3-haiku-20240307-v1:0", "Anthropic Claude 3 Haiku",
     F(FORMAT_MESSAGES), 32, 10000, 32000, 0, SRC_BEDROCK, DATE},
    {"amazon.nova-micro-v1:0", "Amazon Nova Micro", F(FORMAT_CONVERSE), 8, 20000, -1, 1, SRC_NOVA, DATE},
    {"amazon.nova-lite-v1:0", "Amazon Nova Lite", F(FORMAT_CONVERSE), 8, 20000, -1, 1, SRC_NOVA, DATE},
    {"amazon.nova-pro-v1:0", "Amazon Nova Pro", F(FORMAT_CONVERSE), 8, 20000, -1, 1, SRC_NOVA, DATE},
};

const base_model_limits *limits_table(int *n) {
    *n = (int)(sizeof table / sizeof table[0]);
    return table;
}

const base_model_limits *limits_find(const char *id) {
    if (!id) return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t l = strlen(table[i].id);
        // "meta.llama3-1-8b-instruct-v1:0:128k" is the customization variant of the same model.
        if (!strncmp(id, table[i].id, l) && (id[l] == '\0' || id[l] == ':')) return &table[i];
    }
    return NULL;
}

// Bedrock's list of fine-tunable models (custom-model-supported.html, read for
// ../shared/reference/bedrock_prices.md §1b) has no Qwen, Mistral or Mixtral model; CMI's list of
// architectures has them all. Matched as a case-insensitive substring, most specific first.
static const struct {
    const char *needle, *family;
} import_only[] = {
    {"qwen3-moe", "Qwen3-MoE"}, {"qwen3-30b-a3b", "Qwen3-MoE"}, {"qwen3-235b-a22b", "Qwen3-MoE"},
    {"qwen3", "Qwen3"}, {"qwen", "Qwen"}, {"mixtral", "Mixtral"}, {"mistral", "Mistral"},
};

static int contains_nocase(const char *s, const char *needle) {
    size_t n = strlen(needle);
    for (; *s; s++) {
        size_t i = 0;
        while (i < n && s[i] && tolower((unsigned char)s[i]) == needle[i]) i++;
        if (i == n) return 1;
    }
    return 0;
}

const char *limits_import_only_family(const char *id) {
    if (!id || limits_find(id)) return NULL;
    for (size_t i = 0; i < sizeof import_only / sizeof import_only[0]; i++)
        if (contains_nocase(id, import_only[i].needle)) return import_only[i].family;
    return NULL;
}
