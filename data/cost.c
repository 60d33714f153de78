// data/cost.c — see cost.h.
#include "cost.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

double cost_sum_known(double a, double b) { return isnan(a) || isnan(b) ? NAN : a + b; }

double cost_first_month_onprem(const cost *c) {
    return cost_sum_known(cost_sum_known(c->onprem_usd, c->cmi_storage_usd), c->cmi_month_usd);
}

double cost_first_month_managed(const cost *c) {
    return cost_sum_known(cost_sum_known(c->managed_train_usd, c->managed_storage_month), c->pt_month_usd);
}

void cost_inputs_default(cost_inputs *in) {
    memset(in, 0, sizeof *in);
    in->tokens = in->tokens_per_second = in->gpus = in->gpu_hour_price = NAN;
    in->gpu_price = in->amortize_years = in->utilization = in->power_price = in->gpu_watts = NAN;
    in->per_1k = in->storage_month = in->pt_hour = in->params_b = in->cmus = NAN;
    in->cmu_minute = in->cmu_storage_month = NAN;
    in->model_units = in->copies = 1;
    in->hours_per_day = 8;
    in->days = 30;
}

// Reads RUN/run.json's "result" (and settings.epochs). 0 ok; -1 + message.
static int read_run(const char *dir, cost *c, char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    char *text = NULL;
    size_t len = 0;
    if (fileio_read_all(path, &text, &len, err, errlen) != 0) return -1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!j) {
        snprintf(err, errlen, "%s: not valid JSON", path);
        return -1;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
    int rc = -1;
    if (!cJSON_IsObject(r)) {
        snprintf(err, errlen, "%s: no \"result\": the run has not finished (or was not written by quarry train)", path);
        goto out;
    }
    c->tokens_trained = num(r, "tokens_trained");
    c->wall_seconds = num(r, "wall_seconds");
    c->train_seconds = num(r, "train_seconds");
    c->tokens_per_second = num(r, "tokens_per_second");
    c->gpus = num(r, "gpus");
    c->gpu_hours = num(r, "gpu_hours");
    double joules = num(r, "energy_joules");
    if (!isnan(joules)) {
        c->energy_kwh = joules / 3.6e6;
        c->energy_from = "measured";
    }
    double ep = num(cJSON_GetObjectItemCaseSensitive(j, "settings"), "epochs");
    if (!isnan(ep)) c->epochs = (int)ep;
    if (isnan(c->tokens_trained) || isnan(c->wall_seconds)) {
        snprintf(err, errlen, "%s: \"result\" lacks tokens_trained or wall_seconds", path);
        goto out;
    }
    if (isnan(c->train_seconds)) c->train_seconds = c->wall_seconds;
    // An interrupted or failed run writes "result" too, but no final/: its figures are a part of the job.
    snprintf(path, sizeof path, "%s/final", dir);
    const int interrupted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "interrupted"));
    const double steps = num(r, "steps");
    if (interrupted || !fileio_exists(path)) {
        char after[64] = "";
        if (!isnan(steps)) snprintf(after, sizeof after, " after %.0f steps", steps);
        snprintf(c->unfinished, sizeof c->unfinished, "%s%s%s", interrupted ? "interrupted" : "not finished", after,
                 fileio_exists(path) ? "" : ", no final/");
    }
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

// A price: the flag's value when given, else the table's figure (NAN: not published).
static price_fig pick(double flag_value, const char *flag, price_fig table) {
    if (isnan(flag_value)) return table;
    price_fig f = {flag_value, flag, "given", 0};
    return f;
}

