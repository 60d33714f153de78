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

// The f32 state of the trained tensors moves through host memory one field at a time: every
// trained tensor's field back to back in model_trained_at order (checkpoint_field_elements
// floats). The trainer fills it for saving (gathering ZeRO shards) and spreads it after loading.
typedef enum { CHECKPOINT_MASTER, CHECKPOINT_M, CHECKPOINT_V } checkpoint_field;
typedef int (*checkpoint_gather_fn)(void *ctx, checkpoint_field f, float *host, char *err, size_t errlen);
size_t checkpoint_field_elements(model *m);

// Writes RUN/checkpoints/step-N (calling gather for each field in the order MASTER, M, V) and
// removes all but the newest `keep`. 0, or -1 with a message; on failure any previous
// checkpoint is intact (a full disk's message says which one and suggests --keep-checkpoints).
int checkpoint_save(const char *run_dir, model *m, checkpoint_gather_fn gather, void *ctx, const train_state *st,
                    int keep, char *err, size_t errlen);
// The newest complete checkpoint directory of a run into path. 1 found, 0 none.
int checkpoint_find_latest(const char *run_dir, char *path, size_t pathlen);
// The checkpoint a resume starts from, into path and st: ckpt_dir itself when the user named
// one (RUN/checkpoints/step-N), else the newest complete checkpoint of run_dir that
// checkpoint_open accepts; each damaged newer one is named on stderr as it is passed over.
// 0, or -1 with a message (no checkpoint, or the named one is damaged).
int checkpoint_pick(const char *run_dir, const char *ckpt_dir, model *m, train_state *st, char *path, size_t pathlen,
                    char *err, size_t errlen);
// Reads the counters and checks that every file holds exactly the model's trained tensors, with
// their shapes, before anything is restored. 0, or -1 with a message naming the file and tensor.
int checkpoint_open(const char *ckpt_dir, model *m, train_state *st, char *err, size_t errlen);
// One field of a checkpoint that checkpoint_open accepted, into host. 0 or -1.
int checkpoint_read_field(const char *ckpt_dir, model *m, checkpoint_field f, float *host, char *err, size_t errlen);
// The trained tensors (host, as above) to path as f32 safetensors, atomically. For final/.
int checkpoint_write_tensors(const char *path, model *m, const float *host, char *err, size_t errlen);
