// cli/export_check.h — how much of the fine-tuning a merged package keeps once its weights are
// rounded to the package dtype. Over a few check records (the run's validation file, --check-data,
// or a sample of the training data) it measures, in fp32 on the CPU through cli/eval_loss.h:
//   the run       (the adapter unmerged, or a full fine-tune's final weights, as trained),
//   the base      (what the fine-tuning started from),
//   the package   per dtype considered: the exact tensors hf_export_merged writes
//                 (hf_export_each_tensor, rounded to the dtype and read back), on the base's model,
// and the retained fraction (base − package) / (base − run) of the mean loss per trained token.
// For fp16 it also counts the merged weights that overflow fp16 (→ ±inf), turn subnormal, or
// round to zero. `--dtype auto` takes fp16 when no weight overflows, subnormals are at most 1% of
// the weights, its loss is finite and it retains ≥ the threshold; else bf16 (export_check_choose).
#pragma once
#include <stdio.h>

#include "../export/hf_export.h"

struct cJSON;

#define EXPORT_CHECK_THRESHOLD 0.90          // below: a warning naming the fix
#define EXPORT_CHECK_MAX_SUBNORMAL 0.01      // share of weights fp16 may turn subnormal under auto
#define EXPORT_CHECK_DEFAULT_RECORDS 4

typedef struct {
    st_dtype dtype;
    double loss;              // mean −log p per trained token of the package in this dtype
    double retained;          // (base − package) / (base − run); NAN when the run does not improve
    int finite;               // the loss is finite
} export_check_dtype;

typedef struct {
    const char *run_dir;                  // the run (model_ref), whose run.json names the base
    const hf_export_options *merge;       // what the package is made from (dtype ignored)
    const char *data;                     // the check records' file
    const char *data_kind;                // "validation", "check-data" or "training-sample"
    int max_records;                      // at most this many, evenly spaced
    const st_dtype *dtypes;               // the dtypes to measure
    int ndtypes;
    int quiet;
} export_check_options;

typedef struct {
    const char *data_kind;
    int records, file_records;
    long long tokens;
    double loss_run, loss_base;
    int n;
    export_check_dtype d[3];
    long long elements, f16_overflow, f16_subnormal, f16_zero;   // over the merged weights
    int f16_counted;
} export_check;

// 0 ok; -1 + message (the check could not run: a missing file, a model it cannot load).
int export_check_measure(const export_check_options *o, export_check *r, char *err, size_t errlen);
// The entry of dtype want, or NULL when it was not measured.
const export_check_dtype *export_check_get(const export_check *r, st_dtype want);
// fp16's range test: no overflow, subnormals within EXPORT_CHECK_MAX_SUBNORMAL. 1 fits.
int export_check_f16_range_ok(const export_check *r);
// --dtype auto between fp16 and bf16 (both measured): ST_F16 when its range fits, its loss is
// finite and it retains ≥ EXPORT_CHECK_THRESHOLD (or the run does not improve and fp16 is no worse
// than bf16); else ST_BF16. why: one line saying which test decided.
st_dtype export_check_choose(const export_check *r, char *why, size_t whylen);
// The table on f (one line per dtype, the counts, the chosen dtype marked) and a warning on stderr
// when the chosen dtype retains less than the threshold, naming the fix.
void export_check_print(const export_check *r, st_dtype chosen, int auto_chosen, FILE *f);
// quarry-export.json's "retention" object.
struct cJSON *export_check_to_json(const export_check *r, st_dtype chosen, int auto_chosen);
