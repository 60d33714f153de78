// data/progress.c — see progress.h.
#include "progress.h"
#include <string.h>
#include <time.h>
#include <unistd.h>

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void format_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "--:--"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

void progress_start(progress *p, const char *label, const char *unit, double total, int quiet) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->quiet = quiet;
    p->out = stderr;
    p->tty = isatty(fileno(stderr));
    p->start_time = p->last_draw = now_seconds();
}

static void draw(progress *p, int final) {
    double elapsed = now_seconds() - p->start_time;
    double rate = elapsed > 0 ? p->done / elapsed : 0;
    char eta[32], el[32];
    format_duration(el, sizeof el, elapsed);
    format_duration(eta, sizeof eta, p->total > 0 && rate > 0 ? (p->total - p->done) / rate : -1);
    if (p->tty) {
        char bar[31];
        int filled = p->total > 0 ? (int)(30.0 * p->done / p->total) : 0;
        if (filled > 30) filled = 30;
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
        bar[30] = 0;
        fprintf(p->out, "\r\033[K%s [%s] %.0f/%.0f %s %.2f %s/s %s eta %s %s", p->label, bar, p->done,
                p->total, p->unit, rate, p->unit, el, eta, p->extra);
        if (final) fputc('\n', p->out);
    } else {
        fprintf(p->out, "%s: %.0f/%.0f %s, %.2f %s/s, elapsed %s, eta %s %s\n", p->label, p->done, p->total,
                p->unit, rate, p->unit, el, eta, p->extra);
    }
    fflush(p->out);
}

void progress_update(progress *p, double done, const char *extra) {
    p->done = done;
    if (extra) snprintf(p->extra, sizeof p->extra, "%s", extra);
    if (p->quiet) return;
    double t = now_seconds();
    if (t - p->last_draw < (p->tty ? 0.1 : 5.0)) return;
    p->last_draw = t;
    draw(p, 0);
}

void progress_finish(progress *p) {
    if (!p->quiet) draw(p, 1);
}
