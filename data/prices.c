// data/prices.c — see prices.h. Every figure is one of ../shared/reference/bedrock_prices.md
// (compiled 2026-12-05 from stored copies of AWS pages and third-party transcriptions); the
// section of that file is named beside each group. The live AWS pricing page fills its tables
// client-side, so the only full AWS capture with Custom Model Import figures is a Korean-language
// scrape dated by its 6 March 2025 banner; Bedrock's per-token training prices for Llama 3.x,
// Nova and Claude 3 Haiku were in none of the stored copies and stay "not published" (NAN).
// Figures whose third-party source was not kept (the 2026 CMI rate, a measured Nemotron CMU
// count) are hints only: see prices_cmi_newer_rate_note.
#include "prices.h"
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "limits.h"

#define NONE {NAN, NULL, NULL, 0}

// §2: the AWS pricing page's Custom Model Import tab (CMU v1.0) and its CMU-per-model list.
#define KO_SRC "AWS Bedrock pricing page, Custom Model Import tab (aws.amazon.com/ko/bedrock/pricing, " \
               "capture in sungminna/GapS crawl/aws_pricing_data_titan.md)"
#define KO_DATE "2025-03-06"
#define CMU(n) {n, KO_SRC, KO_DATE, 0}

// §1a: Amazon Nova Provisioned Throughput, no commitment; third-party transcription of the AWS
// Price List API, which lists Micro, Lite and Pro at one price.
#define NOVA_PT {60.50, "api-evangelist/amazon-nova plans/amazon-nova-plans-pricing.yml (third-party transcription " \
                        "of the AWS Price List API, us-east-1)", "2026-09-01", 1}

// §1b: custom-model-supported.html lists what Bedrock fine-tunes; CMI's architecture page (§3)
// what it imports. Parameter counts are the models' published ones (MoE: total parameters).
static const price_row table[] = {
    {"meta.llama3-1-8b-instruct-v1:0", "Llama 3.1 8B Instruct", 8.03, 1, 1, "us-west-2", NONE, NONE, NONE, CMU(2)},
    {"meta.llama3-1-70b-instruct-v1:0", "Llama 3.1 70B Instruct", 70.6, 1, 1, "us-west-2", NONE, NONE, NONE, CMU(8)},
    {"meta.llama3-2-1b-instruct-v1:0", "Llama 3.2 1B Instruct", 1.24, 1, 1, "us-west-2", NONE, NONE, NONE, NONE},
    {"meta.llama3-2-3b-instruct-v1:0", "Llama 3.2 3B Instruct", 3.21, 1, 1, "us-west-2", NONE, NONE, NONE, NONE},
    {"meta.llama3-2-11b-instruct-v1:0", "Llama 3.2 11B Instruct", 10.6, 1, 1, "us-west-2", NONE, NONE, NONE, CMU(4)},
    {"meta.llama3-2-90b-instruct-v1:0", "Llama 3.2 90B Instruct", 88.6, 1, 1, "us-west-2", NONE, NONE, NONE, NONE},
    {"meta.llama3-3-70b-instruct-v1:0", "Llama 3.3 70B Instruct", 70.6, 1, 1, "us-west-2", NONE, NONE, NONE, NONE},
    {"anthropic.claude-3-haiku-20240307-v1:0", "Claude 3 Haiku", NAN, 1, 0, "us-west-2", NONE, NONE, NONE, NONE},
    {"amazon.nova-micro-v1:0", "Amazon Nova Micro", NAN, 1, 0, "us-east-1", NONE, NONE, NOVA_PT, NONE},
    {"amazon.nova-lite-v1:0", "Amazon Nova Lite", NAN, 1, 0, "us-east-1", NONE, NONE, NOVA_PT, NONE},
    {"amazon.nova-pro-v1:0", "Amazon Nova Pro", NAN, 1, 0, "us-east-1", NONE, NONE, NOVA_PT, NONE},
    // Import only (matched as a substring, lower case; a longer name before one it contains).
    {"mistral-7b", "Mistral 7B", 7.24, 0, 1, "any", NONE, NONE, NONE, CMU(1)},
    {"mixtral-8x7b", "Mixtral 8x7B", 46.7, 0, 1, "any", NONE, NONE, NONE, CMU(4)},
    {"mixtral-8x22b", "Mixtral 8x22B", 141, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-30b-a3b", "Qwen3-30B-A3B", 30.5, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-235b-a22b", "Qwen3-235B-A22B", 235, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-0.6b", "Qwen3-0.6B", 0.6, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-1.7b", "Qwen3-1.7B", 1.7, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-4b", "Qwen3-4B", 4.0, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-8b", "Qwen3-8B", 8.2, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-14b", "Qwen3-14B", 14.8, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen3-32b", "Qwen3-32B", 32.8, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen2.5-7b", "Qwen2.5-7B", 7.61, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen2.5-14b", "Qwen2.5-14B", 14.7, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen2.5-32b", "Qwen2.5-32B", 32.5, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"qwen2.5-72b", "Qwen2.5-72B", 72.7, 0, 1, "any", NONE, NONE, NONE, NONE},
    {"gpt-oss-20b", "gpt-oss-20b", 20.9, 0, 1, "us-east-1", NONE, NONE, NONE, NONE},
    {"gpt-oss-120b", "gpt-oss-120b", 116.8, 0, 1, "us-east-1", NONE, NONE, NONE, NONE},
};

// §2: CMU v1.0, the same in both regions the page names; 5-minute windows; import free.
static const cmi_price_row cmi_table[] = {
    {"v1.0", "us-east-1", {0.0785, KO_SRC, KO_DATE, 0}, {1.95, KO_SRC, KO_DATE, 0}},
    {"v1.0", "us-west-2", {0.0785, KO_SRC, KO_DATE, 0}, {1.95, KO_SRC, KO_DATE, 0}},
};

const char prices_cmi_newer_rate_note[] =
    "third parties quote a 2026 rate of $0.05718 per CMU-minute in us-east-1/us-west-2 (not confirmed "
    "by an AWS text); pass --cmu-minute-price 0.05718 to price with it";

// §4: AWS list prices after the June 2025 cut, as aggregated by instances.vantage.sh (third-party).
static const gpu_price_row gpu_table[] = {
    {"H100", "p5.4xlarge (1x H100 80GB), On-Demand", "us-east-1",
     {6.88, "tsaol/aws-gpu data/p5_family_all.js (third-party aggregation of the AWS list price, instances.vantage.sh)",
      "2026-08-26", 1}},
    {"H200", "p5en.48xlarge (8x H200) On-Demand 63.296 USD/h / 8", "us-east-1",
     {7.912, "tsaol/aws-gpu data/p5_family_all.js (instances.vantage.sh); also dstackai/dstack PR #4110 (third-party)",
      "2026-08-26", 1}},
};

// Where the lower-case needle first occurs in s, ignoring case; NULL if nowhere.
static const char *find_nocase(const char *s, const char *needle) {
    size_t n = strlen(needle);
    for (; *s; s++) {
        size_t i = 0;
        while (i < n && s[i] && tolower((unsigned char)s[i]) == needle[i]) i++;
        if (i == n) return s;
    }
    return NULL;
}

const price_row *prices_table(int *n) {
    *n = (int)(sizeof table / sizeof table[0]);
    return table;
}

const price_row *prices_find(const char *model_id) {
    if (!model_id) return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const char *id = table[i].model_id;
        size_t l = strlen(id);
        if (table[i].bedrock_finetune) {
            if (!strncmp(model_id, id, l) && (model_id[l] == '\0' || model_id[l] == ':')) return &table[i];
        } else {
            // The size ends the name: "qwen3-8b" is not the start of a "qwen3-8b5".
            const char *at = find_nocase(model_id, id);
            if (at && !isalnum((unsigned char)at[l]) && at[l] != '.') return &table[i];
        }
    }
    return NULL;
}

