// trainer/metrics.c — see metrics.h.
#include "metrics.h"
#include "tfevents.h"
#include "../data/fileio.h"
#include "../data/strbuf.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static FILE *open_csv(const char *dir, const char *name, const char *header, int resume, char *err, size_t errlen) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int exists = fileio_exists(path);
    FILE *f = fopen(path, resume ? "a" : "w");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    if (!resume || !exists) fprintf(f, "%s\n", header);
    fflush(f);
    return f;
}

int metrics_open(metrics *m, const char *run_dir, int resumed_step, int aux_column, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    int resume = resumed_step >= 0;
    snprintf(m->dir, sizeof m->dir, "%s", run_dir);
    m->aux_column = aux_column;
    m->train_csv = open_csv(run_dir, "step_wise_training_metrics.csv",
                            aux_column ? "step_number,epoch_number,training_loss,perplexity,learning_rate,grad_norm,"
                                         "tokens_per_second,mfu,aux_loss"
                                       : "step_number,epoch_number,training_loss,perplexity,learning_rate,grad_norm,"
                                         "tokens_per_second,mfu",
                            resume, err, errlen);
    if (!m->train_csv) return -1;
    m->val_csv = open_csv(run_dir, "validation_metrics.csv", "step_number,epoch_number,validation_loss,perplexity",
                          resume, err, errlen);
    if (!m->val_csv) { fclose(m->train_csv); return -1; }
    m->events = tfevents_open(run_dir, err, errlen);
    // The steps after the checkpoint are computed again: TensorBoard drops what earlier files
    // logged from resumed_step + 1 on, as the CSVs were cut after resumed_step.
    if (m->events && resume && tfevents_write_restart(m->events, resumed_step + 1)) {
        snprintf(err, errlen, "%s: %s", tfevents_path(m->events), strerror(errno));
        tfevents_close(m->events);
        m->events = NULL;
    }
    if (!m->events) {
        fclose(m->train_csv);
        fclose(m->val_csv);
        return -1;
    }
    return 0;
}

static int grow(void **p, int *cap, int n, size_t size) {
    if (n < *cap) return 0;
    int nc = *cap ? 2 * *cap : 256;
    void *np = realloc(*p, (size_t)nc * size);
    if (!np) return -1;
    *p = np;
    *cap = nc;
    return 0;
}

// A figure is formatted once: the CSV gets the text and TensorBoard the number it reads as, so
// both show the same values.
typedef struct {
    char text[64];
    double value;
} figure;

static figure fig(const char *fmt, double v) {
    figure f;
    snprintf(f.text, sizeof f.text, fmt, v);
    f.value = strtod(f.text, NULL);
    return f;
}

int metrics_log_train(metrics *m, const train_point *p) {
    if (grow((void **)&m->train, &m->cap_train, m->ntrain, sizeof *p)) return -1;
    m->train[m->ntrain++] = *p;
    figure loss = fig("%.6f", p->loss), ppl = fig("%.6f", exp(p->loss)), lr = fig("%.6g", p->lr),
           gn = fig("%.6f", p->grad_norm), tps = fig("%.1f", p->tokens_per_second), mfu = fig("%.4f", p->mfu),
           aux = fig("%.6f", p->aux_loss);
    fprintf(m->train_csv, "%d,%d,%s,%s,%s,%s,%s,%s", p->step, p->epoch, loss.text, ppl.text, lr.text, gn.text, tps.text,
            mfu.text);
    if (m->aux_column) fprintf(m->train_csv, ",%s", aux.text);
    fputc('\n', m->train_csv);
    int rc = fflush(m->train_csv) == 0 ? 0 : -1;
    tfevents_scalar v[] = {{"train/loss", loss.value},       {"train/learning_rate", lr.value},
                           {"train/grad_norm", gn.value},    {"train/tokens_per_second", tps.value},
                           {"train/mfu", mfu.value},         {"train/aux_loss", aux.value}};
    if (tfevents_write_scalars(m->events, p->step, v, m->aux_column ? 6 : 5)) rc = -1;
    return rc;
}

