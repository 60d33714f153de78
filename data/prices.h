// data/prices.h — the dated, sourced table of what Bedrock and a cloud GPU cost, per base model:
// Bedrock customization (USD per 1,000 training tokens, tokens × epochs; storage per custom model
// per month; Provisioned Throughput per model unit per hour, no commitment), whether Bedrock can
// fine-tune the model at all, Custom Model Import (CMUs per model copy, USD per CMU-minute billed
// in 5-minute windows, storage per CMU-month) and AWS on-demand GPU-hours as the cloud reference
// for an on-prem run. Every figure carries its source and date and says whether the source is
// AWS's own text or a third party's; AWS figures are preferred where both exist. A figure no
// source gives is NAN ("not published"), never a guess; the one rule that estimates (CMUs for a
// size AWS does not list) says so. The figures are those of ../shared/reference/bedrock_prices.md.
// Used by `quarry cost` and `quarry validate`'s cost preview.
#pragma once

// One figure and where it comes from. usd NAN: not published (source and date NULL).
typedef struct {
    double usd;
    const char *source;
    const char *date;      // YYYY-MM-DD the source states (or its capture date)
    int third_party;       // 1: not an AWS text (a transcription, an aggregator, a write-up)
} price_fig;

typedef struct {
    const char *model_id;  // Bedrock base model id (as in data/limits.h), or a lower-case name
                           // matched as a substring for models Bedrock does not fine-tune
    const char *name;
    double params_b;       // published parameter count, billions (MoE: total); NAN for closed models
    int bedrock_finetune;  // 1: a Bedrock customization job takes it; 0: CMI is the only road
    int importable;        // 1: its architecture is one Custom Model Import takes
    const char *region;    // where Bedrock fine-tunes it, else where CMI takes it ("any")
    price_fig train_per_1k, storage_month, pt_unit_hour;
    price_fig cmus;        // CMUs per copy as AWS lists them (usd holds the count); NAN: not listed
} price_row;

// Custom Model Import rates per region.
typedef struct {
    const char *cmu_version;   // GetImportedModel's customModelUnitsVersion, "?" where unknown
    const char *region;
    price_fig per_cmu_minute;
    price_fig storage_per_cmu_month;
} cmi_price_row;

// AWS on-demand price of one GPU-hour, the cloud reference beside an on-prem run.
typedef struct {
    const char *gpu;           // "H100", "H200"
    const char *instance;      // the instance the figure is read from
    const char *region;
    price_fig per_gpu_hour;
} gpu_price_row;

// The row for a model: a Bedrock id (exact, or with a ":NNk" suffix), or a name containing a row's
// import-only model (e.g. "Qwen/Qwen3-8B", "mistral.mixtral-8x7b-instruct-v0:1"). NULL: none.
const price_row *prices_find(const char *model_id);
const price_row *prices_table(int *n);
// The family of a model Bedrock does not fine-tune but CMI imports (Qwen, Mistral, Mixtral,
// GPT-OSS), for ids not in the table too; NULL otherwise.
const char *prices_import_only_family(const char *model_id);
// Parameter count, billions, read from a name such as "qwen3-72b" or "Foo-1.5B"; NAN if none.
double prices_params_from_name(const char *model_id);
// The CMU estimate for a model of params_b billion parameters that AWS does not list: the CMUs AWS
// lists for the listed model nearest in parameter count (ratio of sizes), and beyond the largest
// listed (Llama 3.1 70B → 8) 8 CMUs per 70.6B rounded up. usd holds the count (NAN without a
// size), source the rule, date that of AWS's list.
price_fig prices_cmu_estimate(double params_b);
// The CMI row for region (NULL: us-east-1); NULL when no citable source prices that region.
const cmi_price_row *prices_cmi(const char *region);
// A newer CMI rate that only third parties quote, whose sources the reference could not keep: shown
// as a hint with the flag that applies it, never used as the figure.
extern const char prices_cmi_newer_rate_note[];
const gpu_price_row *prices_gpus(int *n);
int prices_known(double usd);      // 0 for NAN
// tokens × epochs / 1000 × price; NAN when the row or its training price is unknown.
double prices_training_cost(const price_row *row, double tokens, int epochs);
// Minutes billed for a model copy active `minutes` in one stretch: whole 5-minute windows.
double prices_cmi_billed_minutes(double minutes);
// The capital cost of one GPU-hour: price ÷ (years × 8766 h × utilisation); NAN if any is unusable.
double prices_amortised_gpu_hour(double gpu_price, double years, double utilization);
