// trainer/report.c — see report.h.
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/fileio.h"
#include "../data/prices.h"

void report_escape(strbuf *b, const char *s) {
    if (!s) return;
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *ent = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : *p == '"' ? "&quot;"
                        : *p == '\'' ? "&#39;" : NULL;
        if (!ent) continue;
        strbuf_put(b, run, (size_t)(p - run));
        strbuf_puts(b, ent);
        run = p + 1;
    }
    strbuf_puts(b, run);
}

void report_answer_free(report_answer *a) {
    free(a->prompt);
    free(a->reference);
    free(a->base);
    free(a->tuned);
    memset(a, 0, sizeof *a);
}

// One column of a metric CSV against its step column: x (step), y. n = 0 when the file or the
// column is missing; rows whose value does not parse are left out.
typedef struct {
    double *x, *y;
    int n;
} column;

static void column_free(column *c) {
    free(c->x);
    free(c->y);
    memset(c, 0, sizeof *c);
}

// Index of name in a CSV header line (comma-separated, no quoting: quarry writes these files).
static int header_index(const char *line, size_t len, const char *name) {
    size_t nl = strlen(name);
    int idx = 0;
    for (size_t s = 0; s <= len; idx++) {
        size_t e = s;
        while (e < len && line[e] != ',') e++;
        if (e - s == nl && !memcmp(line + s, name, nl)) return idx;
        s = e + 1;
    }
    return -1;
}

static double field(const char *line, size_t len, int idx) {
    size_t s = 0;
    for (int i = 0; i < idx; i++) {
        while (s < len && line[s] != ',') s++;
        if (s >= len) return NAN;
        s++;
    }
    char buf[64];
    size_t e = s;
    while (e < len && line[e] != ',') e++;
    if (e - s == 0 || e - s >= sizeof buf) return NAN;
    memcpy(buf, line + s, e - s);
    buf[e - s] = 0;
    char *end;
    double v = strtod(buf, &end);
    return *end == 0 || *end == '\r' ? v : NAN;
}

static int column_read(const char *dir, const char *file, const char *name, column *c) {
    memset(c, 0, sizeof *c);
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = NULL;
    size_t len = 0;
    if (!fileio_exists(path) || fileio_read_all(path, &text, &len, err, sizeof err) != 0) return -1;
    size_t nlines = 0;
    for (size_t i = 0; i < len; i++) nlines += text[i] == '\n';
    c->x = malloc((nlines + 1) * sizeof *c->x);
    c->y = malloc((nlines + 1) * sizeof *c->y);
    int xi = -1, yi = -1;
    for (size_t s = 0, row = 0; c->x && c->y && s < len; row++) {
        size_t e = s;
        while (e < len && text[e] != '\n') e++;
        if (row == 0) {
            xi = header_index(text + s, e - s, "step_number");
            yi = header_index(text + s, e - s, name);
            if (xi < 0 || yi < 0) break;
        } else {
            double x = field(text + s, e - s, xi), y = field(text + s, e - s, yi);
            if (isfinite(x) && isfinite(y)) {
                c->x[c->n] = x;
                c->y[c->n] = y;
                c->n++;
            }
        }
        s = e + 1;
    }
    free(text);
    return c->x && c->y ? 0 : -1;
}

typedef struct {
    const char *name;   // class and legend
    const char *color;
    const column *c;
    int dots;           // 1: a circle at every point (sparse series such as validation)
} plot_series;

