// data/cost.h — what a fine-tune cost here (from a run's measured time and tokens) or would cost
// (tokens ÷ tokens/s), against Bedrock's managed customization, and a month of serving: Custom
// Model Import vs Provisioned Throughput. Prices come from data/prices (dated, sourced) or the
// caller's overrides; an unknown price makes its figure NAN ("unknown"), never a guess. The one
// computation behind `quarry cost` (table, --json) and `quarry report`'s cost section.
#pragma once
#include <stddef.h>
#include "prices.h"

// What the user gives (`quarry cost`'s flags); NAN / NULL / 0 = not given. cost_inputs_default.
typedef struct {
    const char *run;               // RUN: run.json's "result" gives tokens, time, GPUs, energy
    double tokens;                 // an estimate for this many data tokens instead
    int epochs;                    // 0: the run's, else 1
    double tokens_per_second, gpus;
    double gpu_hour_price;         // on-prem USD per GPU-hour
    double gpu_price, amortize_years, utilization;   // capital cost, amortised per GPU-hour
    double power_price, gpu_watts;
    const char *base_model, *region;
    double per_1k, storage_month, pt_hour, model_units, params_b, cmus, copies, cmu_minute, cmu_storage_month;
    double hours_per_day, days;
} cost_inputs;

// Everything the table and the JSON show; NAN = unknown.
typedef struct {
    const char *mode;              // "run" or "estimate"
    const char *run_dir;
    double tokens_trained;         // tokens processed in training (data tokens × epochs)
    double data_tokens;            // --tokens (estimate), NAN from a run
    int epochs;
    double tokens_per_second;
    double wall_seconds, train_seconds;
    double gpus, gpu_hours, gpu_hour_price, onprem_gpu_usd;
    double energy_kwh;             // measured (run.json) or gpu_watts × GPU-hours
    const char *energy_from;       // "measured", "--gpu-watts", NULL
    double power_price, energy_usd, onprem_usd;
    double capital_hour;           // --gpu-price amortised per GPU-hour; NAN without it
    double gpu_price, amortize_years, utilization;
    const char *base_model;
    const price_row *row;
    const char *import_only;       // family Bedrock cannot fine-tune (CMI is the road), else NULL
    price_fig per_1k, storage, pt_hour, cmu_minute, cmu_store, cmus_fig;   // each with its source
    double per_1k_usd, managed_train_usd, managed_storage_month;
    double hours_per_day, days;
    double model_units, pt_unit_hour, pt_month_usd;
    double copies, cmus, cmu_minute_usd, cmu_storage_month, cmi_billed_minutes, cmi_month_usd, cmi_storage_usd;
    int cmus_estimated;            // cmus_fig is prices_cmu_estimate's (its source states the rule)
    double params_b;
    const cmi_price_row *cmi_row;
    char unfinished[256];          // why the run's figures are not a whole job's; "" when it finished
} cost;

// Nothing given: NAN prices, 8 hours a day for 30 days, one model unit, one model copy.
void cost_inputs_default(cost_inputs *in);
// Reads in->run (if any) and computes every figure. 0 ok; -1 + message (run.json unreadable or
// without "result"). Range checks of the inputs are the caller's (`quarry cost`'s usage errors).
int cost_compute(const cost_inputs *in, cost *c, char *err, size_t errlen);
// a + b, NAN when either is unknown.
double cost_sum_known(double a, double b);
// The first month: training + storage + serving, on-prem (CMI) and managed (Bedrock + PT).
double cost_first_month_onprem(const cost *c);
double cost_first_month_managed(const cost *c);
