// trainer/schedule.h — learning-rate schedules as transformers defines them: linear warmup from 0,
// then cosine, linear or constant. step_index counts optimizer steps already taken (0 for the
// first step), as the HF LambdaLR schedulers do.
#pragma once

typedef enum { SCHEDULE_COSINE = 0, SCHEDULE_LINEAR, SCHEDULE_CONSTANT } schedule_kind;

double schedule_lr(schedule_kind kind, double peak_lr, int step_index, int warmup_steps, int total_steps,
                   double min_lr_ratio);
// "cosine" | "linear" | "constant" → kind; -1 when unknown.
int schedule_parse(const char *name);
const char *schedule_name(schedule_kind kind);
