// data/limits and data/prices: every row names a Bedrock model id, a source and a date; the
// lookup takes the customization suffix; unknown prices stay unknown (NAN), never 0.
#include "test.h"
#include "data/limits.h"
#include "data/prices.h"

static int is_date(const char *d) {
    return d && strlen(d) == 10 && d[4] == '-' && d[7] == '-';
}

int main(void) {
    int n;
    const base_model_limits *t = limits_table(&n);
    CHECK(n >= 8, "%d limit rows", n);
    for (int i = 0; i < n; i++) {
        CHECK(strchr(t[i].id, '.') && strchr(t[i].id, ':'), "row %d id %s", i, t[i].id);
        CHECK(t[i].source && !strncmp(t[i].source, "https://docs.aws.amazon.com/", 28), "row %s source", t[i].id);
        CHECK(is_date(t[i].date), "row %s date", t[i].id);
        // One format per model: Bedrock's "Prepare data" page lists each model once (issue 22).
        CHECK(t[i].formats != 0 && !(t[i].formats & (t[i].formats - 1)), "row %s formats %#x", t[i].id, t[i].formats);
        CHECK(t[i].rules && strstr(t[i].rules, "amazon-bedrock-samples"), "row %s names its validator", t[i].id);
        CHECK(t[i].min_records < 0 || t[i].max_records < 0 || t[i].min_records <= t[i].max_records, "row %s counts", t[i].id);
        CHECK(limits_find(t[i].id) == &t[i], "find %s", t[i].id);
        CHECK(prices_find(t[i].id) != NULL, "price row for %s", t[i].id);
    }
    const base_model_limits *l = limits_find("meta.llama3-1-8b-instruct-v1:0:128k");
    CHECK(l && l->min_records == 100 && l->max_records == 10000 && l->max_tokens == 16000, "llama 3.1 8b limits");
    l = limits_find("anthropic.claude-3-haiku-20240307-v1:0:200k");
    CHECK(l && l->min_records == 32 && l->max_records == 10000 && l->max_tokens == 32000, "haiku limits");
    l = limits_find("amazon.nova-micro-v1:0");
    CHECK(l && l->min_records == 8 && l->max_records == 20000 && l->reserved_words, "nova limits");
    CHECK(limits_find("meta.llama3-1-8b") == NULL, "a prefix is not a model");
    CHECK(limits_find("meta.llama3-1-8b-instruct-v1:0x") == NULL, "a longer id is not a model");

    const price_row *p = prices_table(&n);
    for (int i = 0; i < n; i++) {
        const price_fig *f[] = {&p[i].train_per_1k, &p[i].storage_month, &p[i].pt_unit_hour, &p[i].cmus};
        for (int k = 0; k < 4; k++)   // a figure has its source and date; a missing one has neither
            CHECK(prices_known(f[k]->usd) ? f[k]->usd > 0 && f[k]->source && is_date(f[k]->date) : !f[k]->source,
                  "price %s figure %d", p[i].model_id, k);
        CHECK(p[i].region && p[i].name, "price row %s", p[i].model_id);
        double c = prices_training_cost(&p[i], 1e6, 2);
        if (prices_known(p[i].train_per_1k.usd))
            CHECK(fabs(c - 2000 * p[i].train_per_1k.usd) < 1e-9, "cost %s", p[i].model_id);
        else
            CHECK(!prices_known(c), "unknown price gives an unknown cost for %s", p[i].model_id);
    }
    CHECK(prices_find("openai.gpt-9") == NULL, "no row for an unknown model");
    CHECK(!prices_known(prices_training_cost(NULL, 1000, 1)), "no row, no cost");
    return test_finish("test_tables");
}