// An inline SVG line plot: axes with 5 ticks each, one path per series, a legend.
static void plot(strbuf *b, const char *id, const char *title, const char *ylabel, const plot_series *s, int ns) {
    const double W = 640, H = 300, L = 84, R = 20, T = 34, B = 42;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    int total = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].c->n; i++) {
            xmin = fmin(xmin, s[k].c->x[i]);
            xmax = fmax(xmax, s[k].c->x[i]);
            ymin = fmin(ymin, s[k].c->y[i]);
            ymax = fmax(ymax, s[k].c->y[i]);
            total++;
        }
    if (!total) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    if (xmax - xmin < 1e-9) xmax = xmin + 1;
    if (ymax - ymin < 1e-9 * fmax(1, fabs(ymax))) ymax += 0.5 * fmax(1e-3, fabs(ymax)), ymin -= 0.5 * fmax(1e-3, fabs(ymin));
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
#define XS(v) (L + (W - L - R) * ((v) - xmin) / (xmax - xmin))
#define YS(v) (T + (H - T - B) * (1.0 - ((v) - ymin) / (ymax - ymin)))
    strbuf_printf(b, "<figure><svg class=\"plot\" id=\"plot-%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
                     "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\">\n", id, W, H, W, H);
    strbuf_printf(b, "<text x=\"%.0f\" y=\"20\" class=\"title\">", L);
    report_escape(b, title);
    strbuf_printf(b, "</text>\n<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>"
                     "<line class=\"axis\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>\n",
                  L, H - B, W - R, H - B, L, T, L, H - B);
    for (int i = 0; i <= 4; i++) {
        double y = ymin + (ymax - ymin) * i / 4.0, x = xmin + (xmax - xmin) * i / 4.0;
        strbuf_printf(b, "<line class=\"grid\" x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\"/>"
                         "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>"
                         "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.4g</text>\n",
                      L, YS(y), W - R, YS(y), L - 6, YS(y) + 4, y, XS(x), H - B + 16, x);
    }
    strbuf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>", (L + W - R) / 2, H - 6);
    strbuf_printf(b, "<text x=\"14\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 14 %.0f)\">",
                  (T + H - B) / 2, (T + H - B) / 2);
    report_escape(b, ylabel);
    strbuf_puts(b, "</text>\n");
    for (int k = 0; k < ns; k++) {
        const column *c = s[k].c;
        strbuf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s%s</text>\n", W - R - 150 + 80.0 * k, 20.0,
                      s[k].color, s[k].name, c->n ? "" : " (none)");
        if (!c->n) continue;
        strbuf_printf(b, "<path class=\"series %s\" data-points=\"%d\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                         "d=\"", s[k].name, c->n, s[k].color);
        for (int i = 0; i < c->n; i++) strbuf_printf(b, "%s%.1f %.1f", i ? " L " : "M ", XS(c->x[i]), YS(c->y[i]));
        strbuf_puts(b, "\"/>\n");
        for (int i = 0; (s[k].dots || c->n == 1) && i < c->n; i++)
            strbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", XS(c->x[i]), YS(c->y[i]), s[k].color);
        strbuf_puts(b, "\n");
    }
    if (!total) strbuf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no data</text>\n", (L + W - R) / 2, H / 2);
