// cli/cmd_cost.c — `quarry cost`: what a fine-tune cost here (from a run's measured time and
// tokens) or would cost (tokens ÷ tokens/s), against Bedrock's managed customization, and a month
// of serving: Custom Model Import (what `quarry import` leads to) vs Provisioned Throughput
// (how a model customized in Bedrock is served). Prices come from data/prices (dated, sourced)
// or flags, the arithmetic from data/cost; an unknown price makes its figure "unknown", never a guess.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "data/cost.h"
#include "data/prices.h"

static void money(char *buf, size_t len, double usd) {
    if (isnan(usd))
        snprintf(buf, len, "unknown");
    else if (usd != 0 && fabs(usd) < 0.01)
        snprintf(buf, len, "$%.4f", usd);
    else
        snprintf(buf, len, "$%.2f", usd);
}

static void add_num(cJSON *o, const char *key, double v) {
    if (isnan(v))
        cJSON_AddNullToObject(o, key);
    else
        cJSON_AddNumberToObject(o, key, v);
}

// One table row: label, on-prem and managed cells padded by characters, not bytes ("×" is two).
static void row(const char *label, const char *onprem, const char *managed) {
    const char *cells[2] = {label, onprem};
    const int width[2] = {27, 36};
    printf("  ");
    for (int i = 0; i < 2; i++) {
        int n = 0;
        for (const char *q = cells[i]; *q; q++) n += ((unsigned char)*q & 0xC0) != 0x80;
        printf("%s%*s", cells[i], n < width[i] ? width[i] - n : 1, "");
    }
    printf("%s\n", managed);
}

// {"usd": x|null (value_key), "source": ..., "date": ..., "third_party": bool}: every price with its origin.
static cJSON *add_fig(cJSON *o, const char *key, const price_fig *f, const char *value_key) {
    cJSON *v = cJSON_AddObjectToObject(o, key);
    add_num(v, value_key, f->usd);
    if (f->source) {
        cJSON_AddStringToObject(v, "source", f->source);
        cJSON_AddStringToObject(v, "date", f->date);
        cJSON_AddBoolToObject(v, "third_party", f->third_party);
    } else {
        cJSON_AddNullToObject(v, "source");
        cJSON_AddStringToObject(v, "note", "not published");
    }
    return v;
}

