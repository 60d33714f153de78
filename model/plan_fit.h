// model/plan_fit.h — `quarry train --micro-batch auto`: the largest micro-batch whose memory
// plan (model_plan) fits what a device offers, searched over plans only (no memory taken), so
// it also runs on a model opened from a config alone (model_open_config).
//
//   size_t budget = plan_fit_budget(free, total, gpu, sharing);
//   plan_fit f;
//   if (plan_fit_micro_batch(m, &opts, per_rank_batch, budget, &f, err, errlen)) ... // err says what to change
//   plan_fit_describe(&f, line, sizeof line);   // "micro-batch 4: plan 61.2 GiB of 74.9 GiB usable; 5 would need 80.3"
#pragma once
#include "llama.h"
#include <stddef.h>

typedef struct {
    int micro_batch;          // the choice (≥ 1): as few forward passes over max_micro as `largest`
                              // needs, split evenly (8 rows with 5 fitting: 2 passes of 4)
    int largest;              // the largest micro-batch whose plan fits
    int max_micro;            // the search's upper end (the rank's batch)
    size_t budget;            // bytes a plan may take
    size_t plan_bytes;        // the plan's total at micro_batch
    size_t next_bytes;        // the plan's total at largest + 1; 0 when largest == max_micro
} plan_fit;

// Bytes a plan may take on a device. GPUs (gpu = 1): the free memory less 5% and 256 MiB (the
// CUDA context's growth, cuBLAS workspaces, the allocator's fragmentation: none are in the plan).
// The CPU: the host's total, as model_allocate judges it (free host memory understates what the
// page cache would give back), split among `sharing` ranks of one process (≥ 1).
size_t plan_fit_budget(size_t free_bytes, size_t total_bytes, int gpu, int sharing);

// Searches micro-batches 1..max_micro with opt's other fields (train mode, seq_len, recompute)
// for the largest whose model_plan total is within budget; plans are monotone in the batch.
// On success the model is left planned at out->micro_batch. -1 with a message naming what to
// change when even micro-batch 1 does not fit (or model_plan refuses the options).
int plan_fit_micro_batch(model *m, const model_options *opt, int max_micro, size_t budget, plan_fit *out,
                         char *err, size_t errlen);

// One line for the user: the choice and why.
void plan_fit_describe(const plan_fit *f, char *buf, size_t n);

// Long context (`quarry train --offload-activations auto|on|off`): the memory options that make
// opt's plan (at its batch_size) fit budget, cheapest first: opt as it is; the dense MLP in
// chunks of PLAN_MLP_CHUNK rows (when B·T is larger and the model allows: two of the MLP's
// GEMMs run twice); then, with offload AUTO, also the saved activations offloaded to pinned host
// memory. ON offloads from the start; OFF never. Sets opt->mlp_chunk and opt->offload, and
// writes to why what it turned on and why ("" when nothing). When nothing fits, opt is left with
// every saving allowed (the caller's plan then says what else to change). 0 ok; -1 + message when
// model_plan refuses the options (offload ON on a MoE model).
typedef enum { PLAN_OFFLOAD_AUTO = 0, PLAN_OFFLOAD_ON, PLAN_OFFLOAD_OFF } plan_offload;
enum { PLAN_MLP_CHUNK = 8192 };
int plan_offload_parse(const char *s, plan_offload *out);   // "auto", "on", "off" (NULL: auto); -1 unknown
const char *plan_offload_name(plan_offload o);
int plan_fit_memory(model *m, model_options *opt, plan_offload mode, size_t budget, char *why, size_t whylen,
                    char *err, size_t errlen);
