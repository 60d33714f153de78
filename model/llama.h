// model/llama.h — the Llama-family decoder (Llama 2/3/3.x with GQA, tied or untied
// embeddings, rope scaling; Mistral; Qwen2 with q/k/v biases; Qwen3 with per-head q/k RMSNorm;
// the sparse mixture-of-experts Qwen3-MoE and Mixtral),
// forward and backward written once over the op table of kernels/backend.h and over block kinds
// (an attention kind and an MLP kind chosen from the config: see llama.c), with optional LoRA
// adapters (model/lora.h).
//
// Life of a model:
//   model *m = model_open(dir, be, err, errlen);        // config.json + safetensors headers
//   model_enable_lora(m, &lora, err, errlen);            // optional: adapters, base frozen
//   model_plan(m, &opts, &plan, err, errlen);            // sizes of every buffer, no memory yet
//   model_memory_print(&plan, stdout);
//   model_allocate(m, err, errlen);                      // one allocation per kind, weights read
//   per micro-batch: model_forward(m, &batch, grad_scale, &loss); model_backward(m);
//   per optimizer step: adamw_update over model_trained_at(m, i), then model_zero_grads(m).
//   model_free(m);
//
// Memory: ONE allocation per kind of buffer, planned from the config, B×T and the options:
// weights (act dtype), trained f32 masters, f32 gradients, f32 AdamW m and v, activations.
// When the backend's act dtype is f32 a trained tensor's act copy is its master (and is counted
// under masters). Under ZeRO (model_options.shard_*) the plan is this rank's share.
//
// Batches are packed: B rows of T tokens, several documents per row. Each row i of the
// flattened (B*T) batch carries its token, its target (the next token, −1 = not trained), its
// RoPE position inside its document and the index (0..T−1 within the row) where its document
// starts; attention never crosses a document boundary.
#pragma once
#include "config.h"
#include "lora.h"
#include "../kernels/backend.h"
#include <stdint.h>
#include <stdio.h>

typedef struct model model;

typedef enum { MODEL_TRAIN_NONE = 0, MODEL_TRAIN_FULL, MODEL_TRAIN_LORA } model_train_mode;

// What a training forward keeps for the backward (model_options.checkpoint). The values keep
// the old boolean's meaning: 0 keeps everything, 1 recomputes whole layers.
//   NONE: every layer's activations.
//   FULL: only each layer's input; the backward runs the layer's forward again (~1/3 more
//         compute: every GEMM twice).
//   SELECTIVE: the GEMM and attention outputs (q, k, v, att, mid, gate, up, lse, rstd, LoRA h;
//         with q/k norms also q and k before them)
//         per layer; the cheap elementwise ones (the two RMSNorm outputs ln1, ln2 and SwiGLU's
//         act) live in one shared set and are recomputed in the backward from the kept inputs
//         (no GEMM runs twice). Bitwise the same results as NONE: same op, same inputs.
typedef enum { MODEL_RECOMPUTE_NONE = 0, MODEL_RECOMPUTE_FULL = 1, MODEL_RECOMPUTE_SELECTIVE = 2 } model_recompute;
const char *model_recompute_name(model_recompute r);          // "none", "full", "selective"
int model_recompute_parse(const char *s, model_recompute *out);  // 0 ok; -1 unknown name

// QLoRA (model_options.quant): the decoder's frozen linear weights (q, k, v, o, gate, up, down)
// held in 4-bit NF4 (kernels/nf4_format.h), quantised at allocation from the checkpoint as
// bitsandbytes' quantize_4bit does (blocks of 64; NF4 double-quantises the absmax as
// bnb_4bit_use_double_quant, NF4_PLAIN keeps f32 absmax). Embeddings, norms and lm_head stay in
// the act dtype. Only for forward-only and LoRA models of dense (non-MoE) families.
typedef enum { MODEL_QUANT_NONE = 0, MODEL_QUANT_NF4 = 1, MODEL_QUANT_NF4_PLAIN = 2 } model_quant;
const char *model_quant_name(model_quant q);   // "none", "nf4", "nf4 (plain absmax)"