static void print_table(const cost *c) {
    char a[64], b[64];
    printf("quarry cost (%s%s%s%s%s)\n", c->mode, c->run_dir ? " of " : "", c->run_dir ? c->run_dir : "",
           c->unfinished[0] ? ", " : "", c->unfinished);
    printf("  tokens trained: %.0f", c->tokens_trained);
    if (!isnan(c->data_tokens)) printf(" (%.0f × %d epochs)", c->data_tokens, c->epochs);
    printf("\n");
    if (!isnan(c->wall_seconds))
        printf("  time: %.1f s wall, %.1f s training", c->wall_seconds, c->train_seconds);
    else if (!isnan(c->train_seconds))
        printf("  time: %.1f s estimated", c->train_seconds);
    else
        printf("  time: unknown (give --tokens-per-second)");
    if (!isnan(c->tokens_per_second)) printf(", %.1f tokens/s", c->tokens_per_second);
    printf("\n\n");
    row("", "on-prem (quarry)", "managed (Bedrock)");
    money(a, sizeof a, c->onprem_usd);
    money(b, sizeof b, c->managed_train_usd);
    const char *no_job = "no Bedrock fine-tuning (below)";
    row("training", a, c->import_only ? no_job : b);
    char gh[64], pk[64];
    if (isnan(c->gpu_hours))
        snprintf(gh, sizeof gh, "unknown GPU-h");
    else
        snprintf(gh, sizeof gh, "%.4g GPU-h", c->gpu_hours);
    money(pk, sizeof pk, c->gpu_hour_price);
    char detail_a[192], detail_b[192];
    snprintf(detail_a, sizeof detail_a, "%s × %s/GPU-h", gh, pk);
    money(pk, sizeof pk, c->per_1k_usd);
    snprintf(detail_b, sizeof detail_b, "%.0f tokens × %s/1K", c->tokens_trained, pk);
    row("", detail_a, c->import_only ? "" : detail_b);
    if (!isnan(c->power_price)) {
        money(a, sizeof a, c->energy_usd);
        char e[192];
        if (isnan(c->energy_kwh))
            snprintf(e, sizeof e, "energy %s (give --gpu-watts)", a);
        else
            snprintf(e, sizeof e, "energy %s (%.3g kWh, %s)", a, c->energy_kwh, c->energy_from);
        row("", e, "");
    }
    money(a, sizeof a, c->cmi_storage_usd);
    money(b, sizeof b, c->managed_storage_month);
    row("model storage / month", a, c->import_only ? "" : b);
    char sv[64];
    snprintf(sv, sizeof sv, "serving / month (%.3gh/day)", c->hours_per_day);
    money(a, sizeof a, c->cmi_month_usd);
    money(b, sizeof b, c->pt_month_usd);
    row(sv, a, c->import_only ? "" : b);
    char cmu[64], cm[64], mu[64];
    if (isnan(c->cmus))
        snprintf(cmu, sizeof cmu, "? CMUs");
    else
        snprintf(cmu, sizeof cmu, "%.3g CMU", c->cmus);
    if (isnan(c->cmu_minute_usd))
        snprintf(cm, sizeof cm, "unknown");
    else
        snprintf(cm, sizeof cm, "$%.4g", c->cmu_minute_usd);
    money(mu, sizeof mu, c->pt_unit_hour);
    snprintf(detail_a, sizeof detail_a, "CMI: %.3g × %s × %.0f min × %s", c->copies, cmu, c->cmi_billed_minutes, cm);
    snprintf(detail_b, sizeof detail_b, "PT: %.3g MU × %.0f h × %s", c->model_units, 24 * c->days, mu);
    row("", detail_a, c->import_only ? "" : detail_b);
    double t1 = cost_first_month_onprem(c);
    double t2 = cost_first_month_managed(c);
    money(a, sizeof a, t1);
    money(b, sizeof b, t2);
    row("first month", a, c->import_only ? "" : b);
    printf("\n  Bedrock bills the tokens of its own rendering of the data; quarry's count is close, not equal.\n");
    printf("  PT bills every provisioned hour (%.0f days); CMI bills active model copies in 5-minute windows.\n",
           c->days);
    if (c->import_only)
        printf("  Bedrock cannot fine-tune %s models (its customization jobs take Llama 3.x in us-west-2, Nova, Claude 3 "
               "Haiku, Titan): Custom Model Import after an on-prem run is the only road into Bedrock for %s.\n",
               c->import_only, c->base_model);
    if (!isnan(c->capital_hour))
        printf("  on-prem GPU-hour: $%.0f ÷ (%.3g years × 8766 h × %.3g utilisation) = $%.4f capital\n", c->gpu_price,
               c->amortize_years, c->utilization, c->capital_hour);
    int ng;
    const gpu_price_row *g = prices_gpus(&ng);
    for (int i = 0; i < ng && !isnan(c->gpu_hours); i++) {
        money(a, sizeof a, c->gpu_hours * g[i].per_gpu_hour.usd);
        printf("  cloud reference: %.4g GPU-h × $%.4g/%s-hour = %s (AWS %s, %s; %s, %s%s)\n", c->gpu_hours,
               g[i].per_gpu_hour.usd, g[i].gpu, a, g[i].instance, g[i].region, g[i].per_gpu_hour.source,
               g[i].per_gpu_hour.date, g[i].per_gpu_hour.third_party ? ", third-party" : "");
    }
    printf("  prices:\n");
    const struct {
        const char *what;
        const price_fig *f;
        int applies;
    } figs[] = {
        {"Bedrock training per 1K tokens", &c->per_1k, !c->import_only},
        {"Bedrock custom model storage / month", &c->storage, !c->import_only},
        {"Provisioned Throughput per model unit-hour", &c->pt_hour, !c->import_only},
        {"CMUs per model copy", &c->cmus_fig, !c->row || c->row->importable},
        {"CMI per CMU-minute", &c->cmu_minute, 1},
        {"CMI storage per CMU-month", &c->cmu_store, 1},
    };
    const char *flags[] = {"--price-per-1k-tokens", "--storage-month-price", "--pt-hour-price", "--cmus",
                           "--cmu-minute-price", "--cmu-storage-month-price"};
    for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
        const price_fig *f = figs[i].f;
        if (!figs[i].applies) {
            if (i == 0) printf("    Bedrock training, storage, Provisioned Throughput: no Bedrock job for %s\n", c->import_only);
            continue;
        }
        if (isnan(f->usd) && i == 3 && c->row && !c->row->importable)
            continue;
        if (isnan(f->usd))
            printf("    %s: not published%s (give %s%s)\n", figs[i].what, c->base_model || i >= 4 ? "" : " without --base-model",
                   flags[i], i == 3 ? ", or --params B for an estimate" : "");
        else if (i == 3)
            printf("    %s: %.3g — %s%s (%s%s)\n", figs[i].what, f->usd, c->cmus_estimated ? "" : "as AWS lists: ",
                   f->source, f->third_party ? ", third-party" : "", f->date);
        else
            printf("    %s: $%.5g — %s (%s%s)\n", figs[i].what, f->usd, f->source, f->date,
                   f->third_party ? ", third-party" : "");
    }
    if (c->row && !c->row->importable)
        printf("    CMI: %s's weights are not published, so it cannot be imported\n", c->row->name);
    if (!strcmp(c->cmu_minute.source ? c->cmu_minute.source : "", c->cmi_row ? c->cmi_row->per_cmu_minute.source : "-"))
        printf("    note: %s\n", prices_cmi_newer_rate_note);
    if (isnan(c->gpu_hour_price)) printf("    on-prem GPU-hour: not given (give --gpu-hour-price, or --gpu-price with --amortize-years and --utilization)\n");
}

