// data/prices.h — a dated table of Amazon Bedrock prices, with the source and date of each row:
// model customization (USD per 1,000 training tokens, tokens × epochs; per custom model stored
// per month), serving a customized model with Provisioned Throughput (per model unit per hour,
// no commitment), and Custom Model Import (per Custom Model Unit per minute, billed in 5-minute
// windows; storage per CMU per month). A price the table does not have is unknown (NAN), never
// a guess. Used by `quarry validate` (cost preview) and `quarry cost`.
#pragma once

typedef struct {
    const char *model_id;          // Bedrock base model id, as in data/limits.h
    double train_per_1k_tokens;    // USD per 1,000 tokens processed in training; NAN unknown
    double storage_per_month;      // USD per custom model per month; NAN unknown
    double pt_per_unit_hour;       // USD per model unit per hour, no-commit Provisioned Throughput
                                   // of a model customized from this base; NAN unknown
    const char *region;            // the region the price is for
    const char *source;            // where it was read
    const char *date;              // when (YYYY-MM-DD)
} price_row;

// Custom Model Import prices by CMU version (GetImportedModel's customModelUnitsVersion) and region.
typedef struct {
    const char *cmu_version;       // "v1.0"
    const char *region;
    double per_cmu_minute;         // USD per CMU per minute of an active model copy; NAN unknown
    double storage_per_cmu_month;  // USD per CMU per month while imported; NAN unknown
    const char *source;
    const char *date;
} cmi_price_row;

// The row for region (NULL: the first row); NULL when the region has none.
const cmi_price_row *prices_cmi(const char *region);

// Exact id or id plus a ":NNk" suffix; NULL when the model is not in the table at all.
const price_row *prices_find(const char *model_id);
const price_row *prices_table(int *n);
int prices_known(double usd);      // 0 for NAN
// tokens × epochs / 1000 × price; NAN when the row or its training price is unknown.
double prices_training_cost(const price_row *row, double tokens, int epochs);
// Minutes billed for a model copy active `minutes` in one stretch: whole 5-minute windows.
double prices_cmi_billed_minutes(double minutes);
