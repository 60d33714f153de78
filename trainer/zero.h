// trainer/zero.h — data parallelism over the model's segments (model/llama.h's model_segment:
// one per layer, one for the embeddings, final norm and lm_head):
//   - from the backward's hooks each segment's gradient is all-reduced (ZeRO-0) or
//     reduce-scattered (ZeRO-1/2) as soon as it is complete, so it travels while the layers
//     below are computed (on CUDA on the communicator's stream);
//   - ZeRO-2 does so every micro-batch, through the model's two staging slots, and adds each
//     reduced shard to the rank's gradient sum; ZeRO-0/1 once per step, after the last one;
//   - each rank updates the elements it owns (all of them under ZeRO-0), then the act copies of
//     the shards are all-gathered (bf16 on CUDA: half the bytes of the f32 masters);
//   - checkpoints stay unsharded: a field (masters, m, v) is gathered to rank 0 segment by
//     segment and, on resume, spread from rank 0 again, so any world size resumes any other.
// With d == NULL (one rank) the same calls work without communication.
#pragma once
#include "checkpoint.h"
#include "dist.h"
#include "../model/llama.h"

typedef struct {
    model *m;
    backend *be;
    dist *d;
    int zero;                 // 0 all-reduce; 1, 2 reduce-scatter
    int sharded;              // the model keeps only this rank's shards (ZeRO-1/2, world > 1)
    int staged;               // ZeRO-2 with world > 1: gradients pass through staging slots
    int active;               // reduce this micro-batch's gradients (set by the trainer)
    int pending_seg[3];       // ZeRO-2: segment whose reduce-scatter is in flight from layer
    int pending_ticket[3];    // slot 0, 1 and the last segment (index 2); -1 none
    size_t *host_off;         // per trained tensor: its offset in a checkpoint field
    float *norm_dev;          // f32 (trained tensors): Σ g² of each, on the device
    float *norm_host;         // the same on the host
} zero_comm;

// The sharding options of the model of a rank under d and --zero (before model_plan).
void zero_model_options(model_options *o, const dist *d, int zero);
// After model_allocate: installs the model's gradient hooks (when d != NULL). 0, or -1.
int zero_init(zero_comm *z, model *m, backend *be, dist *d, int zero, char *err, size_t errlen);
void zero_free(zero_comm *z);

// After each micro-batch's backward: waits for its reductions (adding ZeRO-2's shards). 0 or -1.
int zero_drain(zero_comm *z);
// Every rank must take part in every reduction: a rank with fewer micro-batches in a step than
// the busiest (ZeRO-2), or with none (ZeRO-0/1), calls this for each one it lacks. It
// contributes zeros (ZeRO-0/1: its gradient sum, zero without rows). 0 or -1.
int zero_reduce_idle(zero_comm *z);
// The global gradient norm from the reduced gradients of the owned elements. 0 or -1.
int zero_grad_norm(zero_comm *z, double *norm);
// After the owned elements' update: every rank's shards of the act copies to every rank. 0 or -1.
int zero_gather_params(zero_comm *z);

// checkpoint_gather_fn: field f of every trained tensor into host on rank 0 (others pass NULL
// and still take part). 0, or -1 with a message.
int zero_gather_field(void *z, checkpoint_field f, float *host, char *err, size_t errlen);
// The inverse, on resume: host (rank 0) to every rank's act copies, owned masters or moments.
int zero_spread_field(zero_comm *z, checkpoint_field f, const float *host, char *err, size_t errlen);