static char *to_json(const cost *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "mode", c->mode);
    if (c->run_dir) cJSON_AddStringToObject(o, "run", c->run_dir);
    if (c->run_dir) cJSON_AddBoolToObject(o, "run_finished", !c->unfinished[0]);
    add_num(o, "tokens_trained", c->tokens_trained);
    add_num(o, "data_tokens", c->data_tokens);
    cJSON_AddNumberToObject(o, "epochs", c->epochs);
    cJSON *p = cJSON_AddObjectToObject(o, "on_prem");
    add_num(p, "wall_seconds", c->wall_seconds);
    add_num(p, "train_seconds", c->train_seconds);
    add_num(p, "tokens_per_second", c->tokens_per_second);
    add_num(p, "gpus", c->gpus);
    add_num(p, "gpu_hours", c->gpu_hours);
    add_num(p, "gpu_hour_price", c->gpu_hour_price);
    add_num(p, "gpu_usd", c->onprem_gpu_usd);
    add_num(p, "energy_kwh", c->energy_kwh);
    if (c->energy_from)
        cJSON_AddStringToObject(p, "energy_from", c->energy_from);
    else
        cJSON_AddNullToObject(p, "energy_from");
    add_num(p, "power_price", c->power_price);
    add_num(p, "energy_usd", c->energy_usd);
    add_num(p, "training_usd", c->onprem_usd);
    add_num(p, "gpu_price", c->gpu_price);
    add_num(p, "amortize_years", c->amortize_years);
    add_num(p, "utilization", c->utilization);
    add_num(p, "capital_per_gpu_hour", c->capital_hour);
    cJSON *refs = cJSON_AddArrayToObject(p, "cloud_reference");
    int ng;
    const gpu_price_row *g = prices_gpus(&ng);
    for (int i = 0; i < ng; i++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToArray(refs, r);
        cJSON_AddStringToObject(r, "gpu", g[i].gpu);
        cJSON_AddStringToObject(r, "instance", g[i].instance);
        cJSON_AddStringToObject(r, "region", g[i].region);
        add_fig(r, "price_per_gpu_hour", &g[i].per_gpu_hour, "usd");
        add_num(r, "usd", c->gpu_hours * g[i].per_gpu_hour.usd);
    }
    cJSON *m = cJSON_AddObjectToObject(o, "managed");
    if (c->base_model)
        cJSON_AddStringToObject(m, "base_model", c->base_model);
    else
        cJSON_AddNullToObject(m, "base_model");
    add_fig(m, "price_per_1k_tokens", &c->per_1k, "usd");
    add_num(m, "training_usd", c->managed_train_usd);
    add_num(m, "storage_per_month_usd", c->managed_storage_month);
    add_fig(m, "storage_per_month_price", &c->storage, "usd");
    cJSON_AddBoolToObject(m, "bedrock_can_fine_tune", !c->import_only && (!c->row || c->row->bedrock_finetune));
    if (c->import_only)
        cJSON_AddStringToObject(m, "note", "Bedrock cannot fine-tune this model: Custom Model Import after an on-prem "
                                           "run is the only road into Bedrock");
    if (c->row) cJSON_AddStringToObject(m, "region", c->row->region);
    cJSON *s = cJSON_AddObjectToObject(o, "serving");
    add_num(s, "hours_per_day", c->hours_per_day);
    add_num(s, "days", c->days);
    cJSON *cmi = cJSON_AddObjectToObject(s, "custom_model_import");
    add_num(cmi, "model_copies", c->copies);
    cJSON_AddBoolToObject(add_fig(cmi, "cmus_per_copy", &c->cmus_fig, "count"), "estimate", c->cmus_estimated);
    add_fig(cmi, "price_per_cmu_minute", &c->cmu_minute, "usd");
    add_num(cmi, "billed_minutes", c->cmi_billed_minutes);
    add_num(cmi, "usd_per_month", c->cmi_month_usd);
    add_fig(cmi, "storage_per_cmu_month", &c->cmu_store, "usd");
    add_num(cmi, "storage_usd_per_month", c->cmi_storage_usd);
    if (c->cmi_row) cJSON_AddStringToObject(cmi, "cmu_version", c->cmi_row->cmu_version);
    cJSON *pt = cJSON_AddObjectToObject(s, "provisioned_throughput");
    add_num(pt, "model_units", c->model_units);
    add_fig(pt, "price_per_unit_hour", &c->pt_hour, "usd");
    add_num(pt, "hours", 24 * c->days);
    add_num(pt, "usd_per_month", c->pt_month_usd);
    cJSON *t = cJSON_AddObjectToObject(o, "first_month");
    add_num(t, "on_prem_usd", cost_first_month_onprem(c));
    add_num(t, "managed_usd", cost_first_month_managed(c));
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    return text;
}