// Fused ops the forward and backward use unless model_options.no_fusion names them:
//   LORA_GROUP: the LoRA of q, k, v (gate, up) as one grouped op over their shared input (one
//               GEMM for the A's) instead of each projection's linears: the same bits on the CPU.
//   ADD_NORM:   mid = resid + o(att) and ln2 = rmsnorm(mid) in one pass (o's GEMM no longer
//               accumulates onto a copy of resid): the same values up to f32 rounding.
//   ROPE_QK:    RoPE of q and k in one op (rope_qk_forward/_backward), with the qk-norm families'
//               per-head RMSNorm in the same pass: one launch instead of two (four with the
//               norms) each way: the same bits on the CPU.
enum { MODEL_FUSE_LORA_GROUP = 1u, MODEL_FUSE_ADD_NORM = 2u, MODEL_FUSE_ROPE_QK = 4u, MODEL_FUSE_ALL = 7u };

typedef struct {
    int batch_size;           // B: rows per micro-batch (≥ 1)
    int seq_len;              // T: tokens per row, at most (≥ 1)
    model_train_mode train;   // NONE: forward only (eval, generation); LORA needs model_enable_lora
    model_recompute checkpoint;   // what the backward recomputes (NONE = 0: nothing)
    // ZeRO (trainer/dist): with shard_world ≥ 2 this rank keeps the f32 masters and AdamW moments
    // of its shard of each segment only (shard r of n elements: n / world each from r·(n / world),
    // the last rank also taking the remainder, as dist_shard); the act copies stay whole.
    int shard_world, shard_rank;
    int shard_grads;          // ZeRO-2: the gradients too (see model_segment)
    model_quant quant;        // QLoRA's 4-bit frozen linears (NONE = 0: the act dtype)
    // gpt-oss: the experts' gate, up and down kept frozen in MXFP4 on the device as the checkpoint
    // stores them (4.25 bits a weight), each dequantised exactly into a workspace before its GEMM
    // (model/moe/experts.h); 0: dequantised to the act dtype at load. Not with full training nor
    // --quantize; a checkpoint given, it must be MXFP4 (config.json's quant_method).
    int experts_mxfp4;
    // Fusions turned off (model_fusion bits; 0: all on).
    unsigned no_fusion;
    // Long context (training only; 0 = off for both):
    // offload: each layer's saved activations (its input and, unless recompute full, its set)
    //   go to pinned host memory after its forward and come back, one layer ahead, before its
    //   backward, the copies beside the compute (be->side_copy); MODEL_OFFLOAD_SLOTS layers stay
    //   on the device. Not for MoE layers yet.
    // mlp_chunk: the dense MLP over chunks of mlp_chunk rows: gate, up, SwiGLU and their
    //   gradients exist for one chunk only, the backward computing gate and up again per chunk
    //   (two of the MLP's three GEMMs run twice). ≥ B·T: one chunk. Not with LoRA dropout (its
    //   mask is numbered over the whole tensor) nor MLP biases. The cpu backend gives the same
    //   bits as without chunks when mlp_chunk is a multiple of 256 (its GEMM's k blocks: a
    //   weight gradient sums the rows in blocks of 256, each row's output is its own).
    int offload;
    int mlp_chunk;
} model_options;

enum { MODEL_OFFLOAD_SLOTS = 3 };   // device slots of offloaded layers: the layer computing, the
                                    // one being copied, the one its output goes to

// Bytes of each buffer kind, from model_plan.
typedef struct {
    size_t weights;           // act-dtype copies the forward reads (frozen weights, act copies)
    size_t masters;           // f32 masters of trained tensors
    size_t grads;             // f32 gradients of trained tensors
    size_t moments;           // f32 AdamW m and v together
    size_t activations;       // saved activations, backward scratch, batch indices
    size_t nf4;               // of weights: the NF4 codes, absmax (and nested absmax) of the
                              // quantised linears (model_options.quant)
    size_t nf4_workspace;     // of activations: act (OC, IC) of the largest quantised linear,
                              // where a backend dequantises a weight before its GEMM
    size_t mxfp4;             // of weights: the MXFP4 blocks and scales of the experts kept packed
                              // (model_options.experts_mxfp4)
    size_t mxfp4_workspace;   // of activations: act (OC, IC) of the largest expert matrix
    size_t total;             // device bytes: the five above (host_pinned is not in it)
    size_t host_pinned;       // model_options.offload: pinned host memory of the offloaded layers
    size_t offload_layer;     // of it: the bytes of one layer (its input and saved set)
    int offload, mlp_chunk;   // as planned (mlp_chunk 0: none or one chunk)
    size_t params_total;      // number of parameters of the base model
    size_t params_trained;    // number of trained parameters
    size_t params_trained_experts;   // of which in the MoE experts' LoRA adapters (grows with E)
    int batch_size, seq_len, checkpoint;   // checkpoint: a model_recompute
    int shard_world, shard_grads;
    model_quant quant;
    int experts_mxfp4;
    model_train_mode train;
    dtype act_dtype;
    char backend_name[32];
} model_memory;

