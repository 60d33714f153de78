// trainer/metrics.h — the run directory's metrics: Bedrock's CSV files
// (step_wise_training_metrics.csv, validation_metrics.csv), loss.svg, a plot of both losses
// that any browser shows without a server, and TensorBoard event files (trainer/tfevents.h)
// holding the same values as the CSVs, to the digit.
#pragma once
#include <stdio.h>

typedef struct {
    int step, epoch;
    double loss, lr, grad_norm, tokens_per_second, mfu;
    double aux_loss;          // sparse MoE: the router load-balancing loss (the aux_loss column)
} train_point;

typedef struct {
    int step, epoch;
    double loss;
} val_point;

typedef struct {
    char dir[4096];
    FILE *train_csv, *val_csv;
    struct tfevents *events;  // this session's events.out.tfevents.* file
    int aux_column;           // step_wise_training_metrics.csv ends with aux_loss (MoE models)
    train_point *train;
    int ntrain, cap_train;
    val_point *val;
    int nval, cap_val;
} metrics;

// Opens (appending when resuming) the two CSV files in run_dir, writing headers when new, and
// creates a new TensorBoard event file. resumed_step: -1 for a new run, else the step of the
// checkpoint a resumed run starts from (TensorBoard is told to drop later steps of earlier files).
// aux_column: the training CSV gets a last column aux_loss (models with sparse MoE layers: the
// router load-balancing loss, transformers' aux_loss, whether or not the objective includes it).
int metrics_open(metrics *m, const char *run_dir, int resumed_step, int aux_column, char *err, size_t errlen);
int metrics_log_train(metrics *m, const train_point *p);
int metrics_log_val(metrics *m, const val_point *p);
// Rewrites run_dir/loss.svg atomically from every point logged so far.
int metrics_write_svg(const metrics *m, char *err, size_t errlen);
void metrics_close(metrics *m);
