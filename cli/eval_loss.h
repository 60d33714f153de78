// cli/eval_loss.h — the loss of a loaded model over the trained tokens of a Bedrock file, through
// the path training takes (trainer/examples: the same rendering, masks and truncation; dataset
// packing without shuffle; forward only), with a run's own settings as the defaults, so that a
// run's validation file gives the validation loss `quarry train` logged. Used by `quarry eval`
// and by `quarry export`'s check of what the package keeps (cli/export_check.h).
//
//   eval_data d;  eval_data_load(&d, &ref, &opts, err, errlen);   // tokenizer, template, examples
//   m = model_ref_load(&ref, be, &(model_options){.seq_len = d.max_seq_len, ...}, ...);
//   eval_loss(m, &d.set, micro, per, &sum, &tokens, err, errlen);  // per-record sums, total
//   eval_data_free(&d);
#pragma once
#include <stddef.h>

#include "model_ref.h"
#include "../data/chat.h"
#include "../data/dataset.h"
#include "../data/tokenizer.h"

typedef struct {
    double sum;      // Σ −log p over the record's trained tokens
    long tokens;
} eval_record_loss;

typedef struct {
    const char *data;            // Bedrock JSONL (any of the four formats)
    const char *template_name;   // NULL: the run's, else detected
    const char *date;            // template date line; NULL: the run's
    int max_seq_len;             // 0: the run's, else 2048
    int train_on_prompt;         // 1 forces it; 0: the run's
    int allow_extra;             // 1 forces it; 0: the run's
    const char *side;            // "right" | "left"; NULL: the run's, else right
    int max_records;             // 0: every record; else at most this many, evenly spaced in the file
    int quiet;                   // no token-cache line
    const char *report_as;       // non-NULL: truncated or dropped records are listed on stderr under
                                 // this name ("quarry eval")
    int data_threads;            // tokenizing threads; 0: $QUARRY_DATA_THREADS, else every core
} eval_data_options;

typedef struct {
    tokenizer *tok;
    chat_template *tmpl;
    example_set set;             // the examples evaluated (set.n ≥ 1 after a successful load)
    int have_set;
    int max_seq_len;             // the T the model must be planned for
    truncation trunc;
    int file_records;            // records of the file before max_records sampling
} eval_data;

// Tokenizer and template of ref's base, the examples of o->data with ref's run settings as
// defaults. 0 ok; -1 + message (a file with no record left to evaluate is an error).
int eval_data_load(eval_data *d, const model_ref *ref, const eval_data_options *o, char *err, size_t errlen);
void eval_data_free(eval_data *d);

// Every packed row of set (file order, no shuffle) through m (planned for B ≥ micro rows of
// set->seq_len); each row's per-position losses attributed to its documents. per (set->n,
// zeroed by the caller) may be NULL. 0 ok; -1 + message.
int eval_loss(model *m, const example_set *set, int micro, eval_record_loss *per, double *sum, long long *tokens,
              char *err, size_t errlen);
