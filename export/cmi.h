// export/cmi.h — what Amazon Bedrock Custom Model Import (CMI) requires of a package, checked
// before anything is uploaded (`quarry preflight`, and the end of every `quarry export`).
//
// Source: "Use Custom model import to import a customized open-source model into Amazon Bedrock"
// (https://docs.aws.amazon.com/bedrock/latest/userguide/model-customization-import-model.html,
// sections "Supported architectures", "Import a model source from Amazon S3", "Supported
// tokenizers") and "Handling Custom Chat Templates and Tokenizers"
// (https://docs.aws.amazon.com/bedrock/latest/userguide/custom-chat-templates-tokenizers.html),
// as read on CMI_TABLE_DATE. AWS changes these lists; update the table and the date together.
//
// Each check ends pass, warn (CMI accepts it but something will not work as expected) or fail
// (the import would be refused or the model would be wrong), with the reason.
#pragma once
#include <stdio.h>

#define CMI_TABLE_DATE "2026-11-26"

typedef enum { CMI_PASS = 0, CMI_WARN, CMI_FAIL } cmi_status;

typedef struct {
    char name[32];          // "architecture", "dtype", ...
    cmi_status status;
    char reason[1536];
} cmi_check;

typedef struct {
    cmi_check *checks;
    int n, cap;
    int failed, warned;     // counts
    int oom;                // a check could not be recorded
} cmi_report;

typedef struct {
    const char *architecture;   // config.json "architectures"[0]
    const char *family;         // as the documentation names it
    int multimodal;             // weights must stay under 100 GB instead of 200 GB
} cmi_arch;

// The supported architectures (documented families mapped to transformers class names).
extern const cmi_arch cmi_architectures[];
extern const int cmi_narchitectures;
// NULL when CMI does not import the architecture.
const cmi_arch *cmi_arch_find(const char *architecture);

// gpt-oss (GptOssForCausalLM): CMI needs generation_config.json's eos_token_id to be the updated
// list [200002, 199999, 200012] (<|return|>, <|endoftext|>, <|call|>; transformers'
// convert_gpt_oss_weights_to_hf.py writes [200002, 199999], without <|call|>, so a tool call would
// not stop generation). Source: AWS Machine Learning Blog, "Deploy GPT-OSS models with Amazon
// Bedrock Custom Model Import" (2025-11-25), as issue 18 quotes it.
// Export writes it (cmi_generation_eos_fix); preflight fails a file without it.
#define CMI_GPTOSS_ARCH "GptOssForCausalLM"
struct cJSON;
extern const int cmi_gptoss_eos[3];
// For gpt-oss, sets gen's eos_token_id to the list CMI needs; other architectures: nothing.
// 0, or -1 when out of memory.
int cmi_generation_eos_fix(struct cJSON *gen, const char *architecture);

// Runs every check on the package in dir. 0 when the checks ran (see r->failed), -1 only when out
// of memory. The report is freed with cmi_report_free.
int cmi_preflight(const char *dir, cmi_report *r);
void cmi_report_free(cmi_report *r);

// "PASS  architecture  LlamaForCausalLM is supported (...)" lines and a summary.
void cmi_report_print(const cmi_report *r, const char *dir, FILE *f);
// {"dir", "result": "pass"|"fail", "table_date", "checks": [{"name","status","reason"}]}.
struct cJSON *cmi_report_json(const cmi_report *r, const char *dir);