const char *prices_import_only_family(const char *model_id) {
    if (!model_id) return NULL;
    const price_row *r = prices_find(model_id);
    if (r && r->bedrock_finetune) return NULL;
    if (find_nocase(model_id, "gpt-oss")) return "GPT-OSS";
    return limits_import_only_family(model_id);
}

double prices_params_from_name(const char *s) {
    if (!s) return NAN;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p)) continue;
        if (p != s && !strchr("-_/ .", p[-1])) {   // "qwen3", "x7b", "a3b": not a size
            while (isdigit((unsigned char)p[1]) || p[1] == '.') p++;
            continue;
        }
        const char *q = p;
        double v = 0, scale = 0;
        for (; isdigit((unsigned char)*q) || *q == '.'; q++) {
            if (*q == '.') {
                if (scale) break;
                scale = 1;
            } else {
                v = v * 10 + (*q - '0');
                if (scale) scale *= 10;
            }
        }
        if (scale) v /= scale;
        if ((*q == 'b' || *q == 'B') && !isalnum((unsigned char)q[1]) && v > 0) return v;
        p = q - 1;
    }
    return NAN;
}

price_fig prices_cmu_estimate(double params_b) {
    // The sizes AWS lists a CMU count for (§2), ascending.
    static const double size[] = {7.24, 8.03, 10.6, 46.7, 70.6}, cmus[] = {1, 2, 4, 4, 8};
    const int n = (int)(sizeof size / sizeof size[0]);
    price_fig f = {NAN,
                   "estimate: the CMUs AWS lists for the listed model nearest in parameter count (Mistral 7B 1, "
                   "Llama 3.1 8B 2, Llama 3.2 11B 4, Mixtral 8x7B 4, Llama 3.1 70B 8), beyond 70B 8 per 70.6B "
                   "rounded up; AWS sets the real count at import; list: " KO_SRC,
                   KO_DATE, 0};
    if (!(params_b > 0) || !isfinite(params_b)) return f;
    if (params_b > size[n - 1]) {
        f.usd = ceil(cmus[n - 1] * params_b / size[n - 1] - 1e-9);
        return f;
    }
    int best = 0;
    for (int i = 1; i < n; i++)
        if (fabs(log(params_b / size[i])) <= fabs(log(params_b / size[best]))) best = i;
    f.usd = cmus[best];
    return f;
}

const cmi_price_row *prices_cmi(const char *region) {
    for (size_t i = 0; i < sizeof cmi_table / sizeof cmi_table[0]; i++)
        if (!strcmp(region ? region : "us-east-1", cmi_table[i].region)) return &cmi_table[i];
    return NULL;
}

const gpu_price_row *prices_gpus(int *n) {
    *n = (int)(sizeof gpu_table / sizeof gpu_table[0]);
    return gpu_table;
}

double prices_cmi_billed_minutes(double minutes) {
    if (!(minutes > 0)) return 0;
    return 5.0 * ceil(minutes / 5.0 - 1e-9);
}

int prices_known(double usd) { return !isnan(usd); }

double prices_training_cost(const price_row *row, double tokens, int epochs) {
    if (!row || isnan(row->train_per_1k.usd) || tokens < 0 || epochs < 1) return NAN;
    return tokens * (double)epochs / 1000.0 * row->train_per_1k.usd;
}

double prices_amortised_gpu_hour(double gpu_price, double years, double utilization) {
    if (!(gpu_price >= 0) || !(years > 0) || !(utilization > 0 && utilization <= 1)) return NAN;
    return gpu_price / (years * 8766.0 * utilization);   // 8766 h: a year of 365.25 days
}