#undef XS
#undef YS
    strbuf_puts(b, "</svg></figure>\n");
}

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static double num(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

// A JSON value as table text: strings as they are, numbers with %.6g, booleans, null as "—".
static void value_text(strbuf *b, const cJSON *v) {
    if (cJSON_IsString(v))
        report_escape(b, v->valuestring[0] ? v->valuestring : "(none)");
    else if (cJSON_IsNumber(v))
        strbuf_printf(b, "%.6g", v->valuedouble);
    else if (cJSON_IsBool(v))
        strbuf_puts(b, cJSON_IsTrue(v) ? "true" : "false");
    else if (!v || cJSON_IsNull(v))
        strbuf_puts(b, "—");
    else {
        char *t = cJSON_PrintUnformatted(v);
        report_escape(b, t ? t : "");
        free(t);
    }
}

static void row_start(strbuf *b, const char *label) {
    strbuf_puts(b, "<tr><th>");
    report_escape(b, label);
    strbuf_puts(b, "</th><td>");
}

static void row_num(strbuf *b, const char *label, double v, const char *fmt, const char *unit) {
    row_start(b, label);
    if (isnan(v))
        strbuf_puts(b, "—");
    else
        strbuf_printf(b, fmt, v);
    strbuf_printf(b, "%s</td></tr>\n", isnan(v) ? "" : unit);
}

static void bytes_text(strbuf *b, double v) {
    if (isnan(v)) strbuf_puts(b, "—");
    else if (v >= 1 << 30) strbuf_printf(b, "%.2f GiB", v / (1 << 30));
    else strbuf_printf(b, "%.1f MiB", v / (1 << 20));
}

static void money(strbuf *b, double usd) {
    if (isnan(usd)) strbuf_puts(b, "unknown");
    else if (usd != 0 && fabs(usd) < 0.01) strbuf_printf(b, "$%.4f", usd);
    else strbuf_printf(b, "$%.2f", usd);
}

static void section_result(strbuf *b, const cJSON *run) {
    const cJSON *r = get(run, "result");
    strbuf_puts(b, "<section id=\"result\"><h2>Result</h2>\n");
    if (!cJSON_IsObject(r)) {
        strbuf_puts(b, "<p class=\"note\">run.json has no \"result\": the run has not finished.</p></section>\n");
        return;
    }
    strbuf_puts(b, "<table class=\"kv\">\n");
    row_num(b, "steps", num(r, "steps"), "%.0f", "");
    row_num(b, "tokens trained", num(r, "tokens_trained"), "%.0f", "");
    row_num(b, "training time", num(r, "train_seconds"), "%.1f", " s");
    row_num(b, "wall time", num(r, "wall_seconds"), "%.1f", " s");
    row_num(b, "throughput", num(r, "tokens_per_second"), "%.1f", " tokens/s");
    row_num(b, "MFU", num(r, "mfu"), "%.4f", "");
    row_num(b, "GPUs", num(r, "gpus"), "%.0f", "");
    row_num(b, "GPU-hours", num(r, "gpu_hours"), "%.4g", "");
    double j = num(r, "energy_joules");
    if (!isnan(j)) row_num(b, "GPU energy (measured)", j / 3.6e6, "%.4g", " kWh");
    row_num(b, "final training loss", num(r, "final_training_loss"), "%.4f", "");
    row_start(b, "validation loss");
    double v0 = num(r, "initial_validation_loss"), v1 = num(r, "final_validation_loss");
    if (!isnan(v0)) strbuf_printf(b, "%.4f → ", v0);
    if (!isnan(v1)) strbuf_printf(b, "%.4f (perplexity %.2f)", v1, exp(v1));
    else strbuf_puts(b, "—");
    strbuf_puts(b, "</td></tr>\n");
    row_start(b, "ended");
    strbuf_puts(b, cJSON_IsTrue(get(r, "interrupted")) ? "interrupted"
                   : cJSON_IsTrue(get(r, "stopped_early")) ? "stopped early (validation loss stopped improving)"
                                                            : "completed");
    strbuf_puts(b, "</td></tr>\n</table></section>\n");
}

static void section_curves(strbuf *b, const char *dir) {
    column train, val, tps, lr, gn;
    column_read(dir, "step_wise_training_metrics.csv", "training_loss", &train);
    column_read(dir, "validation_metrics.csv", "validation_loss", &val);
    column_read(dir, "step_wise_training_metrics.csv", "tokens_per_second", &tps);
    column_read(dir, "step_wise_training_metrics.csv", "learning_rate", &lr);
    column_read(dir, "step_wise_training_metrics.csv", "grad_norm", &gn);
    strbuf_puts(b, "<section id=\"curves\"><h2>Training curves</h2>\n");
    if (!train.n)
        strbuf_puts(b, "<p class=\"note\">step_wise_training_metrics.csv is missing or has no rows.</p>\n");
    plot_series loss[] = {{"training", "#1f77b4", &train, 0}, {"validation", "#d62728", &val, 1}};
    plot(b, "loss", "loss per step", "loss", loss, 2);
    plot_series th[] = {{"throughput", "#2ca02c", &tps, 0}};
    plot(b, "throughput", "throughput per step", "tokens/s", th, 1);
    plot_series opt[] = {{"learning_rate", "#9467bd", &lr, 0}};
    plot(b, "learning-rate", "learning rate per step", "learning rate", opt, 1);
    plot_series g[] = {{"grad_norm", "#8c564b", &gn, 0}};
    plot(b, "grad-norm", "gradient norm per step (before clipping)", "grad norm", g, 1);
    strbuf_puts(b, "</section>\n");
    column_free(&train);
    column_free(&val);
    column_free(&tps);
    column_free(&lr);
    column_free(&gn);
}

// The memory plan as a table and one stacked bar (widths ∝ bytes).
static void section_memory(strbuf *b, const cJSON *run) {
    const cJSON *m = get(run, "memory_plan_bytes");
    strbuf_puts(b, "<section id=\"memory\"><h2>Memory plan</h2>\n");
    if (!cJSON_IsObject(m)) {
        strbuf_puts(b, "<p class=\"note\">run.json has no memory plan.</p></section>\n");
        return;
    }
    const char *colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
    double total = num(m, "total");
    strbuf_puts(b, "<table class=\"kv\">\n");
    const cJSON *it;
    int k = 0;
    cJSON_ArrayForEach(it, m) {
        row_start(b, it->string);
        bytes_text(b, cJSON_IsNumber(it) ? it->valuedouble : NAN);
        // The swatch of the bar's segment below.
        if (cJSON_IsNumber(it) && strcmp(it->string, "total"))
            strbuf_printf(b, " <span class=\"swatch\" style=\"background:%s\"></span>", colors[k++ % 8]);
        strbuf_puts(b, "</td></tr>\n");
    }
    strbuf_puts(b, "</table>\n");
    if (total > 0) {
        strbuf_puts(b, "<svg class=\"bar\" id=\"memory-bar\" xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"28\">");
        double x = 0;
        k = 0;
        cJSON_ArrayForEach(it, m) {
            if (!cJSON_IsNumber(it) || !strcmp(it->string, "total")) continue;
            double w = 640.0 * it->valuedouble / total;
            strbuf_printf(b, "<rect x=\"%.1f\" y=\"0\" width=\"%.1f\" height=\"28\" fill=\"%s\"><title>", x, w,
                          colors[k++ % 8]);
            report_escape(b, it->string);
            strbuf_puts(b, "</title></rect>");
            x += w;
        }
        strbuf_puts(b, "</svg>\n");
    }
    const cJSON *dp = get(run, "data_parallel");
    if (cJSON_IsObject(dp))
        strbuf_printf(b, "<p>%.0f rank(s), ZeRO-%.0f, %.0f sequences per micro-batch per rank.</p>\n",
                      num(dp, "world_size"), num(dp, "zero"), num(dp, "micro_batch_per_rank"));
    strbuf_printf(b, "<p>%.0f parameters, %.0f trained.</p>\n</section>\n", num(run, "params_total"),
                  num(run, "params_trained"));
}

static void section_settings(strbuf *b, const cJSON *run) {
    strbuf_puts(b, "<section id=\"settings\"><h2>Settings</h2>\n<table class=\"kv\" id=\"settings-table\">\n");
    const cJSON *it;
    cJSON_ArrayForEach(it, get(run, "settings")) {
        row_start(b, it->string);
        value_text(b, it);
        strbuf_puts(b, "</td></tr>\n");
    }
    // What training resolved (run.json's top level), under names the settings do not use.
    const char *extra[][2] = {{"base_model", "base model (resolved)"}, {"template", "template used"},
                              {"device_name", "device name"}, {"quarry_version", "quarry version"},
                              {"quarry_commit", "quarry commit"}};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        if (!get(run, extra[i][0])) continue;
        row_start(b, extra[i][1]);
        value_text(b, get(run, extra[i][0]));
        strbuf_puts(b, "</td></tr>\n");
    }
    strbuf_puts(b, "</table></section>\n");
}