int metrics_log_val(metrics *m, const val_point *p) {
    if (grow((void **)&m->val, &m->cap_val, m->nval, sizeof *p)) return -1;
    m->val[m->nval++] = *p;
    figure loss = fig("%.6f", p->loss), ppl = fig("%.6f", exp(p->loss));
    fprintf(m->val_csv, "%d,%d,%s,%s\n", p->step, p->epoch, loss.text, ppl.text);
    int rc = fflush(m->val_csv) == 0 ? 0 : -1;
    tfevents_scalar v = {"validation/loss", loss.value};
    if (tfevents_write_scalars(m->events, p->step, &v, 1)) rc = -1;
    return rc;
}

int metrics_write_svg(const metrics *m, char *err, size_t errlen) {
    const double W = 720, H = 400, L = 60, R = 20, T = 30, B = 45;
    double xmax = 1, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < m->ntrain; i++) {
        if (m->train[i].step > xmax) xmax = m->train[i].step;
        if (isfinite(m->train[i].loss)) { ymin = fmin(ymin, m->train[i].loss); ymax = fmax(ymax, m->train[i].loss); }
    }
    for (int i = 0; i < m->nval; i++) {
        if (m->val[i].step > xmax) xmax = m->val[i].step;
        if (isfinite(m->val[i].loss)) { ymin = fmin(ymin, m->val[i].loss); ymax = fmax(ymax, m->val[i].loss); }
    }
    if (!isfinite(ymin)) { ymin = 0; ymax = 1; }
    if (ymax - ymin < 1e-6) { ymax += 0.5; ymin -= 0.5; }
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
#define XS(x) (L + (W - L - R) * (double)(x) / xmax)
#define YS(y) (T + (H - T - B) * (1.0 - ((y) - ymin) / (ymax - ymin)))
    strbuf b = {0};
    strbuf_printf(&b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    strbuf_printf(&b, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    strbuf_printf(&b, "<text x=\"%.0f\" y=\"18\" font-size=\"14\">loss per step</text>\n", L);
    strbuf_printf(&b, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    strbuf_printf(&b, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T, L, H - B);
    for (int i = 0; i <= 4; i++) {
        double y = ymin + (ymax - ymin) * i / 4.0, x = xmax * i / 4.0;
        strbuf_printf(&b, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6, YS(y) + 4, y);
        strbuf_printf(&b, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.0f</text>\n", XS(x), H - B + 16, x);
    }
    strbuf_printf(&b, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">step</text>\n", (L + W - R) / 2, H - 8);
    if (m->ntrain) {
        strbuf_printf(&b, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
        for (int i = 0; i < m->ntrain; i++)
            if (isfinite(m->train[i].loss)) strbuf_printf(&b, "%.1f,%.1f ", XS(m->train[i].step), YS(m->train[i].loss));
        strbuf_printf(&b, "\"/>\n");
    }
    if (m->nval) {
        strbuf_printf(&b, "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"");
        for (int i = 0; i < m->nval; i++)
            if (isfinite(m->val[i].loss)) strbuf_printf(&b, "%.1f,%.1f ", XS(m->val[i].step), YS(m->val[i].loss));
        strbuf_printf(&b, "\"/>\n");
        for (int i = 0; i < m->nval; i++)
            if (isfinite(m->val[i].loss))
                strbuf_printf(&b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"/>\n", XS(m->val[i].step), YS(m->val[i].loss));
    }
    strbuf_printf(&b, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#1f77b4\">training</text>\n", W - R - 140, T + 4);
    strbuf_printf(&b, "<text x=\"%.0f\" y=\"%.0f\" fill=\"#d62728\">validation</text>\n", W - R - 70, T + 4);
    strbuf_printf(&b, "</svg>\n");
#undef XS
#undef YS
    char *svg = strbuf_take(&b);
    if (!svg) { snprintf(err, errlen, "out of memory drawing loss.svg"); return -1; }
    char path[4200];
    snprintf(path, sizeof path, "%s/loss.svg", m->dir);
    int rc = fileio_write_atomic(path, svg, b.len, err, errlen);
    free(svg);
    return rc;
}

void metrics_close(metrics *m) {
    if (m->train_csv) fclose(m->train_csv);
    if (m->val_csv) fclose(m->val_csv);
    tfevents_close(m->events);
    free(m->train);
    free(m->val);
    memset(m, 0, sizeof *m);
}
