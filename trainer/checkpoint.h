// trainer/checkpoint.h — checkpoints a run can resume from exactly: the trained tensors (f32
// masters), AdamW moments, and the trainer's counters (step, epoch, data cursor, RNG and
// early-stopping state). Written to a temporary directory, fsynced, renamed; the newest K kept.
#pragma once
#include "../model/llama.h"
#include <stddef.h>

typedef struct {
    int step;                 // optimizer steps done
    int epoch;                // epoch of the next batch (0-based)
    int next_row;             // first packed row of the next batch in that epoch
    int adam_step;            // AdamW's t (steps actually applied; skipped NaN steps excluded)
    int nan_streak;           // consecutive skipped steps
    int nan_skipped;          // total skipped steps
    int evals_without_improvement;
    double best_val_loss;     // +inf before the first evaluation
    long long tokens_seen;    // real (non-padding) tokens trained on
    double train_seconds;     // wall time spent in steps, across resumes
} train_state;

// Test hook (trainer/train.c sets it from QUARRY_TEST_FAULT): SIGKILL after the tensors of the
// next checkpoint are written, before it is complete.
extern int checkpoint_test_kill_midway;

// Writes RUN/checkpoints/step-N and removes all but the newest `keep`. 0, or -1 with a message;
// on failure any previous checkpoint is intact.
int checkpoint_save(const char *run_dir, model *m, backend *be, const train_state *st, int keep, char *err, size_t errlen);
// The newest complete checkpoint directory of a run into path. 1 found, 0 none.
int checkpoint_find_latest(const char *run_dir, char *path, size_t pathlen);
// Restores tensors, moments and counters. 0, or -1 with a message naming the file and tensor.
int checkpoint_load(const char *ckpt_dir, model *m, backend *be, train_state *st, char *err, size_t errlen);
// Writes the trained tensors (f32) to DIR/FILE as safetensors, atomically. For final/.
int checkpoint_write_trained(const char *path, model *m, char *err, size_t errlen);
