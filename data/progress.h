// data/progress.h — one progress display for every long command: a bar with rate and ETA on a
// terminal, a plain line every few seconds when stderr is not a terminal, nothing with --quiet.
#pragma once
#include <stdio.h>

typedef struct {
    const char *label;     // "train", "upload", ...
    const char *unit;      // "step", "MB", ...
    double total;          // 0 when unknown
    double done;
    double start_time, last_draw;
    int tty, quiet;
    FILE *out;
    char extra[160];       // e.g. "loss 2.31 tok/s 4210"
} progress;

void progress_start(progress *p, const char *label, const char *unit, double total, int quiet);
// Sets the amount done and redraws when due (at most ~10 Hz on a tty, every 5 s otherwise).
void progress_update(progress *p, double done, const char *extra);
void progress_finish(progress *p);

double now_seconds(void);  // monotonic clock
