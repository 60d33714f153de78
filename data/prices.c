// data/prices.c — see prices.h. The rows name every model data/limits.h covers; no price was
// available to this build from a source we could cite: the pricing page fills its tables
// (customization, Provisioned Throughput, Custom Model Import) client-side, so the stored copies
// reachable here hold its text but no figure (a 2026-10-07 transcription of it notes the same:
// "{priceOf!...}" template tokens), and figures quoted by third parties were not taken as the
// price. So every price is NAN: `quarry validate` and `quarry cost` say "unknown" (and name the
// flag that supplies it) rather than print an invented figure. To add a price, fill a row with
// the figure, the region, the page and the date you read it.
#include "prices.h"
#include <math.h>
#include <stddef.h>
#include <string.h>

#define SRC "https://aws.amazon.com/bedrock/pricing/ (model customization table)"
#define CMI_SRC "https://aws.amazon.com/bedrock/pricing/ (Custom Model Import); billing in 5-minute windows: " \
                "https://docs.aws.amazon.com/bedrock/latest/userguide/import-model-calculate-cost.html"
#define DATE "2026-11-26"

static const price_row table[] = {
    {"meta.llama3-1-8b-instruct-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"meta.llama3-1-70b-instruct-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"meta.llama3-2-1b-instruct-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"meta.llama3-2-3b-instruct-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"meta.llama3-2-11b-instruct-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"meta.llama3-2-90b-instruct-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"meta.llama3-3-70b-instruct-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"anthropic.claude-3-haiku-20240307-v1:0", NAN, NAN, NAN, "us-west-2", SRC, DATE},
    {"amazon.nova-micro-v1:0", NAN, NAN, NAN, "us-east-1", SRC, DATE},
    {"amazon.nova-lite-v1:0", NAN, NAN, NAN, "us-east-1", SRC, DATE},
    {"amazon.nova-pro-v1:0", NAN, NAN, NAN, "us-east-1", SRC, DATE},
};

static const cmi_price_row cmi_table[] = {
    {"v1.0", "us-east-1", NAN, NAN, CMI_SRC, DATE},
    {"v1.0", "us-west-2", NAN, NAN, CMI_SRC, DATE},
};

const cmi_price_row *prices_cmi(const char *region) {
    for (size_t i = 0; i < sizeof cmi_table / sizeof cmi_table[0]; i++)
        if (!region || !strcmp(region, cmi_table[i].region)) return &cmi_table[i];
    return NULL;
}

double prices_cmi_billed_minutes(double minutes) {
    if (!(minutes > 0)) return 0;
    return 5.0 * ceil(minutes / 5.0 - 1e-9);
}

const price_row *prices_table(int *n) {
    *n = (int)(sizeof table / sizeof table[0]);
    return table;
}

const price_row *prices_find(const char *model_id) {
    if (!model_id) return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t l = strlen(table[i].model_id);
        if (!strncmp(model_id, table[i].model_id, l) && (model_id[l] == '\0' || model_id[l] == ':')) return &table[i];
    }
    return NULL;
}

int prices_known(double usd) { return !isnan(usd); }

double prices_training_cost(const price_row *row, double tokens, int epochs) {
    if (!row || isnan(row->train_per_1k_tokens) || tokens < 0 || epochs < 1) return NAN;
    return tokens * (double)epochs / 1000.0 * row->train_per_1k_tokens;
}