// One tensor of the model, base or adapter. Device pointers of the model's backend.
typedef struct {
    char name[128];           // HF name ("model.layers.0.self_attn.q_proj.weight") or PEFT name
                              // ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
    int ndim;
    int64_t shape[2];
    size_t n;                 // elements
    int trained;              // 1: the fields below are set
    int nf4;                  // 1: frozen and held in 4-bit NF4 (model_options.quant): act is NULL;
                              // model_param_read gives the dequantised weights
    int mxfp4;                // 1: frozen and held in MXFP4 (model_options.experts_mxfp4): act is NULL;
                              // model_param_read gives the dequantised weights
    int weight_decay;         // 1 for matrices (linear, embedding, LoRA A/B); 0 norms and biases
    int segment;              // layer l → l; embeddings, final norm, lm_head → num_layers
    void *act;                // act copy (n) the forward reads
    // Trained tensors. This rank updates elements [own_begin, own_begin + own_len): all of them
    // unless the options shard (then possibly none).
    size_t seg_off;           // offset of element 0 in its segment's flat space
    size_t own_begin, own_len;
    float *master, *m, *v;    // f32 (own_len), NULL when own_len is 0: the owned elements' master
                              // and AdamW moments. With f32 activations the master IS the act
                              // copy's owned part (pass NULL as adamw_update's param_act).
    float *grad;              // f32 (n): where the backward accumulates the tensor's gradient
    float *grad_own;          // f32 (own_len): the summed gradient of the owned elements once the
                              // trainer has reduced it (grad + own_begin unless shard_grads)
} model_param;

// The trained tensors of one layer (segment l < num_layers) or of the rest (segment
// num_layers: embeddings, final norm, lm_head) share a flat space: tensor p at p->seg_off,
// 16-element aligned, zero in between. Data parallelism reduces and shards segment by segment,
// so that a layer's gradient can travel while the backward goes on (model_grad_hooks).
typedef struct {
    size_t n;                 // elements of the flat space; 0 when nothing in it is trained
    size_t own_off, own_len;  // this rank's shard of it ([0, n) without sharding)
    float *grad;              // f32 (n): the segment's gradient during the backward. With shard_grads
                              // the layers share two staging slots (layer l uses slot l % 2), zeroed
                              // by the model before each use; the rest has its own.
    float *grad_own;          // f32 (own_len): the reduced gradient of the shard: grad + own_off, or
                              // with shard_grads an accumulator of its own (zeroed by
                              // model_zero_grads; the trainer adds each micro-batch's shard)
    void *act;                // act (n): the act copies of its tensors, same layout
} model_segment;

// Called by a training forward/backward around the gradient of a segment with n > 0: before()
// just before the first write of its gradient in this micro-batch (segment num_layers: in the
// forward, at lm_head), after() once it is complete. Nonzero return: the pass fails.
typedef struct {
    int (*before)(void *ctx, int segment);
    int (*after)(void *ctx, int segment);
    void *ctx;
} model_grad_hooks;

typedef struct {
    int B, T;                 // B ≤ planned batch_size, T ≤ planned seq_len
    const int32_t *ids;       // host (B*T) token ids
    const int32_t *targets;   // host (B*T) token to predict at each row, −1 = not trained;
                              // NULL: no loss (generation)
    const int32_t *pos;       // host (B*T) RoPE position of each row within its document
    const int32_t *doc_start; // host (B*T) index within the row where the row's document begins
    uint64_t dropout_seed;    // LoRA dropout masks of this micro-batch; dropout applies only in
                              // training forwards (grad_scale > 0), as PEFT's in train mode
} model_batch;

typedef struct {
    double sum;               // Σ −log p(target) over trained rows
    int64_t tokens;           // trained rows (targets ≠ −1)
    // Sparse MoE (with targets): aux is this forward's router load-balancing loss (transformers'
    // aux_loss, padding rows excluded); aux_coef its weight in the objective, sum/tokens +
    // aux_coef·aux (model_config_aux_coef: 0 unless output_router_logits). 0 without MoE.
    double aux, aux_coef;
} model_loss;

// Reads config.json (model/config.h) and checks the safetensors (model/safetensors.h): every
// expected tensor present with its shape, nothing unexpected. No device memory yet.
// NULL with a message naming the file and tensor on any problem.
model *model_open(const char *dir, backend *be, char *err, size_t errlen);
// A model with no weights and no backend, from a config: for model_plan only (how much memory
// a run would take on a device whose activation dtype is act). model_allocate refuses it.
model *model_open_config(const model_config *cfg, dtype act, char *err, size_t errlen);
void model_free(model *m);
const model_config *model_get_config(const model *m);