int cost_compute(const cost_inputs *in, cost *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->wall_seconds = c->train_seconds = c->tokens_per_second = c->gpus = c->gpu_hours = c->energy_kwh = NAN;
    c->data_tokens = NAN;
    c->epochs = 1;
    c->run_dir = in->run;
    if (in->run && read_run(in->run, c, err, errlen) != 0) return -1;
    if (in->epochs > 0) c->epochs = in->epochs;
    if (!isnan(in->tokens)) {
        // An estimate: the run (if any) gives only its throughput and GPU count.
        c->mode = "estimate";
        c->data_tokens = in->tokens;
        c->tokens_trained = in->tokens * c->epochs;
        if (!isnan(in->tokens_per_second)) c->tokens_per_second = in->tokens_per_second;
        if (!isnan(in->gpus)) c->gpus = in->gpus;
        if (isnan(c->gpus) || (c->gpus == 0 && !in->run)) c->gpus = 1;
        c->wall_seconds = NAN;
        c->train_seconds = c->tokens_per_second > 0 ? c->tokens_trained / c->tokens_per_second : NAN;
        c->gpu_hours = c->train_seconds * c->gpus / 3600.0;
        if (c->energy_from) {   // a run's measured energy does not describe another job
            c->energy_kwh = NAN;
            c->energy_from = NULL;
        }
    } else {
        c->mode = "run";
        if (!isnan(in->gpus)) {
            c->gpus = in->gpus;
            c->gpu_hours = c->train_seconds * in->gpus / 3600.0;
        } else if (isnan(c->gpu_hours)) {
            if (isnan(c->gpus)) c->gpus = 0;
            c->gpu_hours = c->train_seconds * c->gpus / 3600.0;
        }
    }
    c->gpu_price = in->gpu_price;
    c->amortize_years = in->amortize_years;
    c->utilization = in->utilization;
    c->capital_hour = isnan(in->gpu_price) ? NAN
                                           : prices_amortised_gpu_hour(in->gpu_price, in->amortize_years, in->utilization);
    c->gpu_hour_price = !isnan(in->gpu_hour_price) ? in->gpu_hour_price : c->capital_hour;
    c->onprem_gpu_usd = c->gpu_hours == 0 ? 0 : c->gpu_hours * c->gpu_hour_price;   // a CPU run uses no GPU-hour
    if (!c->energy_from && !isnan(in->gpu_watts) && !isnan(c->gpu_hours)) {
        c->energy_kwh = in->gpu_watts * c->gpu_hours / 1000.0;
        c->energy_from = "--gpu-watts";
    }
    c->power_price = in->power_price;
    c->energy_usd = isnan(in->power_price) ? NAN : c->energy_kwh * in->power_price;
    c->onprem_usd = isnan(in->power_price) ? c->onprem_gpu_usd : cost_sum_known(c->onprem_gpu_usd, c->energy_usd);

    const char *base = in->base_model;
    c->base_model = base;
    c->row = base ? prices_find(base) : NULL;
    c->import_only = prices_import_only_family(base);
    const price_fig none = {NAN, NULL, NULL, 0};
    c->per_1k = pick(in->per_1k, "--price-per-1k-tokens", c->row ? c->row->train_per_1k : none);
    c->storage = pick(in->storage_month, "--storage-month-price", c->row ? c->row->storage_month : none);
    c->pt_hour = pick(in->pt_hour, "--pt-hour-price", c->row ? c->row->pt_unit_hour : none);
    if (c->import_only) {   // Bedrock has no job and no Provisioned Throughput for it: nothing to price
        c->per_1k = pick(in->per_1k, "--price-per-1k-tokens", none);
        c->storage = pick(in->storage_month, "--storage-month-price", none);
        c->pt_hour = pick(in->pt_hour, "--pt-hour-price", none);
    }
    c->per_1k_usd = c->per_1k.usd;
    c->managed_train_usd = c->tokens_trained / 1000.0 * c->per_1k_usd;
    c->managed_storage_month = c->storage.usd;
    c->hours_per_day = in->hours_per_day;
    c->days = in->days;
    c->model_units = in->model_units;
    c->pt_unit_hour = c->pt_hour.usd;
    c->pt_month_usd = in->model_units * 24.0 * in->days * c->pt_unit_hour;
    c->cmi_row = prices_cmi(in->region);
    c->copies = in->copies;
    // CMUs per copy: the flag, else AWS's list, else the estimate from the parameter count.
    c->params_b = !isnan(in->params_b) ? in->params_b : c->row ? c->row->params_b : prices_params_from_name(base);
    c->cmus_fig = pick(in->cmus, "--cmus", c->row ? c->row->cmus : none);
    if (isnan(c->cmus_fig.usd) && (!c->row || c->row->importable) && !isnan(c->params_b)) {
        c->cmus_fig = prices_cmu_estimate(c->params_b);
        c->cmus_estimated = 1;
    }
    c->cmus = c->cmus_fig.usd;
    c->cmu_minute = pick(in->cmu_minute, "--cmu-minute-price", c->cmi_row ? c->cmi_row->per_cmu_minute : none);
    c->cmu_store = pick(in->cmu_storage_month, "--cmu-storage-month-price",
                        c->cmi_row ? c->cmi_row->storage_per_cmu_month : none);
    c->cmu_minute_usd = c->cmu_minute.usd;
    c->cmu_storage_month = c->cmu_store.usd;
    // One stretch of traffic a day: whole 5-minute windows from the first call.
    c->cmi_billed_minutes = in->days * prices_cmi_billed_minutes(in->hours_per_day * 60.0);
    c->cmi_month_usd = in->copies == 0 ? 0 : in->copies * c->cmus * c->cmu_minute_usd * c->cmi_billed_minutes;
    c->cmi_storage_usd = c->cmus * c->cmu_storage_month;
    return 0;
}
