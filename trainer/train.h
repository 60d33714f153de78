// trainer/train.h — the training loop: packed batches → forward/backward with gradient
// accumulation (loss normalised over the trained tokens of the whole accumulated batch) →
// clipping → AdamW → schedule; evaluation, early stopping, metrics, checkpoints, exact resume,
// NaN/inf steps skipped (three in a row stop the run), SIGINT/SIGTERM save and exit 130.
#pragma once
#include "settings.h"
#include "checkpoint.h"
#include "../data/dataset.h"
#include "../model/llama.h"
#include "dist.h"

typedef struct {
    int steps_done;
    int stopped_early;        // early stopping
    int interrupted;          // SIGINT/SIGTERM: checkpoint written, exit code 130
    int nan_stopped;          // three non-finite steps in a row
    double first_val_loss, last_val_loss, last_train_loss;
    double train_seconds, tokens_per_second, mfu;
    long long tokens_seen;
    double energy_joules;     // the GPUs' energy over this session's training (NVML), -1 unknown
    int energy_gpu;           // some rank trained on a GPU (an unknown energy is worth a note)
} train_result;

// Runs (or resumes, when a checkpoint is given) the loop. The model is allocated for training
// with micro-batch rows of s->max_seq_len. val may be NULL. 0 ok (also when stopped early or
// interrupted: see result), -1 with a message.
// Data parallel: every rank calls this with its own backend and model replica, the same
// settings and data, and its communicator d (NULL: one rank). Each rank trains a contiguous
// share of the rows of every global batch (the loss is normalised by the whole batch's trained
// tokens, so any world size gives the result of one rank up to summation order). zero 0|1|2 and
// the model's sharding options (zero_model_options, set before model_plan) select how gradients
// and state are spread (trainer/zero.h): layer by layer during the backward. Only rank 0 writes
// metrics, checkpoints (unsharded: any world size resumes them) and final/ (the trained tensors;
// the caller adds adapter_config.json); rank 0 alone reads the checkpoint it resumes from
// (resume_checkpoint is ignored on other ranks) and spreads it.
// Micro-batches are min(s->micro_batch, ceil(batch / world)) rows (train_rank_micro_batch).
int train_run_dist(const train_settings *s, backend *be, model *m, const example_set *train, const example_set *val,
                   const char *run_dir, const char *resume_checkpoint, double peak_flops, dist *d, int zero,
                   train_result *res, char *err, size_t errlen);
int train_rank_micro_batch(const train_settings *s, int world);

// Loss over every trained token of a set (forward only, micro-batches of the planned size):
// *loss = Σ −log p / trained tokens. 0 ok. With d, each rank takes every world-th micro-batch
// and the sums are all-reduced (d NULL: one rank).
int train_evaluate_dist(model *m, const example_set *set, int micro_batch, uint64_t seed, dist *d, double *loss,
                        long long *tokens, char *err, size_t errlen);

// Installs SIGINT/SIGTERM handlers that ask the loop to stop after the current step.
void train_install_signal_handlers(void);