// records.data / records.validation: what happened to every record, with the lines listed.
static void records_table(strbuf *b, const char *source, const cJSON *d) {
    strbuf_puts(b, "<h3>");
    report_escape(b, source);
    strbuf_puts(b, "</h3>\n<table class=\"kv records\" id=\"records-");
    report_escape(b, source);
    strbuf_puts(b, "\">\n");
    row_num(b, "records", num(d, "records"), "%.0f", "");
    row_num(b, "trained whole", num(d, "whole"), "%.0f", "");
    row_num(b, "truncated (kept, cut)", num(d, "truncated"), "%.0f", "");
    row_num(b, "dropped", num(d, "dropped"), "%.0f", "");
    const cJSON *by = get(d, "dropped_by_reason");
    row_start(b, "dropped, by reason");
    strbuf_printf(b, "%.0f empty, %.0f without an answer, %.0f with the answer cut off", num(by, "empty"),
                  num(by, "no_answer"), num(by, "answer_cut"));
    strbuf_puts(b, "</td></tr>\n");
    row_start(b, "answer tokens kept");
    strbuf_printf(b, "%.0f of %.0f", num(d, "answer_tokens_kept"), num(d, "answer_tokens"));
    strbuf_puts(b, "</td></tr>\n");
    row_start(b, "max sequence length, truncation");
    strbuf_printf(b, "%.0f, ", num(d, "max_seq_len"));
    value_text(b, get(d, "truncate"));
    strbuf_puts(b, "</td></tr>\n</table>\n");
    const char *lists[] = {"dropped_records", "truncated_records"};
    for (int k = 0; k < 2; k++) {
        const cJSON *l = get(d, lists[k]);
        if (!cJSON_GetArraySize(l)) continue;
        strbuf_printf(b, "<p>%s: ", k ? "truncated" : "dropped");
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, l) {
            strbuf_printf(b, "%sline %.0f", i++ ? ", " : "", num(it, "line"));
            if (k == 0) {
                strbuf_puts(b, " (");
                value_text(b, get(it, "reason"));
                strbuf_puts(b, ")");
            } else {
                strbuf_printf(b, " (%.0f of %.0f answer tokens kept)", num(it, "answer_tokens_kept"),
                              num(it, "answer_tokens"));
            }
        }
        double more = num(d, k ? "truncated_records_not_listed" : "dropped_records_not_listed");
        if (more > 0) strbuf_printf(b, ", and %.0f more", more);
        strbuf_puts(b, "</p>\n");
    }
}