int cmd_cost(int argc, char **argv) {
    const char *run = NULL, *base = NULL, *region = NULL;
    double tokens = NAN, tps = NAN, gpu_price = NAN, gpus = NAN, power = NAN, watts = NAN, per_1k = NAN;
    double storage = NAN, pt_hour = NAN, cmu_min = NAN, cmu_store = NAN, cmus = NAN, hours = 8, days = 30;
    double units = 1, copies = 1, gpu_cost = NAN, years = NAN, util = NAN, params = NAN;
    int epochs = 0, json = 0;
    const arg_spec specs[] = {
        {"run", ARG_STRING, &run, "RUN", "a run written by quarry train (run.json \"result\")"},
        {"tokens", ARG_FLOAT, &tokens, "N", "estimate for N training-data tokens instead (with --run: at its tokens/s)"},
        {"epochs", ARG_INT, &epochs, "E", "passes over the data (default: the run's, else 1)"},
        {"tokens-per-second", ARG_FLOAT, &tps, "R", "training throughput for an estimate (default: the run's)"},
        {"gpus", ARG_FLOAT, &gpus, "N", "GPUs billed (default: the run's; for an estimate 1)"},
        {"gpu-hour-price", ARG_FLOAT, &gpu_price, "USD", "what one GPU-hour costs you on-prem (amortised hardware, hosting)"},
        {"gpu-price", ARG_FLOAT, &gpu_cost, "USD", "what one GPU cost to buy, amortised per GPU-hour (with --amortize-years, --utilization)"},
        {"amortize-years", ARG_FLOAT, &years, "Y", "years over which --gpu-price is written off"},
        {"utilization", ARG_FLOAT, &util, "U", "share of the hours the GPU does paid work, in (0, 1]"},
        {"power-price", ARG_FLOAT, &power, "USD", "electricity per kWh, added to on-prem training"},
        {"gpu-watts", ARG_FLOAT, &watts, "W", "power per GPU when the run recorded no energy"},
        {"base-model", ARG_STRING, &base, "ID", "Bedrock base model id for the managed price, e.g. meta.llama3-1-8b-instruct-v1:0"},
        {"price-per-1k-tokens", ARG_FLOAT, &per_1k, "USD", "Bedrock customization price per 1,000 tokens (overrides the table)"},
        {"storage-month-price", ARG_FLOAT, &storage, "USD", "Bedrock custom model storage per month (overrides the table)"},
        {"pt-hour-price", ARG_FLOAT, &pt_hour, "USD", "Provisioned Throughput per model unit per hour, no commitment"},
        {"model-units", ARG_FLOAT, &units, "N", "Provisioned Throughput model units (default 1)"},
        {"params", ARG_FLOAT, &params, "B", "parameters in billions, for the CMU estimate of a model AWS lists no CMUs for"},
        {"cmus", ARG_FLOAT, &cmus, "N", "Custom Model Units per model copy (GetImportedModel's customModelUnitsPerModelCopy)"},
        {"model-copies", ARG_FLOAT, &copies, "N", "active CMI model copies (default 1)"},
        {"cmu-minute-price", ARG_FLOAT, &cmu_min, "USD", "Custom Model Import price per CMU per minute"},
        {"cmu-storage-month-price", ARG_FLOAT, &cmu_store, "USD", "Custom Model Import storage per CMU per month"},
        {"region", ARG_STRING, &region, "REGION", "region of the CMI price row (default: the table's first)"},
        {"hours-per-day", ARG_FLOAT, &hours, "H", "hours a day the model serves traffic (default 8)"},
        {"days", ARG_FLOAT, &days, "D", "days in the month of serving (default 30)"},
        {"json", ARG_FLAG, &json, NULL, "write JSON (unknown figures are null)"},
    };
    const arg_parser p = {
        "cost",
        "quarry cost (--run RUN | --tokens N [--epochs E] [--tokens-per-second R]) [--base-model ID] "
        "[--gpu-hour-price USD | --gpu-price USD --amortize-years Y --utilization U] [--gpus N] "
        "[--power-price USD/kWh] [--gpu-watts W] [--params B] [--json]",
        "On-prem training cost (GPU-hours × price, + energy × power price) from a run's measured figures or\n"
        "an estimate from tokens ÷ tokens/s, against Bedrock's managed customization (price per 1K tokens ×\n"
        "tokens × epochs, + storage), and a month of serving: Custom Model Import (CMUs × price per CMU-minute\n"
        "in 5-minute windows, + storage per CMU-month) vs Provisioned Throughput (model units × hourly price).\n"
        "Prices come from a dated table (data/prices.c) or the flags; a price neither gives is shown unknown.",
        specs, (int)(sizeof specs / sizeof specs[0]), 0, 0};
    const char *pos[1];
    int npos = 0, rc = args_parse(&p, argc, argv, pos, &npos);
    if (rc) return rc == 1 ? 0 : rc;
    const char *usage_err = NULL;
    if (!run && isnan(tokens)) usage_err = "give --run RUN or --tokens N";
    else if (!isnan(tokens) && !(tokens >= 0)) usage_err = "--tokens must be ≥ 0";
    else if (epochs < 0) usage_err = "--epochs must be ≥ 1";
    else if (!isnan(tps) && !(tps > 0)) usage_err = "--tokens-per-second must be > 0";
    else if (!isnan(gpus) && !(gpus >= 0)) usage_err = "--gpus must be ≥ 0";
    else if (!(hours >= 0 && hours <= 24)) usage_err = "--hours-per-day must be in [0, 24]";
    else if (!(days > 0 && days <= 31)) usage_err = "--days must be in (0, 31]";
    else if (!(units >= 1) || !(copies >= 0)) usage_err = "--model-units must be ≥ 1 and --model-copies ≥ 0";
    else if (!isnan(gpu_cost) && !isnan(gpu_price)) usage_err = "give --gpu-price (amortised) or --gpu-hour-price, not both";
    else if (!isnan(gpu_cost) && (!(years > 0) || !(util > 0 && util <= 1)))
        usage_err = "--gpu-price needs --amortize-years Y > 0 and --utilization U in (0, 1] (e.g. 4 and 0.6)";
    else if (!isnan(params) && !(params > 0)) usage_err = "--params must be > 0 (billions)";
    double prices[] = {gpu_price, gpu_cost, power, watts, per_1k, storage, pt_hour, cmu_min, cmu_store, cmus};
    for (size_t i = 0; !usage_err && i < sizeof prices / sizeof prices[0]; i++)
        if (!isnan(prices[i]) && !(prices[i] >= 0 && isfinite(prices[i]))) usage_err = "prices, watts and --cmus must be ≥ 0";
    if (usage_err) {
        fprintf(stderr, "quarry cost: error: %s\nusage: %s\n", usage_err, p.usage);
        return 2;
    }

    cost_inputs in;
    cost_inputs_default(&in);
    in.run = run;
    in.tokens = tokens;
    in.epochs = epochs;
    in.tokens_per_second = tps;
    in.gpus = gpus;
    in.gpu_hour_price = gpu_price;
    in.gpu_price = gpu_cost;
    in.amortize_years = years;
    in.utilization = util;
    in.power_price = power;
    in.gpu_watts = watts;
    in.base_model = base;
    in.region = region;
    in.per_1k = per_1k;
    in.storage_month = storage;
    in.pt_hour = pt_hour;
    in.model_units = units;
    in.params_b = params;
    in.cmus = cmus;
    in.copies = copies;
    in.cmu_minute = cmu_min;
    in.cmu_storage_month = cmu_store;
    in.hours_per_day = hours;
    in.days = days;
    char err[4600];
    cost c;
    if (cost_compute(&in, &c, err, sizeof err) != 0) {
        fprintf(stderr, "quarry cost: error: %s\n", err);
        return 1;
    }
    if (!strcmp(c.mode, "run") && c.unfinished[0])
        fprintf(stderr, "quarry cost: warning: %s has not finished (%s): the figures below price only the "
                        "%.0f tokens and %.0f s it ran, not the whole job\nhint: finish it with `quarry train "
                        "--resume %s`, or estimate the whole job with --tokens N\n",
                run, c.unfinished, c.tokens_trained, c.train_seconds, run);
    if (base && !c.row && !c.import_only)
        fprintf(stderr, "quarry cost: note: %s is not in the price table (data/prices.c); give its prices by flag\n",
                base);
    if (region && !c.cmi_row)
        fprintf(stderr, "quarry cost: note: no citable Custom Model Import price for %s (the table has us-east-1 "
                        "and us-west-2); give --cmu-minute-price and --cmu-storage-month-price\n", region);

    if (json) {
        char *text = to_json(&c);
        if (!text || puts(text) < 0) {
            free(text);
            fprintf(stderr, "quarry cost: error: cannot write the JSON output\n");
            return 1;
        }
        free(text);
    } else {
        print_table(&c);
    }
    return 0;
}
