// trainer/schedule.c — see schedule.h.
#include "schedule.h"
#include <math.h>
#include <string.h>

double schedule_lr(schedule_kind kind, double peak_lr, int step_index, int warmup_steps, int total_steps,
                   double min_lr_ratio) {
    if (step_index < warmup_steps) return peak_lr * (double)step_index / (double)(warmup_steps > 0 ? warmup_steps : 1);
    if (kind == SCHEDULE_CONSTANT) return peak_lr;
    int decay_steps = total_steps - warmup_steps;
    if (decay_steps <= 0) return peak_lr;
    double progress = (double)(step_index - warmup_steps) / (double)decay_steps;
    if (progress > 1) progress = 1;
    double factor = kind == SCHEDULE_COSINE ? 0.5 * (1.0 + cos(M_PI * progress)) : 1.0 - progress;
    return peak_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * factor);
}

int schedule_parse(const char *name) {
    if (!strcmp(name, "cosine")) return SCHEDULE_COSINE;
    if (!strcmp(name, "linear")) return SCHEDULE_LINEAR;
    if (!strcmp(name, "constant")) return SCHEDULE_CONSTANT;
    return -1;
}

const char *schedule_name(schedule_kind kind) {
    return kind == SCHEDULE_COSINE ? "cosine" : kind == SCHEDULE_LINEAR ? "linear" : "constant";
}
