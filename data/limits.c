// data/limits.c — see limits.h. Sources, per row: record counts and tokens per record for the
// Llama 3.x and Claude 3 Haiku rows are the figures issue 3 quotes from Bedrock's "Prepare data
// for fine-tuning your models" page (Llama 3.x: 100-10,000 records, 16,000 tokens prompt +
// completion, 10,000 for Llama 3.2 90B; Claude 3 Haiku: 32-10,000 records, 32,000 tokens). The
// Nova rows (8-20,000 records) and the reserved words were checked against the Amazon Nova user
// guide's "Preparing data for fine-tuning Understanding models" page, which also says
// schemaVersion may be any string value. Dates: when the row was written.
//
// Formats (issue 22), read 2026-12-06 from the same Bedrock page (AWS page via mirror:
// crowecawcaw/aws-docs-history docs/bedrock/latest/userguide/model-customization-prepare.md @076aa4d3):
// "non-conversational models" (prompt-completion) list Llama 3.1 8B/70B Instruct; the
// "conversational models" list Claude 3 Haiku (its own {"system": str, "messages"} format) and
// Llama 3.2 1B/3B/11B/90B and 3.3 70B "(Converse API format)". The Nova user guide takes only
// the converse format. AWS's validator scripts agree: models_registry.py gives llama3-1-* the
// PROMPT_COMPLETION input and llama3-2-* CONVERSE (aws-samples/amazon-bedrock-samples @85fba9d9,
// custom-models/bedrock-fine-tuning/meta-llama/dataset_validation/).
// Per-record rules: AWS's scripts at that commit — Llama utils/schema.py (schemaVersion const
// "bedrock-conversation-2024", system maxItems 1, "additionalProperties": true everywhere);
// Nova nova_ft_dataset_validator.py (pydantic models, extra keys ignored; images
// png/jpeg/gif/webp, videos mov/mkv/mp4/webm, <= 10 images or 1 video, none for Micro, none in
// assistant turns); Claude claude-haiku/DataValidation/data_validation.py (RESERVED_KEYWORDS
// "\nHuman:", "\nAssistant:"). Media per model: the Bedrock page names image formats for
// "Meta Llama-3.2 11B Vision Instruct and Meta Llama-3.2 90B Vision Instruct" only; Nova Lite and
// Pro take images and videos, Micro is text-only (the Nova script's is_micro_model rule).
#include "limits.h"
#include <ctype.h>
#include <string.h>

#define F(x) (1u << (x))
#define SRC_BEDROCK "https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-prepare.html"
#define SRC_NOVA "https://docs.aws.amazon.com/nova/latest/userguide/fine-tune-prepare-data-understanding.html"
#define DATE "2026-11-26"
#define RULES_LLAMA "AWS's Llama validator (amazon-bedrock-samples meta-llama/dataset_validation)"
#define RULES_NOVA "AWS's Nova validator (amazon-bedrock-samples nova_ft_dataset_validator.py)"
#define RULES_HAIKU "Bedrock's Claude 3 Haiku format and AWS's Haiku validator (amazon-bedrock-samples claude-haiku/DataValidation)"
#define IMG LIMITS_MEDIA_IMAGE
#define VID LIMITS_MEDIA_VIDEO

const char *const limits_reserved_words[] = {"User:", "Bot:", "Assistant:", "System:", "<image>", "<video>", "[EOS]", NULL};

// Llama 3.1: prompt-completion only ("non-conversational"); extra keys ignored by the script.
#define LLAMA31(id, name) {id, name, F(FORMAT_PROMPT_COMPLETION), 100, 10000, 16000, 0, SRC_BEDROCK, DATE, \
                           NULL, 0, 0, 0, 0, RULES_LLAMA}
// Llama 3.2 / 3.3: converse only, schemaVersion exactly "bedrock-conversation-2024", one system block.
#define LLAMA32(id, name, tokens, media) {id, name, F(FORMAT_CONVERSE), 100, 10000, tokens, 0, SRC_BEDROCK, DATE, \
                                          "bedrock-conversation-2024", 1, 0, 0, media, RULES_LLAMA}
// Nova: converse only, any schemaVersion string, reserved words, extra keys ignored by the script.
#define NOVA(id, name, media) {id, name, F(FORMAT_CONVERSE), 8, 20000, -1, 1, SRC_NOVA, DATE, NULL, 0, 0, 0, media, RULES_NOVA}

static const base_model_limits table[] = {
    LLAMA31("meta.llama3-1-8b-instruct-v1:0", "Meta Llama 3.1 8B Instruct"),
    LLAMA31("meta.llama3-1-70b-instruct-v1:0", "Meta Llama 3.1 70B Instruct"),
    LLAMA32("meta.llama3-2-1b-instruct-v1:0", "Meta Llama 3.2 1B Instruct", 16000, 0),
    LLAMA32("meta.llama3-2-3b-instruct-v1:0", "Meta Llama 3.2 3B Instruct", 16000, 0),
    LLAMA32("meta.llama3-2-11b-instruct-v1:0", "Meta Llama 3.2 11B Instruct", 16000, IMG),
    LLAMA32("meta.llama3-2-90b-instruct-v1:0", "Meta Llama 3.2 90B Instruct", 10000, IMG),
    LLAMA32("meta.llama3-3-70b-instruct-v1:0", "Meta Llama 3.3 70B Instruct", 16000, 0),
    // Claude 3 Haiku: its own messages format (string contents) only; the page's format has only
    // "system" and "messages", so quarry keeps refusing other keys (issue 22; AWS's pydantic
    // script ignores them, a disagreement scripts/reference/compare_aws_validators.py lists);
    // turn markers refused as the script does.
    {"anthropic.claude-3-haiku-20240307-v1:0", "Anthropic Claude 3 Haiku", F(FORMAT_MESSAGES), 32, 10000, 32000, 0,
     SRC_BEDROCK, DATE, NULL, 0, 1, 1, 0, RULES_HAIKU},
    NOVA("amazon.nova-micro-v1:0", "Amazon Nova Micro", 0),
    NOVA("amazon.nova-lite-v1:0", "Amazon Nova Lite", IMG | VID),
    NOVA("amazon.nova-pro-v1:0", "Amazon Nova Pro", IMG | VID),
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