static void section_data(strbuf *b, const cJSON *run) {
    strbuf_puts(b, "<section id=\"data\"><h2>Data</h2>\n");
    const cJSON *s = get(run, "settings");
    strbuf_puts(b, "<p>training data: <code>");
    value_text(b, get(s, "data"));
    strbuf_puts(b, "</code>");
    const cJSON *v = get(s, "validation");
    if (cJSON_IsString(v) && v->valuestring[0]) {
        strbuf_puts(b, "; validation data: <code>");
        report_escape(b, v->valuestring);
        strbuf_puts(b, "</code>");
    } else if (num(s, "validation_split") > 0) {
        strbuf_printf(b, "; validation: a share of %.3g of it, split with seed %.0f", num(s, "validation_split"),
                      num(s, "seed"));
    }
    strbuf_printf(b, ".</p>\n<p>%.0f training examples, %.0f validation examples; ", num(run, "train_examples"),
                  num(run, "validation_examples"));
    strbuf_printf(b, "%.0f tokens trained over %.0f epoch(s).</p>\n", num(get(run, "result"), "tokens_trained"),
                  num(s, "epochs"));
    const cJSON *recs = get(run, "records"), *it;
    cJSON_ArrayForEach(it, recs) records_table(b, it->string, it);
    if (!cJSON_GetArraySize(recs)) strbuf_puts(b, "<p class=\"note\">run.json has no record accounting.</p>\n");
    strbuf_puts(b, "</section>\n");
}

static void fig_source(strbuf *b, const price_fig *f) {
    if (!f->source) {
        strbuf_puts(b, "not published");
        return;
    }
    report_escape(b, f->source);
    strbuf_puts(b, " (");
    report_escape(b, f->date);
    strbuf_printf(b, "%s)", f->third_party ? ", third-party" : "");
}

static void cost_row(strbuf *b, const char *label, double onprem, double managed, int no_managed) {
    strbuf_puts(b, "<tr><th>");
    report_escape(b, label);
    strbuf_puts(b, "</th><td>");
    money(b, onprem);
    strbuf_puts(b, "</td><td>");
    if (no_managed) strbuf_puts(b, "no Bedrock fine-tuning");
    else money(b, managed);
    strbuf_puts(b, "</td></tr>\n");
}

