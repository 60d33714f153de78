// data/prices.h — a dated table of Amazon Bedrock model customization prices: USD per 1,000
// training tokens (tokens × epochs) and per custom model stored per month, with the source
// and date of each row. A price the table does not have is unknown (NAN), never a guess.
// Used by `quarry validate` (cost preview) and `quarry cost`.
#pragma once

typedef struct {
    const char *model_id;          // Bedrock base model id, as in data/limits.h
    double train_per_1k_tokens;    // USD per 1,000 tokens processed in training; NAN unknown
    double storage_per_month;      // USD per custom model per month; NAN unknown
    const char *region;            // the region the price is for
    const char *source;            // where it was read
    const char *date;              // when (YYYY-MM-DD)
} price_row;

// Exact id or id plus a ":NNk" suffix; NULL when the model is not in the table at all.
const price_row *prices_find(const char *model_id);
const price_row *prices_table(int *n);
int prices_known(double usd);      // 0 for NAN
// tokens × epochs / 1000 × price; NAN when the row or its training price is unknown.
double prices_training_cost(const price_row *row, double tokens, int epochs);