// Adds LoRA adapters (before model_plan); the base is then frozen when training with LORA.
// On a sparse MoE model only the attention targets are kept (model_get_lora gives the effective
// ones; refused when none is left).
int model_enable_lora(model *m, const lora_config *lc, char *err, size_t errlen);
const lora_config *model_get_lora(const model *m);   // NULL when none
// Sparse MoE: the weight of the router load-balancing loss in the objective, instead of the
// config's (model_config_aux_coef). -1 with a message for a model without MoE layers.
int model_set_aux_coef(model *m, double coef, char *err, size_t errlen);
double model_aux_coef(const model *m);

// Computes the size of every buffer for the options; allocates nothing. 0 ok; -1 + message.
int model_plan(model *m, const model_options *opt, model_memory *plan, char *err, size_t errlen);
void model_memory_print(const model_memory *plan, FILE *f);

// Allocates the planned buffers (refusing, with what to change, when they do not fit the
// device's free memory), reads the weights and initialises LoRA (A Kaiming-uniform, B zero).
// Gradients and moments start at zero. 0 ok; -1 + message.
int model_allocate(model *m, char *err, size_t errlen);

int model_segment_count(const model *m);   // num_layers + 1 once planned for training, else 0
const model_segment *model_segment_at(const model *m, int s);
void model_set_grad_hooks(model *m, const model_grad_hooks *h);   // NULL: none

// Every tensor (base and adapters) and the trained ones, in a stable order.
int model_param_count(const model *m);
model_param *model_param_at(model *m, int i);
int model_trained_count(const model *m);
model_param *model_trained_at(model *m, int i);
model_param *model_param_find(model *m, const char *name);   // NULL when absent
// Host f32 (n) ↔ tensor: writes the act copy and the owned part of the master; reads the master
// when this rank owns all of it, else the act copy (an NF4 tensor: its dequantised weights; it
// cannot be written). 0 ok; -1 when the model is not allocated.
int model_param_write(model *m, model_param *p, const float *host);
int model_param_read(model *m, const model_param *p, float *host);

// Forward over a batch. With targets, the loss over trained rows goes to *loss (may be NULL).
// grad_scale > 0 (training): the loss gradient, scaled by grad_scale, is computed in the same
// pass over the vocabulary (be->lm_head_loss), ready for model_backward. The trainer passes
// 1/(trained tokens of the whole accumulated batch). 0 ok; -1 + message in model_error.
int model_forward(model *m, const model_batch *b, float grad_scale, model_loss *loss);
// Backward of the last forward (which had grad_scale > 0): ACCUMULATES into the gradients of
// the trained tensors, so that micro-batches add up (with shard_grads each micro-batch's
// gradient passes through the staging slots: the trainer reduces it from the hooks).
int model_backward(model *m);
void model_zero_grads(model *m);
// Per-row losses of the last forward, host f32 (B*T); 0 where not trained.
int model_read_losses(model *m, float *host);

// Logits f32 (V) of row `row` (0 ≤ row < B*T) of the last forward, into host memory.
int model_logits_row(model *m, int row, float *host);
// Logits of the last position after a forward over the prefix ids[0..n) as one document.
int model_logits_last(model *m, const int32_t *ids, int n, float *host);
// Greedy decoding: appends up to n_new argmax tokens to the prompt (stopping after eos_id when
// ≥ 0), writing them to out. Returns the number generated, or −1 + message. The prompt plus the
// generated tokens must fit the planned seq_len.
int model_generate_greedy(model *m, const int32_t *prompt, int n_prompt, int n_new, int eos_id,
                          int32_t *out);

// Sampling's step: logits f32 (V) of the token after ids[0..n) (one document, n ≤ the planned
// seq_len, B = 1), reusing the KV cache of the previous model_decode for the longest common
// prefix: only the positions after it are computed (one per sampled token; a chat's next turn in
// one pass). Any other forward drops the cache. 0 ok; -1.
int model_decode(model *m, const int32_t *ids, int n, float *host);

const char *model_error(const model *m);

// All of the above in one call: open, enable LoRA when lora != NULL, plan, print the plan to
// plan_out (may be NULL), allocate. NULL with a message.
model *model_load(const char *dir, backend *be, const model_options *opt, const lora_config *lora,
                  FILE *plan_out, char *err, size_t errlen);