static void section_cost(strbuf *b, const report_input *in) {
    strbuf_puts(b, "<section id=\"cost\"><h2>Cost</h2>\n");
    const cost *c = in->cost;
    if (!c) {
        strbuf_puts(b, "<p class=\"note\">");
        report_escape(b, in->cost_note ? in->cost_note : "not priced");
        strbuf_puts(b, "</p></section>\n");
        return;
    }
    strbuf_puts(b, "<p>The figures of <code>");
    report_escape(b, in->cost_command);
    strbuf_puts(b, "</code>");
    if (c->unfinished[0]) {
        strbuf_puts(b, " — the run has not finished (");
        report_escape(b, c->unfinished);
        strbuf_puts(b, "): they price only what it ran");
    }
    strbuf_puts(b, ".</p>\n<table class=\"cost\" id=\"cost-table\"><tr><th></th><th>on-prem (quarry)</th>"
                   "<th>managed (Bedrock)</th></tr>\n");
    int io = c->import_only != NULL;
    cost_row(b, "training", c->onprem_usd, c->managed_train_usd, io);
    cost_row(b, "model storage / month", c->cmi_storage_usd, c->managed_storage_month, io);
    cost_row(b, "serving / month", c->cmi_month_usd, c->pt_month_usd, io);
    cost_row(b, "first month", cost_first_month_onprem(c), cost_first_month_managed(c), io);
    strbuf_puts(b, "</table>\n<ul>\n");
    strbuf_printf(b, "<li>%.0f tokens trained in %.1f s, %.4g GPU-hours at ", c->tokens_trained, c->train_seconds,
                  c->gpu_hours);
    money(b, c->gpu_hour_price);
    strbuf_puts(b, " per GPU-hour");
    if (!isnan(c->energy_kwh)) {
        strbuf_printf(b, "; %.4g kWh (", c->energy_kwh);
        report_escape(b, c->energy_from);
        strbuf_puts(b, ")");
    }
    strbuf_puts(b, ".</li>\n");
    strbuf_printf(b, "<li>Serving: %.3g h a day for %.3g days; Custom Model Import bills %.3g model copy × ", c->hours_per_day,
                  c->days, c->copies);
    if (isnan(c->cmus)) strbuf_puts(b, "? CMUs");
    else strbuf_printf(b, "%.3g CMU%s", c->cmus, c->cmus_estimated ? " (estimate)" : "");
    strbuf_printf(b, " in 5-minute windows (%.0f minutes); Provisioned Throughput every hour.</li>\n",
                  c->cmi_billed_minutes);
    if (io) {
        strbuf_puts(b, "<li>Bedrock cannot fine-tune ");
        report_escape(b, c->import_only);
        strbuf_puts(b, " models: Custom Model Import after an on-prem run is the only road into Bedrock.</li>\n");
    }
    const struct {
        const char *what;
        const price_fig *f;
        int applies;
    } figs[] = {
        {"Bedrock training per 1K tokens", &c->per_1k, !io},
        {"Bedrock custom model storage / month", &c->storage, !io},
        {"Provisioned Throughput per model unit-hour", &c->pt_hour, !io},
        {"CMUs per model copy", &c->cmus_fig, !c->row || c->row->importable},
        {"CMI per CMU-minute", &c->cmu_minute, 1},
        {"CMI storage per CMU-month", &c->cmu_store, 1},
    };
    for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
        if (!figs[i].applies) continue;
        strbuf_printf(b, "<li>%s: ", figs[i].what);
        if (isnan(figs[i].f->usd)) strbuf_puts(b, "unknown");
        else if (i == 3) strbuf_printf(b, "%.3g", figs[i].f->usd);
        else strbuf_printf(b, "$%.5g", figs[i].f->usd);
        strbuf_puts(b, " — ");
        fig_source(b, figs[i].f);
        strbuf_puts(b, "</li>\n");
    }
    if (!c->base_model)
        strbuf_puts(b, "<li>Bedrock's managed prices need the base model's Bedrock id: "
                       "<code>quarry report RUN --base-model ID</code>.</li>\n");
    strbuf_puts(b, "</ul></section>\n");
}

static void answer_cell(strbuf *b, const char *text, int tokens, int stopped, int max_new) {
    strbuf_puts(b, "<td><pre>");
    if (text) {
        report_escape(b, text);
        strbuf_printf(b, "</pre><p class=\"meta\">%d tokens%s</p></td>", tokens,
                      stopped ? "" : tokens >= max_new ? ", cut at the token limit" : ", cut at the context");
    } else {
        strbuf_puts(b, "—</pre></td>");
    }
}

static void section_answers(strbuf *b, const report_input *in) {
    strbuf_puts(b, "<section id=\"answers\"><h2>Answers: base and tuned model</h2>\n");
    if (in->answers_source) {
        strbuf_puts(b, "<p>");
        report_escape(b, in->answers_source);
        strbuf_printf(b, "; greedy, at most %d new tokens.</p>\n", in->max_new_tokens);
    }
    if (in->answers_note) {
        strbuf_puts(b, "<p class=\"note\">");
        report_escape(b, in->answers_note);
        strbuf_puts(b, "</p>\n");
    }
    if (in->nanswers) {
        strbuf_puts(b, "<table class=\"answers\" id=\"answers-table\"><tr><th>line</th><th>prompt</th><th>base model</th>"
                       "<th>tuned model</th><th>the record's answer</th></tr>\n");
        for (int i = 0; i < in->nanswers; i++) {
            const report_answer *a = &in->answers[i];
            strbuf_printf(b, "<tr><td>%ld</td><td><pre>", a->line);
            report_escape(b, a->prompt);
            strbuf_puts(b, "</pre></td>");
            answer_cell(b, a->base, a->base_tokens, a->base_stopped, in->max_new_tokens);
            answer_cell(b, a->tuned, a->tuned_tokens, a->tuned_stopped, in->max_new_tokens);
            strbuf_puts(b, "<td><pre>");
            report_escape(b, a->reference ? a->reference : "—");
            strbuf_puts(b, "</pre></td></tr>\n");
        }
        strbuf_puts(b, "</table>\n");
    }
    strbuf_puts(b, "</section>\n");
}

static const char css[] =
    "body{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}"
    "h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;"
    "text-align:left;vertical-align:top}table.kv th{font-weight:normal;color:#555}"
    "pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:.9em;max-width:22em}"
    "figure{margin:.5em 0;display:inline-block}svg.plot text,svg.plot .title{font-size:12px}"
    "svg.plot .title{font-size:14px}.swatch{display:inline-block;width:.8em;height:.8em}.axis{stroke:#000}.grid{stroke:#eee}.note{color:#a33}"
    ".meta{color:#777;font-size:.8em;margin:.2em 0 0}code{background:#f4f4f4;padding:0 .2em}";

char *report_html(const report_input *in, size_t *len) {
    strbuf b = {0};
    const cJSON *run = in->run;
    strbuf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>quarry report: ");
    report_escape(&b, in->name);
    strbuf_printf(&b, "</title>\n<style>%s</style></head><body>\n<h1>quarry report: <span id=\"run-name\">", css);
    report_escape(&b, in->name);
    strbuf_puts(&b, "</span></h1>\n<p>run directory <code>");
    report_escape(&b, in->run_dir);
    strbuf_puts(&b, "</code>; base model <code>");
    value_text(&b, get(run, "base_model"));
    strbuf_puts(&b, "</code>; ");
    value_text(&b, get(get(run, "settings"), "method"));
    strbuf_puts(&b, " fine-tune on ");
    value_text(&b, get(run, "device_name"));
    strbuf_puts(&b, ".</p>\n");
    section_result(&b, run);
    section_curves(&b, in->run_dir);
    section_memory(&b, run);
    section_data(&b, run);
    section_cost(&b, in);
    section_answers(&b, in);
    section_settings(&b, run);
    strbuf_puts(&b, "<p class=\"meta\">written by quarry report</p>\n</body></html>\n");
    *len = b.len;
    return strbuf_take(&b);
}
