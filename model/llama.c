// model/llama.c — the Llama-family decoder over the op table: no #ifdef, no device code;
// every tensor operation goes through be->... (kernels/backend.h).
//
// The decoder is written once over block kinds. A layer is
//     mid = x + attention(rmsnorm(x)),  out = mid + mlp(rmsnorm(mid))
// and what differs between families is a property of the kind, chosen from the config once
// (block_kinds_of), never a test of the architecture:
//   attention kind: q/k/v biases (Qwen2, Llama's attention_bias; gpt-oss also o), per-head
//                   RMSNorm of q and k before RoPE (Qwen3), a sliding window (Mistral: sequences
//                   longer than it are refused by the plan, so the window never masks anything),
//                   learned sinks and per-layer windows masked inside the attention op (gpt-oss's
//                   alternating sliding_attention / full_attention layers).
//   MLP kind:       dense SwiGLU (gate, up, down), or a sparse mixture of experts (Qwen3-MoE,
//                   Mixtral: router, dispatch, experts over model/moe's block API), chosen per
//                   layer (Qwen3-MoE's mlp_only_layers / decoder_sparse_step keep some dense);
//                   gpt-oss's variant: router bias, expert biases, clamped SwiGLU (moe_dims).
//
// The sparse MoE kind:
//   weights: the router (E, C) and every expert's gate, up (I, C) and down (C, I) are separate
//     parameters under their published names, laid out consecutively (all gates, all ups, all
//     downs of a layer), so that each projection's E matrices form the (E, I, C) / (E, C, I)
//     stack model/moe reads (model_new refuses shapes whose rounding would break contiguity).
//   padding: a row of a packed batch is padding when it is a one-token document with target −1
//     (data/dataset.c pads so; a real document has at least two tokens: one with nothing to
//     train is dropped). Padding rows are excluded from the load-balancing statistics, as
//     transformers' attention_mask excludes them; without targets (generation) every row counts.
//   aux loss: with a coefficient coef > 0 (model_config_aux_coef, or model_set_aux_coef: quarry
//     train --router-aux-loss-coef), each training forward zeroes the summed
//     statistics, every MoE layer adds to them, and after the forward aux (transformers'
//     load_balancing_loss_func over this micro-batch) and its gradient dprob are computed on the
//     host (moe_aux_loss) and uploaded for the backward. The trained objective of a micro-batch
//     is CE_sum·grad_scale + coef·aux·(grad_scale·trained tokens): with one micro-batch exactly
//     transformers' mean CE + coef·aux; with gradient accumulation the aux terms of the
//     micro-batches are averaged weighted by their trained tokens, as the CE terms are.
#include "llama.h"
#include "bnb4.h"
#include "moe/block.h"
#include "mxfp4_load.h"
#include "names.h"
#include "safetensors.h"
#include "../kernels/nf4_format.h"
#include "../kernels/mxfp4_format.h"
#include "../kernels/rng.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { NORM_IN = 0, NORM_POST = 1 };

typedef struct {
    int qkv_bias;                // q, k, v projections carry biases
    int qk_norm;                 // per-head RMSNorm (weight (hd)) of q and k before RoPE
    int window;                  // a sliding window every layer has (Mistral); 0 = none
    int o_bias;                  // o_proj carries a bias (gpt-oss)
    int sinks;                   // a learned logit per head joins the softmax (gpt-oss)
    int layer_windows;           // per-layer windows (model_config_layer_window), masked by the op
} attn_kind;

typedef enum { MLP_DENSE_SWIGLU = 0, MLP_SPARSE_MOE } mlp_kind;

typedef struct {
    attn_kind attn;
    mlp_kind mlp;                // the sparse layers' kind when the model has any
    moe_dims moe;                // sparse MoE: its shape (every sparse layer has the same)
} block_kinds;

static block_kinds block_kinds_of(const model_config *c) {
    int per_layer = c->n_layer_types > 0;
    block_kinds k = {{c->attention_bias, c->qk_norm, per_layer ? 0 : c->sliding_window, c->o_bias,
                      c->attention_sinks, per_layer},
                     c->n_experts > 0 ? MLP_SPARSE_MOE : MLP_DENSE_SWIGLU,
                     {c->hidden_size, c->moe_intermediate_size, c->n_experts, c->top_k, c->norm_topk_prob,
                      c->router_bias, c->expert_bias, c->swiglu_alpha, c->swiglu_limit}};
    return k;
}

// A linear layer y = x·Wᵀ (+ b) (+ scale·(dropout(x)·Aᵀ)·Bᵀ), W (out, in).
typedef struct {
    int in, out;
    model_param *w, *b;          // b NULL without bias
    model_param *la, *lb;        // LoRA A (r, in) and B (out, r), NULL without adapter
    const nf4_tensor *q;         // QLoRA: W frozen in 4-bit NF4 (w->nf4; w->act NULL), else NULL
} linear_layer;

typedef struct {
    model_param *norm[2];        // input_layernorm, post_attention_layernorm (C)
    linear_layer lin[LORA_NUM_TARGETS];   // attention's q, k, v, o; the dense MLP's gate, up, down
    model_param *qk_norm[2];     // attention with qk_norm: q_norm, k_norm (hd); else NULL
    // Sparse MoE layers (lin[GATE..DOWN] unused): the router (E, C) and the first expert's
    // gate, up, down: expert e's is experts[j] + e, its memory contiguous after expert e − 1's.
    mlp_kind mlp;
    model_param *router;
    model_param *experts[3];
    // LoRA of a sparse layer: elora[j] is expert 0's A of projection j (gate, up, down), expert
    // e's A and B at elora[j][2e], [2e + 1]; NULL when the experts are not adapted. The router's
    // A and B: router_lora[0], [1], or NULL.
    model_param *elora[3], *router_lora[2];
    model_param *router_bias;    // gpt-oss's variant: router bias (E); bias stacks of gate, up
    model_param *expert_bias[3]; // (E, I) and down (E, C); else NULL
    model_param *sinks;          // attention sinks (H), or NULL
} layer_weights;

// What one layer's forward keeps for its backward. With full recomputation every layer shares
// one set, refilled by recomputing the layer from its input before its backward; with selective
// recomputation every layer points ln1, ln2 and act at one shared pair of buffers, refilled by
// the backward just before each is read.
typedef struct {
    void *ln1, *q, *k, *v, *att, *mid, *ln2, *gate, *up, *act;   // act dtype
    float *rstd1, *rstd2, *lse;
    void *q_raw, *k_raw;         // qk_norm: q, k before their norm (then q, k are normed, roped)
    float *rstd_q, *rstd_k;      // qk_norm: (N·H), (N·KV)
    void *lora_h[LORA_NUM_TARGETS];                               // (N, r): dropout(x)·Aᵀ
    moe_saved moe;               // sparse MoE layers (sets that serve one)
    void *elora_h[MOE_LORA_SLOTS];   // sparse MoE LoRA: (N·k, r) per expert projection, (N, r) router
} layer_acts;

typedef struct {
    void *base;                  // NULL while only measuring
    size_t off;
} arena;

struct model {
    backend *be;                 // NULL for a model opened from a config only (planning)
    dtype act_dtype;
    model_config cfg;
    block_kinds kinds;           // every layer's: no supported family mixes kinds yet
    char path[512];
    st_set *st;                  // open from model_open until the weights are read
    int bnb4, bnb4_double;       // the checkpoint is in bitsandbytes' 4-bit layout (model/bnb4.h):
                                 // its linears load as NF4 as they are (double-quantised or not)

    int has_lora;
    lora_config lora;
    float lora_s;

    model_options opt;
    model_memory plan;
    int planned, allocated;

    // Tensors: every parameter, base then adapters, and the trained subset.
    model_param *params;
    int nparams;
    model_param **trained;
    int ntrained;
    model_param *embed, *final_norm, *lm_head;   // lm_head == embed when tied
    nf4_tensor *nf4q;            // (nparams) QLoRA: the NF4 buffers of param i when params[i].nf4
    size_t nf4_bytes;            // their total (the plan's nf4)
    void *nf4_ws;                // act (OC, IC) of the largest NF4 linear, or NULL (see layout_acts)
    size_t nf4_ws_bytes;
    mxfp4_tensor *mxq;           // (nparams) gpt-oss's experts kept in MXFP4: param i's when params[i].mxfp4
    size_t mx_bytes;             // their total (the plan's mxfp4)
    void *mx_ws;                 // act (OC, IC) of the largest MXFP4 expert matrix, or NULL
    size_t mx_ws_bytes;
    layer_weights *layers;
    float *inv_freq;             // f32 (hd/2) on the device
    float *sinks_f32;            // f32 (H): the layer's sinks as the attention op reads them
    rope_table rope;

    // The five allocations.
    void *buf_weights, *buf_masters, *buf_grads, *buf_moments, *buf_acts;
    model_segment *segs;         // L + 1 when training, see model_segment
    int nsegs;
    model_grad_hooks hooks;      // hooks.before/after NULL: none

    // Activations.
    int32_t *d_ids, *d_targets, *d_pos, *d_doc;  // i32 (N)
    int doc_packed;              // the last batch's rows pack several documents (attention's packed)
    void **resid;                // L+1 of act (N, C): the input of each layer, then the last output
    layer_acts *acts;            // L sets, or 1 with checkpointing / without training
    // Sparse MoE: scratch shared by the layers, the load-balancing statistics (device f32 (E)
    // each: prob_sum, count, then dprob) and the padding mask (device i32 (N)); host memory for
    // the routing (moe_block_sizes' host parts), the aux loss of the last forward.
    int n_moe_layers;
    moe_scratch moe_t;
    float *d_prob_sum, *d_count, *d_dprob;
    int32_t *d_mask, *h_mask;
    void *moe_host;
    size_t moe_host_bytes;
    int use_mask;                // the last forward's rows: d_mask (1 real, 0 padding), else all real
    int moe_stats;               // the layers add to prob_sum / count (a forward with the aux loss)
    int use_aux;                 // the last forward computed dprob for the backward
    double aux_coef;             // the aux loss's weight in the objective (model_set_aux_coef)
    int moe_failed;              // a layer's routing failed (message in error)
    // LoRA inside the MoE blocks (model/moe/adapters.h): host pairs (3·E + 1) refilled per layer,
    // the shared scratch dh act (N·k, r) and, with dropout, xdrop/dxdrop act (N·k, max(C, I)).
    moe_lora_pair *elora_pairs;
    // The grouped ops' host pointer arrays (moe_expert_weights.ptrs, then moe_lora.ptrs),
    // MOE_EXPERT_PTRS(E) + MOE_LORA_PTRS(E), refilled per layer.
    void **moe_ptrs;
    void *elora_dh, *elora_xdrop, *elora_dxdrop;
    void *lnf;                   // act (N, C)
    float *rstdf;                // f32 (N)
    float *losses;               // f32 (N)
    void *logits_act;            // act (V)
    float *logits_f32;           // f32 (V)
    // Backward scratch.
    void *dres, *dln, *dq, *dk, *dv, *datt, *dgate, *dup, *dact, *dlh;
    void *xdrop, *dxdrop;        // act (N, max in) dropout(x) recomputed, and its gradient

    // The last forward.
    int fwd_B, fwd_T, fwd_train, fwd_ready;
    int kv_per_layer;            // acts[l].k, .v distinct per layer (a KV cache for decoding)
    // Activation offload (model_options.offload): layer l's region (resid[l], then its set unless
    // recompute full) lives in device slot l % MODEL_OFFLOAD_SLOTS; layers 0..off_layers-1 go
    // to host_off + l·off_bytes (pinned) after their forward and come back before their backward.
    int off_layers;
    size_t off_start[MODEL_OFFLOAD_SLOTS], off_bytes;   // slot offsets in the activations
    void *off_slot[MODEL_OFFLOAD_SLOTS];
    void *host_off;
    int mlp_rows;                // dense MLP chunk rows (model_options.mlp_chunk); 0: all N at once
    float fwd_grad_scale;
    uint64_t fwd_seed;
    float *h_losses;             // host (N)
    int32_t *dec_ids;            // host (seq_len): the tokens whose k, v the cache holds (model_decode)
    int dec_n;                   // how many; 0 after any other forward

    char error[512];
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static void *arena_take(arena *a, size_t bytes) {
    void *p = a->base ? (char *)a->base + a->off : NULL;
    a->off += round64(bytes);
    return p;
}

static size_t act_size(const model *m) { return dtype_size(m->act_dtype); }

static void *act_row(const model *m, void *p, size_t row, size_t width) {
    return (char *)p + row * width * act_size(m);
}

// HF name of a layer's linear weight: "model.layers.3.self_attn.q_proj".
static void linear_module_name(char *buf, size_t n, int l, int t) {
    const char *block = t <= LORA_O ? "self_attn" : "mlp";
    snprintf(buf, n, "model.layers.%d.%s.%s", l, block, lora_target_name((lora_target)t));
}

static void linear_dims(const model_config *c, int t, int *in, int *out) {
    int q = c->num_heads * c->head_dim, kv = c->num_kv_heads * c->head_dim;
    switch (t) {
    case LORA_Q: *in = c->hidden_size; *out = q; break;
    case LORA_K:
    case LORA_V: *in = c->hidden_size; *out = kv; break;
    case LORA_O: *in = q; *out = c->hidden_size; break;
    case LORA_GATE:
    case LORA_UP: *in = c->hidden_size; *out = c->intermediate_size; break;
    default: *in = c->intermediate_size; *out = c->hidden_size; break;
    }
}

// Projections that read one input form a group (q, k, v of ln1; gate, up of ln2), named by its
// first target: their LoRA A's sit back to back (layout_params) and their h in one (N, G·r)
// block (layout_acts), so that the adapters run as one grouped op (lora_group_forward: one GEMM
// for the G A's). G of the group t heads, 0 when t heads none.
static int lora_group_size(int t) { return t == LORA_Q ? 3 : t == LORA_GATE ? 2 : 0; }

static int is_grouped_lora_a(const model *m, const model_param *p) {
    if (p->segment < 0 || p->segment >= m->cfg.num_layers) return 0;
    const layer_weights *lw = &m->layers[p->segment];
    for (int t0 = LORA_Q; t0 < LORA_NUM_TARGETS; t0++)
        for (int g = 0; g < lora_group_size(t0); g++)
            if (lw->lin[t0 + g].la == p) return 1;
    return 0;
}

// Builds the tensor list from the config (and LoRA settings); pointers are set later.
static int build_params(model *m, char *err, size_t errlen) {
    const model_config *c = &m->cfg;
    int L = c->num_layers;
    const attn_kind *ak = &m->kinds.attn;
    int per_layer = 2 + LORA_NUM_TARGETS + (ak->qkv_bias ? 3 : 0) + (ak->qk_norm ? 2 : 0) + ak->o_bias + ak->sinks + 4 +
                    (m->has_lora ? 2 * LORA_NUM_TARGETS : 0);
    int cap = 3 + L * per_layer;
    for (int l = 0; l < L; l++)
        if (model_config_layer_is_moe(c, l)) cap += 1 + 3 * c->n_experts + (m->has_lora ? 6 * c->n_experts + 2 : 0);
    free(m->params);
    free(m->layers);
    free(m->trained);
    m->params = calloc((size_t)cap, sizeof *m->params);
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->trained = calloc((size_t)cap, sizeof *m->trained);
    if (!m->params || !m->layers || !m->trained) {
        set_err(err, errlen, "out of host memory building the tensor list");
        return -1;
    }
    m->nparams = 0;
#define ADD(p, nd, d0, d1, ...)                                          \
    do {                                                                 \
        (p) = &m->params[m->nparams++];                                  \
        snprintf((p)->name, sizeof (p)->name, __VA_ARGS__);              \
        (p)->ndim = (nd);                                                \
        (p)->shape[0] = (d0);                                            \
        (p)->shape[1] = (nd) == 2 ? (d1) : 1;                            \
        (p)->n = (size_t)(d0) * (size_t)((nd) == 2 ? (d1) : 1);          \
        (p)->weight_decay = (nd) == 2;                                   \
        (p)->segment = seg;                                              \
    } while (0)
    int seg = L;   // embeddings, final norm and lm_head: the last segment
    ADD(m->embed, 2, c->vocab_size, c->hidden_size, "model.embed_tokens.weight");
    char mod[96];
    for (int l = 0; l < L; l++) {
        layer_weights *lw = &m->layers[l];
        seg = l;
        ADD(lw->norm[NORM_IN], 1, c->hidden_size, 0, "model.layers.%d.input_layernorm.weight", l);
        lw->mlp = model_config_layer_is_moe(c, l) ? MLP_SPARSE_MOE : MLP_DENSE_SWIGLU;
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            linear_layer *ll = &lw->lin[t];
            if (lw->mlp == MLP_SPARSE_MOE && t >= LORA_GATE) break;
            linear_dims(c, t, &ll->in, &ll->out);
            linear_module_name(mod, sizeof mod, l, t);
            ADD(ll->w, 2, ll->out, ll->in, "%s.weight", mod);
            if ((ak->qkv_bias && t <= LORA_V) || (ak->o_bias && t == LORA_O)) ADD(ll->b, 1, ll->out, 0, "%s.bias", mod);
            if (t != LORA_O) continue;
            if (ak->sinks) ADD(lw->sinks, 1, c->num_heads, 0, "model.layers.%d.self_attn.sinks", l);
            if (ak->qk_norm) {
                ADD(lw->qk_norm[0], 1, c->head_dim, 0, "model.layers.%d.self_attn.q_norm.weight", l);
                ADD(lw->qk_norm[1], 1, c->head_dim, 0, "model.layers.%d.self_attn.k_norm.weight", l);
            }
            ADD(lw->norm[NORM_POST], 1, c->hidden_size, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        }
        if (lw->mlp == MLP_SPARSE_MOE) {
            const int E = c->n_experts, I = c->moe_intermediate_size, C = c->hidden_size;
            static const tensor_role roles[3] = {TENSOR_EXPERT_GATE, TENSOR_EXPERT_UP, TENSOR_EXPERT_DOWN};
            model_tensor_name_of(c, TENSOR_ROUTER, l, 0, mod, sizeof mod);
            ADD(lw->router, 2, E, C, "%s", mod);
            if (c->router_bias) {
                model_tensor_name(TENSOR_ROUTER_BIAS, l, mod, sizeof mod);
                ADD(lw->router_bias, 1, E, 0, "%s", mod);
            }
            if (c->expert_bias) {
                static const tensor_role broles[3] = {TENSOR_EXPERT_GATE_BIAS, TENSOR_EXPERT_UP_BIAS,
                                                      TENSOR_EXPERT_DOWN_BIAS};
                for (int j = 0; j < 3; j++) {
                    model_tensor_name(broles[j], l, mod, sizeof mod);
                    ADD(lw->expert_bias[j], 2, E, j == 2 ? C : I, "%s", mod);
                }
            }
            for (int j = 0; j < 3; j++)
                for (int e = 0; e < E; e++) {
                    model_param *p;
                    model_tensor_name_of(c, roles[j], l, e, mod, sizeof mod);
                    ADD(p, 2, j == 2 ? C : I, j == 2 ? I : C, "%s", mod);
                    if (e == 0) lw->experts[j] = p;
                }
        }
    }
    seg = L;
    ADD(m->final_norm, 1, c->hidden_size, 0, "model.norm.weight");
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else
        ADD(m->lm_head, 2, c->vocab_size, c->hidden_size, "lm_head.weight");
    if (m->has_lora) {
        int r = m->lora.rank;
        for (int l = 0; l < L; l++)
            for (int t = 0; t < LORA_NUM_TARGETS; t++) {
                if (!(m->lora.targets & (1u << t))) continue;
                if (m->layers[l].mlp == MLP_SPARSE_MOE && t >= LORA_GATE) continue;   // experts: frozen
                linear_layer *ll = &m->layers[l].lin[t];
                seg = l;
                linear_module_name(mod, sizeof mod, l, t);
                ADD(ll->la, 2, r, ll->in, "base_model.model.%s.lora_A.weight", mod);
                ADD(ll->lb, 2, ll->out, r, "base_model.model.%s.lora_B.weight", mod);
            }
        // Sparse layers: an adapter per expert and projection, named after the published
        // per-expert module (PEFT's names on transformers 4.x), and the router's. gpt-oss's fused
        // experts: gate and up share A (PEFT's ParamWrapper on gate_up_proj, model/lora_peft.h),
        // one adapter "experts.E.gate_up_proj" with A (r, C) and B (2I, r) = [B_gate; B_up].
        const int E = c->n_experts, I = c->moe_intermediate_size, C = c->hidden_size;
        static const tensor_role roles[3] = {TENSOR_EXPERT_GATE, TENSOR_EXPERT_UP, TENSOR_EXPERT_DOWN};
        for (int l = 0; l < L; l++) {
            layer_weights *lw = &m->layers[l];
            if (lw->mlp != MLP_SPARSE_MOE) continue;
            seg = l;
            for (int j = 0; m->lora.targets & LORA_EXPERTS_BIT && j < 3; j++) {
                int gate_up = c->experts_fused && j == 0;
                if (c->experts_fused && j == 1) continue;
                for (int e = 0; e < E; e++) {
                    model_param *pa, *pb;
                    int in = j == 2 ? I : C, out = j == 2 ? C : gate_up ? 2 * I : I;
                    model_tensor_name_of(c, roles[j], l, e, mod, sizeof mod);
                    mod[strlen(mod) - strlen(".weight")] = '\0';
                    char *leaf = strrchr(mod, '.');   // "...experts.E.gate_proj" → "...experts.E.gate_up_proj"
                    if (gate_up) snprintf(leaf, sizeof mod - (size_t)(leaf - mod), ".gate_up_proj");
                    ADD(pa, 2, r, in, "base_model.model.%s.lora_A.weight", mod);
                    ADD(pb, 2, out, r, "base_model.model.%s.lora_B.weight", mod);
                    if (e == 0) lw->elora[j] = pa;
                }
            }
            if (m->lora.targets & LORA_ROUTER_BIT) {
                model_tensor_name_of(c, TENSOR_ROUTER, l, 0, mod, sizeof mod);
                mod[strlen(mod) - strlen(".weight")] = '\0';
                ADD(lw->router_lora[0], 2, r, C, "base_model.model.%s.lora_A.weight", mod);
                ADD(lw->router_lora[1], 2, E, r, "base_model.model.%s.lora_B.weight", mod);
            }
        }
    }
#undef ADD
    return 0;
}

static int is_base_param(const model *m, const model_param *p) {
    return strncmp(p->name, "base_model.", 11) != 0 || !m->has_lora;
}

static model *model_new(const model_config *cfg, backend *be, dtype act, const char *source,
                        char *err, size_t errlen) {
    if (cfg->mlp_bias) {
        set_err(err, errlen, "%s: mlp_bias is set; quarry supports Llama-family MLPs without biases", source);
        return NULL;
    }
    if (cfg->num_kv_heads < 1 || cfg->num_heads % cfg->num_kv_heads != 0 || cfg->head_dim % 2 != 0) {
        set_err(err, errlen, "%s: num_attention_heads %d must be a multiple of num_key_value_heads %d "
                "and head_dim %d even", source, cfg->num_heads, cfg->num_kv_heads, cfg->head_dim);
        return NULL;
    }
    if (cfg->n_experts > 0) {
        // Each expert matrix must end where the next begins (see the MoE kind above): I·C a
        // multiple of 32 elements keeps the 64-byte and 16-element roundings of the layout exact.
        char why[256];
        block_kinds k = block_kinds_of(cfg);
        if (moe_dims_check(&k.moe, why, sizeof why) != 0) {
            set_err(err, errlen, "%s: error: %s", source, why);
            return NULL;
        }
        if ((size_t)cfg->moe_intermediate_size * (size_t)cfg->hidden_size % 32 != 0) {
            set_err(err, errlen, "%s: moe_intermediate_size %d × hidden_size %d is not a multiple of 32, "
                    "which quarry's expert layout needs", source, cfg->moe_intermediate_size, cfg->hidden_size);
            return NULL;
        }
    }
    model *m = calloc(1, sizeof *m);
    if (!m) {
        set_err(err, errlen, "out of host memory");
        return NULL;
    }
    m->be = be;
    m->act_dtype = act;
    m->cfg = *cfg;
    m->kinds = block_kinds_of(cfg);
    for (int l = 0; l < cfg->num_layers; l++) m->n_moe_layers += model_config_layer_is_moe(cfg, l);
    m->aux_coef = model_config_aux_coef(cfg);
    snprintf(m->path, sizeof m->path, "%s", source);
    if (build_params(m, err, errlen) != 0) {
        model_free(m);
        return NULL;
    }
    return m;
}

model *model_open(const char *dir, backend *be, char *err, size_t errlen) {
    model_config cfg;
    if (model_config_load(&cfg, dir, err, errlen) != 0) return NULL;
    model *m = model_new(&cfg, be, be->act_dtype, dir, err, errlen);
    if (!m) return NULL;
    m->bnb4 = bnb4_detect(dir, &m->bnb4_double, err, errlen);
    if (m->bnb4 > 0 && m->n_moe_layers > 0) {
        set_err(err, errlen, "%s: 4-bit checkpoints of mixture-of-experts models (%s) are not read yet; load the "
                "16-bit checkpoint with --quantize nf4 (its experts are quantised the same way)", dir,
                m->cfg.architecture);
        model_free(m);
        return NULL;
    }
    m->st = m->bnb4 < 0 ? NULL : st_open(dir, err, errlen);
    if (!m->st || (m->bnb4 ? bnb4_check(&m->cfg, m->st, dir, m->bnb4_double, err, errlen)
                           : model_tensor_check(&m->cfg, m->st, dir, err, errlen)) != 0) {
        model_free(m);
        return NULL;
    }
    return m;
}

model *model_open_config(const model_config *cfg, dtype act, char *err, size_t errlen) {
    return model_new(cfg, NULL, act, cfg->architecture, err, errlen);
}

void model_free(model *m) {
    if (!m) return;
    backend *be = m->be;
    void *bufs[] = {m->buf_weights, m->buf_masters, m->buf_grads, m->buf_moments, m->buf_acts};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i] && be) be->free(be, bufs[i]);
    if (m->host_off && be) be->host_free(be, m->host_off);
    if (m->st) st_close(m->st);
    free(m->params);
    free(m->trained);
    free(m->layers);
    free(m->nf4q);
    free(m->mxq);
    free(m->segs);
    free(m->resid);
    free(m->acts);
    free(m->h_losses);
    free(m->dec_ids);
    free(m->moe_host);
    free(m->h_mask);
    free(m->elora_pairs);
    free(m->moe_ptrs);
    free(m);
}

const model_config *model_get_config(const model *m) { return &m->cfg; }
const lora_config *model_get_lora(const model *m) { return m->has_lora ? &m->lora : NULL; }
const char *model_error(const model *m) { return m->error; }

int model_set_aux_coef(model *m, double coef, char *err, size_t errlen) {
    if (m->n_moe_layers == 0) {
        set_err(err, errlen, "%s: --router-aux-loss-coef applies to mixture-of-experts models; %s has no MoE layer",
                m->path, m->cfg.architecture);
        return -1;
    }
    if (!(coef >= 0)) {
        set_err(err, errlen, "the router aux loss coefficient %g must be ≥ 0", coef);
        return -1;
    }
    m->aux_coef = coef;
    return 0;
}

double model_aux_coef(const model *m) { return m->aux_coef; }

int model_enable_lora(model *m, const lora_config *lc, char *err, size_t errlen) {
    if (m->allocated) {
        set_err(err, errlen, "LoRA must be enabled before the model's memory is allocated");
        return -1;
    }
    if (lora_config_check(lc, err, errlen) != 0) return -1;
    m->lora = *lc;
    char list[160];
    if (m->n_moe_layers == 0) {
        // Dense models: all-linear's experts mean nothing; naming experts or the router is an error.
        int all = (lc->targets & LORA_ALL_LINEAR) == LORA_ALL_LINEAR;
        if (lc->targets & LORA_ROUTER_BIT || (lc->targets & LORA_EXPERTS_BIT && !all)) {
            set_err(err, errlen, "%s: --lora-targets %s names %s, but %s has no mixture-of-experts layer\n"
                    "hint: use all-linear, attention or a list of q,k,v,o,gate,up,down", m->path,
                    lora_targets_format(lc->targets, list, sizeof list),
                    lc->targets & LORA_ROUTER_BIT ? "the MoE router" : "the MoE experts", m->cfg.architecture);
            return -1;
        }
        m->lora.targets &= ~LORA_EXPERTS_BIT;
    } else {
        // MoE models: q..o on every layer, gate/up/down on the dense MLPs of mlp_only layers
        // only, the experts' and the router's adapters on the sparse layers. gpt-oss: PEFT's
        // all-linear finds only the attention (its experts and router are nn.Parameters, not
        // nn.Linear); PEFT adapts those as target_parameters (mlp.experts.gate_up_proj,
        // mlp.experts.down_proj), so all-linear here is attention + experts, as on the other MoE
        // models; the router (target_parameters mlp.router.weight) only when named.
        int dense_mlp = m->n_moe_layers < m->cfg.num_layers;
        unsigned used = m->lora.targets & (LORA_ATTENTION | LORA_EXPERTS_BIT | LORA_ROUTER_BIT |
                                           (dense_mlp ? LORA_ALL_LINEAR & ~LORA_ATTENTION & ~LORA_EXPERTS_BIT : 0));
        if (!used) {
            set_err(err, errlen, "%s: --lora-targets %s adapts no layer of %s: its MLPs are mixtures of experts\n"
                    "hint: use experts, attention, all-linear or a list with q,k,v,o,experts,router", m->path,
                    lora_targets_format(lc->targets, list, sizeof list), m->cfg.architecture);
            return -1;
        }
    }
    m->has_lora = 1;
    m->lora_s = lora_scale(lc);
    m->planned = 0;
    return build_params(m, err, errlen);
}

// Which tensors are trained under the mode.
static void mark_trained(model *m) {
    m->ntrained = 0;
    for (int i = 0; i < m->nparams; i++) {
        model_param *p = &m->params[i];
        int lora = !is_base_param(m, p);
        p->trained = (m->opt.train == MODEL_TRAIN_FULL && !lora) ||
                     (m->opt.train == MODEL_TRAIN_LORA && lora);
        if (p->trained) m->trained[m->ntrained++] = p;
    }
}

// Which tensors are held in NF4 under the options: every decoder linear weight (the linear
// layers read them through ll->q) and each expert's gate, up and down matrix (moe_weights_of);
// the router stays in the act dtype, as transformers 5's BitsAndBytesConfig leaves it.
static void mark_nf4(model *m) {
    for (int i = 0; i < m->nparams; i++) m->params[i].nf4 = 0;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            linear_layer *ll = &m->layers[l].lin[t];
            ll->q = NULL;
            if (!ll->w || m->opt.quant == MODEL_QUANT_NONE) continue;
            ll->w->nf4 = 1;
            ll->q = &m->nf4q[ll->w - m->params];
        }
        for (int j = 0; j < 3 && m->layers[l].mlp == MLP_SPARSE_MOE && m->opt.quant != MODEL_QUANT_NONE; j++)
            for (int e = 0; e < m->cfg.n_experts; e++) m->layers[l].experts[j][e].nf4 = 1;
    }
}

// With experts_mxfp4 every MoE layer's expert matrices stay in MXFP4 (the router and the expert
// biases are not packed in gpt-oss checkpoints: act dtype).
static void mark_mxfp4(model *m) {
    for (int i = 0; i < m->nparams; i++) m->params[i].mxfp4 = 0;
    for (int l = 0; l < m->cfg.num_layers && m->opt.experts_mxfp4; l++)
        for (int j = 0; j < 3 && m->layers[l].mlp == MLP_SPARSE_MOE; j++)
            for (int e = 0; e < m->cfg.n_experts; e++) m->layers[l].experts[j][e].mxfp4 = 1;
}

// Expert projection j's MXFP4 tensors (expert e's at [e]) when kept packed, else NULL.
static const mxfp4_tensor *experts_mxfp4(const model *m, const model_param *p0) {
    return p0->mxfp4 ? &m->mxq[p0 - m->params] : NULL;
}

// Expert projection j's NF4 tensors (expert e's at [e]) when the experts are quantised, else NULL.
static const nf4_tensor *experts_nf4(const model *m, const model_param *p0) {
    return p0->nf4 ? &m->nf4q[p0 - m->params] : NULL;
}

const char *model_quant_name(model_quant q) {
    return q == MODEL_QUANT_NF4 ? "nf4" : q == MODEL_QUANT_NF4_PLAIN ? "nf4 (plain absmax)" : "none";
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

// This rank's shard of n elements: dist_shard's split (trainer/dist.h).
static void shard_range(size_t n, int world, int rank, size_t *off, size_t *len) {
    size_t q = n / (size_t)world;
    *off = q * (size_t)rank;
    *len = rank == world - 1 ? n - *off : q;
}

// Lays out the parameter buffers; with NULL bases only measures. Frozen tensors: an act copy in
// the weights. Trained ones, segment by segment (model_segment): act copies in one flat region
// (in the masters buffer when the act dtype is f32, where they are the masters), then the owned
// masters, gradients (whole, or with shard_grads: the last segment whole, two layer slots and
// the owned accumulators) and moments.
static void layout_params(model *m, arena *w, arena *ms, arena *g, arena *mo) {
    const model_options *o = &m->opt;
    int f32 = m->act_dtype == DTYPE_F32, L = m->cfg.num_layers;
    int world = o->shard_world > 1 ? o->shard_world : 1, rank = world > 1 ? o->shard_rank : 0;
    int staged = world > 1 && o->shard_grads;
    size_t as = act_size(m);
    for (int i = 0; i < m->nparams; i++) {
        model_param *p = &m->params[i];
        p->master = p->grad = p->grad_own = p->m = p->v = NULL;
        p->seg_off = p->own_begin = p->own_len = 0;
        if (!p->trained) p->act = p->nf4 || p->mxfp4 ? NULL : arena_take(w, p->n * as);
    }
    // NF4 tensors: codes, then absmax (f32) or its 8-bit codes and the nested f32 absmax.
    size_t nf4_from = w->off;
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i].nf4) continue;
        nf4_tensor *q = &m->nf4q[i];
        size_t n = m->params[i].n;
        memset(q, 0, sizeof *q);
        q->packed_bytes = nf4_packed_bytes(n);
        q->packed = arena_take(w, q->packed_bytes);
        if (o->quant == MODEL_QUANT_NF4) {
            q->n_qabsmax = nf4_n_blocks(n);
            q->qabsmax = arena_take(w, q->n_qabsmax);
            q->n_nested = nf4_n_nested(n);
            q->nested_absmax = arena_take(w, q->n_nested * 4);
        } else {
            q->n_absmax = nf4_n_blocks(n);
            q->absmax = arena_take(w, q->n_absmax * 4);
        }
    }
    m->nf4_bytes = w->off - nf4_from;
    // MXFP4 experts: each matrix's blocks (n/2 bytes) then its scales (n/32).
    size_t mx_from = w->off;
    for (int i = 0; i < m->nparams; i++) {
        if (!m->params[i].mxfp4) continue;
        size_t n = m->params[i].n;
        m->mxq[i].blocks = arena_take(w, mxfp4_block_bytes(n));
        m->mxq[i].scales = arena_take(w, mxfp4_scale_bytes(n));
    }
    m->mx_bytes = w->off - mx_from;
    for (int s = 0; s < m->nsegs; s++) {
        model_segment *sg = &m->segs[s];
        memset(sg, 0, sizeof *sg);
        // A layer's grouped LoRA A's first, back to back in target order (is_grouped_lora_a):
        // the grouped op reads a group's as one (G·r, IC) matrix and its gradient likewise.
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < m->ntrained; i++) {
                model_param *p = m->trained[i];
                if (p->segment != s || is_grouped_lora_a(m, p) != (pass == 0)) continue;
                p->seg_off = sg->n;
                sg->n += round16(p->n);
            }
        shard_range(sg->n, world, rank, &sg->own_off, &sg->own_len);
        for (int i = 0; i < m->ntrained; i++) {
            model_param *p = m->trained[i];
            if (p->segment != s) continue;
            size_t lo = p->seg_off > sg->own_off ? p->seg_off : sg->own_off;
            size_t hi = p->seg_off + p->n < sg->own_off + sg->own_len ? p->seg_off + p->n : sg->own_off + sg->own_len;
            p->own_begin = lo < hi ? lo - p->seg_off : 0;
            p->own_len = lo < hi ? hi - lo : 0;
        }
    }
    // A layer's staging slot must hold any layer: they all have the same tensors.
    size_t slot_n = 0;
    float *slots[2] = {NULL, NULL};
    if (staged) {
        for (int s = 0; s < L; s++) slot_n = m->segs[s].n > slot_n ? m->segs[s].n : slot_n;
        if (slot_n) {
            slots[0] = arena_take(g, slot_n * 4);
            slots[1] = arena_take(g, slot_n * 4);
        }
    }
    for (int s = 0; s < m->nsegs; s++) {
        model_segment *sg = &m->segs[s];
        if (!sg->n) continue;
        sg->act = arena_take(f32 ? ms : w, sg->n * as);
        float *own_master = !f32 ? arena_take(ms, sg->own_len * 4) : sg->act ? (float *)sg->act + sg->own_off : NULL;
        if (staged && s < L) sg->grad = slots[s % 2];
        else sg->grad = arena_take(g, sg->n * 4);
        sg->grad_own = staged ? arena_take(g, sg->own_len * 4) : (sg->grad ? sg->grad + sg->own_off : NULL);
        float *own_m = arena_take(mo, sg->own_len * 4), *own_v = arena_take(mo, sg->own_len * 4);
        for (int i = 0; i < m->ntrained; i++) {
            model_param *p = m->trained[i];
            if (p->segment != s) continue;
            p->act = sg->act ? (char *)sg->act + p->seg_off * as : NULL;
            p->grad = sg->grad ? sg->grad + p->seg_off : NULL;
            if (!own_master || !p->own_len) continue;   // measuring, or nothing of it is this rank's
            size_t k = p->seg_off + p->own_begin - sg->own_off;   // index in the owned arrays
            p->master = own_master + k;
            p->grad_own = sg->grad_own + k;
            p->m = own_m + k;
            p->v = own_v + k;
        }
    }
    m->inv_freq = arena_take(w, (size_t)m->cfg.head_dim / 2 * 4);
    m->sinks_f32 = m->kinds.attn.sinks ? arena_take(w, (size_t)m->cfg.num_heads * 4) : NULL;
}

static int max_lin_in(const model_config *c) {
    int q = c->num_heads * c->head_dim;
    int a = c->hidden_size > q ? c->hidden_size : q;
    return a > c->intermediate_size ? a : c->intermediate_size;
}

static void layout_acts(model *m, arena *a) {
    const model_config *c = &m->cfg;
    size_t N = (size_t)m->opt.batch_size * (size_t)m->opt.seq_len, as = act_size(m);
    size_t C = (size_t)c->hidden_size, Q = (size_t)c->num_heads * (size_t)c->head_dim;
    size_t K = (size_t)c->num_kv_heads * (size_t)c->head_dim, F = (size_t)c->intermediate_size;
    size_t V = (size_t)c->vocab_size, r = m->has_lora ? (size_t)m->lora.rank : 0;
    int train = m->opt.train != MODEL_TRAIN_NONE, L = c->num_layers;
    int full = train && m->opt.checkpoint == MODEL_RECOMPUTE_FULL;
    int selective = train && m->opt.checkpoint == MODEL_RECOMPUTE_SELECTIVE;
    int nsets = train && !full ? L : 1;
    // Offload: S slots, each a contiguous region [resid, set] (resid only with recompute full,
    // whose one set is shared); layer l's in slot l % S. Layers 0..L−S move to the host.
    int S = MODEL_OFFLOAD_SLOTS, off = train && m->opt.offload && L >= S;
    int carve = off && nsets == L ? S : nsets;
    m->off_layers = off ? L - S + 1 : 0;
    m->off_bytes = 0;
    // Without training each layer keeps its own k and v: the KV cache of greedy decoding.
    m->kv_per_layer = !full && !off;
    m->d_ids = arena_take(a, N * 4);
    m->d_targets = arena_take(a, N * 4);
    m->d_pos = arena_take(a, N * 4);
    m->d_doc = arena_take(a, N * 4);
    if (!off)
        for (int l = 0; l <= L; l++) m->resid[l] = arena_take(a, N * C * as);
    else if (nsets != L)
        for (int s = 0; s < S; s++) {
            m->off_start[s] = a->off;
            m->off_slot[s] = m->resid[s] = arena_take(a, N * C * as);
            if (s == 0) m->off_bytes = a->off - m->off_start[0];
        }
    // Selective: ln1 and ln2 are never live together (ln2 is written after q, k, v consumed
    // ln1; the backward recomputes each just before its use), so one (N, C) buffer holds
    // either; act (N, F) is the other. All layers share the two.
    int dense_any = 0, moe_any = 0;
    for (int l = 0; l < L; l++) {
        dense_any |= m->layers[l].mlp == MLP_DENSE_SWIGLU;
        moe_any |= m->layers[l].mlp == MLP_SPARSE_MOE;
    }
    // MLP chunks: gate, up and act hold one chunk, shared by all layers (the backward computes
    // gate and up again).
    int chunked = train && m->mlp_rows > 0 && dense_any;
    size_t NF = (chunked ? (size_t)m->mlp_rows : N) * F;
    void *shared_ln = selective ? arena_take(a, N * C * as) : NULL;
    void *shared_act = (selective || chunked) && dense_any ? arena_take(a, NF * as) : NULL;
    void *shared_gate = chunked ? arena_take(a, NF * as) : NULL, *shared_up = chunked ? arena_take(a, NF * as) : NULL;
    // Sparse MoE: the routing's host memory (offsets per set, the sort's scratch) in moe_host.
    moe_sizes ms = {0};
    arena host = {m->moe_host, 0};
    if (moe_any) moe_block_sizes(&m->kinds.moe, (int)N, m->act_dtype, &ms);
    for (int s = 0; s < carve; s++) {
        layer_acts *x = &m->acts[s];
        if (off && nsets == L) {
            m->off_start[s] = a->off;
            m->off_slot[s] = m->resid[s] = arena_take(a, N * C * as);
        }
        // A set serves its own layer, or every layer when shared.
        int dense = nsets == L ? m->layers[s].mlp == MLP_DENSE_SWIGLU : dense_any;
        int sparse = nsets == L ? m->layers[s].mlp == MLP_SPARSE_MOE : moe_any;
        memset(&x->moe, 0, sizeof x->moe);
        if (sparse) {
            void *dev = arena_take(a, ms.saved_device), *h = arena_take(&host, ms.saved_host);
            moe_saved_carve(&m->kinds.moe, (int)N, m->act_dtype, dev, h, &x->moe);
        }
        x->ln1 = selective ? shared_ln : arena_take(a, N * C * as);
        x->q = arena_take(a, N * Q * as);
        x->k = arena_take(a, N * K * as);
        x->v = arena_take(a, N * K * as);
        x->att = arena_take(a, N * Q * as);
        x->mid = arena_take(a, N * C * as);
        x->ln2 = selective ? shared_ln : arena_take(a, N * C * as);
        x->gate = !dense ? NULL : chunked ? shared_gate : arena_take(a, N * F * as);
        x->up = !dense ? NULL : chunked ? shared_up : arena_take(a, N * F * as);
        x->act = !dense ? NULL : selective || chunked ? shared_act : arena_take(a, N * F * as);
        x->rstd1 = arena_take(a, N * 4);
        x->rstd2 = arena_take(a, N * 4);
        x->lse = arena_take(a, N * (size_t)c->num_heads * 4);
        if (m->kinds.attn.qk_norm) {
            x->q_raw = arena_take(a, N * Q * as);
            x->k_raw = arena_take(a, N * K * as);
            x->rstd_q = arena_take(a, N * (size_t)c->num_heads * 4);
            x->rstd_k = arena_take(a, N * (size_t)c->num_kv_heads * 4);
        }
        unsigned tg = m->has_lora ? m->lora.targets : 0;
        for (int t = 0; t < LORA_NUM_TARGETS;) {
            int G = lora_group_size(t);
            unsigned bits = G ? ((1u << G) - 1u) << t : 0;
            if (G && (tg & bits) == bits) {   // a fully adapted group: one (N, G·r) block for its grouped op
                char *blk = arena_take(a, N * (size_t)G * r * as);
                for (int g = 0; g < G; g++) x->lora_h[t + g] = blk ? blk + (size_t)g * N * r * as : NULL;
                t += G;
            } else {
                x->lora_h[t] = tg & (1u << t) ? arena_take(a, N * r * as) : NULL;
                t++;
            }
        }
        for (int j = 0; j < MOE_LORA_SLOTS; j++) {
            unsigned bit = j == MOE_LORA_ROUTER ? LORA_ROUTER_BIT : LORA_EXPERTS_BIT;
            size_t rows = j == MOE_LORA_ROUTER ? N : N * (size_t)c->top_k;
            int unused = c->experts_fused && j == MOE_LORA_UP;   // gate and up share h (moe_lora.gate_up)
            x->elora_h[j] = sparse && m->has_lora && (m->lora.targets & bit) && !unused ? arena_take(a, rows * r * as)
                                                                                      : NULL;
        }
        if (off && nsets == L && s == 0) m->off_bytes = a->off - m->off_start[0];   // every slot alike
    }
    if (off)
        for (int l = S; l <= L; l++) m->resid[l] = m->resid[l % S];
    for (int s = carve; s < L; s++) {
        m->acts[s] = m->acts[off && nsets == L ? s % S : 0];
        if (m->kv_per_layer) {
            m->acts[s].k = arena_take(a, N * K * as);
            m->acts[s].v = arena_take(a, N * K * as);
        }
    }
    memset(&m->moe_t, 0, sizeof m->moe_t);
    m->d_prob_sum = m->d_count = m->d_dprob = NULL;
    m->d_mask = NULL;
    if (moe_any) {
        void *dev = arena_take(a, ms.scratch_device), *h = arena_take(&host, ms.scratch_host);
        moe_scratch_carve(&m->kinds.moe, (int)N, m->act_dtype, dev, h, &m->moe_t);
        m->d_prob_sum = arena_take(a, (size_t)c->n_experts * 4);
        m->d_count = arena_take(a, (size_t)c->n_experts * 4);
        m->d_dprob = arena_take(a, (size_t)c->n_experts * 4);
        m->d_mask = arena_take(a, N * 4);
    }
    m->moe_host_bytes = host.off;
    // LoRA inside the MoE blocks: the scratch every sparse layer shares (see struct model).
    int lora_in_moe = moe_any && m->has_lora && (m->lora.targets & (LORA_EXPERTS_BIT | LORA_ROUTER_BIT));
    size_t Mk = N * (size_t)(c->top_k > 0 ? c->top_k : 1);
    size_t ein = (size_t)(c->moe_intermediate_size > c->hidden_size ? c->moe_intermediate_size : c->hidden_size);
    int moe_drop = lora_in_moe && m->lora.dropout > 0.0f && !c->experts_fused;   // gpt-oss: none (moe_weights_of)
    m->elora_dh = lora_in_moe && train ? arena_take(a, Mk * r * as) : NULL;
    m->elora_xdrop = moe_drop ? arena_take(a, Mk * ein * as) : NULL;
    m->elora_dxdrop = moe_drop && train ? arena_take(a, Mk * ein * as) : NULL;
    // NF4 linears on a bf16 device (cuda) dequantise the whole weight into this workspace before
    // the GEMM; the f32 cpu backend dequantises 256 rows at a time into its own scratch.
    size_t ws = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].nf4 && m->params[i].n > ws) ws = m->params[i].n;
    m->nf4_ws_bytes = m->act_dtype != DTYPE_F32 ? round64(ws * as) : 0;
    m->nf4_ws = m->nf4_ws_bytes ? arena_take(a, ws * as) : NULL;
    // MXFP4 experts on every backend: one expert matrix dequantised before its GEMM.
    size_t mws = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].mxfp4 && m->params[i].n > mws) mws = m->params[i].n;
    m->mx_ws_bytes = mws ? round64(mws * as) : 0;
    m->mx_ws = mws ? arena_take(a, mws * as) : NULL;
    m->lnf = arena_take(a, N * C * as);
    m->rstdf = arena_take(a, N * 4);
    m->losses = arena_take(a, N * 4);
    m->logits_act = arena_take(a, V * as);
    m->logits_f32 = arena_take(a, V * 4);
    int dropout = m->has_lora && m->lora.dropout > 0.0f;
    size_t in = (size_t)max_lin_in(c);
    m->xdrop = dropout ? arena_take(a, N * in * as) : NULL;
    if (train) {
        m->dres = arena_take(a, N * C * as);
        m->dln = arena_take(a, N * C * as);
        m->dq = arena_take(a, N * Q * as);
        m->dk = arena_take(a, N * K * as);
        m->dv = arena_take(a, N * K * as);
        m->datt = arena_take(a, N * Q * as);
        m->dgate = dense_any ? arena_take(a, NF * as) : NULL;
        m->dup = dense_any ? arena_take(a, NF * as) : NULL;
        m->dact = dense_any ? arena_take(a, NF * as) : NULL;
        m->dlh = r ? arena_take(a, N * 3 * r * as) : NULL;   // (N, G·r), G ≤ 3: a group's dh
        m->dxdrop = dropout ? arena_take(a, N * in * as) : NULL;
    }
}

// Why the experts cannot stay in MXFP4 under these options, or 0.  The packed matrices are frozen
// and exactly the checkpoint's (no quantiser: a 16-bit checkpoint's experts are not turned into
// MXFP4), and the op dequantises 32-value blocks along the input axis.
static int experts_mxfp4_refusal(const model *m, const model_options *opt, model_quant quant, char *err,
                                 size_t errlen) {
    const model_config *c = &m->cfg;
    if (!c->experts_fused || m->n_moe_layers == 0) {
        set_err(err, errlen, "%s: --experts-dtype mxfp4 is for gpt-oss's MXFP4 experts; %s has none", m->path,
                c->architecture);
        return -1;
    }
    if (opt->train == MODEL_TRAIN_FULL) {
        set_err(err, errlen, "%s: MXFP4 experts are frozen: full fine-tuning trains them in bf16; use "
                "--experts-dtype bf16 with --method full, or --method lora", m->path);
        return -1;
    }
    if (quant != MODEL_QUANT_NONE) {
        set_err(err, errlen, "%s: --quantize nf4 and --experts-dtype mxfp4 both hold the experts; drop one", m->path);
        return -1;
    }
    if (c->hidden_size % MXFP4_BLOCK || c->moe_intermediate_size % MXFP4_BLOCK) {
        set_err(err, errlen, "%s: hidden %d and expert intermediate %d must be multiples of %d for MXFP4 experts; "
                "use --experts-dtype bf16", m->path, c->hidden_size, c->moe_intermediate_size, MXFP4_BLOCK);
        return -1;
    }
    if (m->st && !mxfp4_checkpoint(m->path)) {
        set_err(err, errlen, "%s: the checkpoint's experts are not MXFP4 (config.json has no quantization_config "
                "with quant_method mxfp4); use --experts-dtype bf16", m->path);
        return -1;
    }
    return 0;
}

int model_plan(model *m, const model_options *opt, model_memory *plan, char *err, size_t errlen) {
    if (m->allocated) {
        set_err(err, errlen, "the model's memory is already allocated");
        return -1;
    }
    if (opt->batch_size < 1 || opt->seq_len < 1) {
        set_err(err, errlen, "batch size %d and sequence length %d must be at least 1",
                opt->batch_size, opt->seq_len);
        return -1;
    }
    if (opt->train == MODEL_TRAIN_LORA && !m->has_lora) {
        set_err(err, errlen, "LoRA training needs adapters: call model_enable_lora first");
        return -1;
    }
    int window = m->kinds.attn.window;
    if (window > 0 && opt->seq_len > window) {
        set_err(err, errlen, "%s: sequence length %d exceeds the model's sliding_window %d, which "
                "quarry does not implement; use --max-seq-len %d or less", m->path, opt->seq_len,
                window, window);
        return -1;
    }
    if ((size_t)opt->batch_size * (size_t)opt->seq_len > (size_t)INT32_MAX / 4) {
        set_err(err, errlen, "batch %d × sequence %d tokens is too large", opt->batch_size, opt->seq_len);
        return -1;
    }
    if (opt->shard_world > 1 && (opt->shard_rank < 0 || opt->shard_rank >= opt->shard_world)) {
        set_err(err, errlen, "shard rank %d is outside a world of %d", opt->shard_rank, opt->shard_world);
        return -1;
    }
    // A 4-bit checkpoint loads in its own layout whatever the options say.
    model_quant quant = !m->bnb4 ? opt->quant : m->bnb4_double ? MODEL_QUANT_NF4 : MODEL_QUANT_NF4_PLAIN;
    if (m->bnb4 && opt->quant != MODEL_QUANT_NONE && opt->quant != quant) {
        set_err(err, errlen, "%s: the checkpoint is already 4-bit NF4 %s double quantisation; %s", m->path,
                m->bnb4_double ? "with" : "without",
                m->bnb4_double ? "drop --no-double-quant" : "add --no-double-quant, or drop --quantize (a 4-bit "
                "checkpoint loads in its own layout)");
        return -1;
    }
    if (quant != MODEL_QUANT_NONE && opt->train == MODEL_TRAIN_FULL) {
        set_err(err, errlen, "%s: a 4-bit NF4 base is frozen: --quantize nf4 trains LoRA adapters (QLoRA), not all "
                "weights; use --method lora, or drop --quantize for --method full", m->path);
        return -1;
    }
    if (opt->experts_mxfp4 && experts_mxfp4_refusal(m, opt, quant, err, errlen) != 0) return -1;
    int train = opt->train != MODEL_TRAIN_NONE;
    size_t N = (size_t)opt->batch_size * (size_t)opt->seq_len;
    if (opt->mlp_chunk < 0) {
        set_err(err, errlen, "the MLP chunk of %d rows must be at least 1 (0: none)", opt->mlp_chunk);
        return -1;
    }
    int chunk = train && opt->mlp_chunk > 0 && (size_t)opt->mlp_chunk < N ? opt->mlp_chunk : 0;
    if (train && opt->offload && m->n_moe_layers > 0) {
        set_err(err, errlen, "%s: --offload-activations is not implemented for mixture-of-experts models (%s) yet; "
                "use --offload-activations off", m->path, m->cfg.architecture);
        return -1;
    }
    if (chunk && m->has_lora && m->lora.dropout > 0.0f) {
        set_err(err, errlen, "the MLP in chunks of %d rows cannot keep LoRA dropout's masks (numbered over the "
                "whole tensor); use --lora-dropout 0 or no MLP chunks", chunk);
        return -1;
    }
    if (chunk && m->cfg.num_layers > 0 && m->layers[0].lin[LORA_GATE].b) {
        set_err(err, errlen, "%s: the MLP in chunks is not implemented with MLP biases", m->path);
        return -1;
    }
    m->opt = *opt;
    m->opt.quant = quant;
    m->opt.offload = train && opt->offload;
    m->opt.mlp_chunk = chunk;
    m->mlp_rows = chunk;
    mark_trained(m);
    free(m->nf4q);
    m->nf4q = calloc((size_t)m->nparams, sizeof *m->nf4q);
    if (!m->nf4q) {
        set_err(err, errlen, "out of host memory");
        return -1;
    }
    mark_nf4(m);
    free(m->mxq);
    m->mxq = calloc((size_t)m->nparams, sizeof *m->mxq);
    if (!m->mxq) {
        set_err(err, errlen, "out of host memory");
        return -1;
    }
    mark_mxfp4(m);
    free(m->resid);
    free(m->acts);
    m->resid = calloc((size_t)m->cfg.num_layers + 1, sizeof *m->resid);
    m->acts = calloc((size_t)m->cfg.num_layers, sizeof *m->acts);
    free(m->segs);
    m->nsegs = opt->train != MODEL_TRAIN_NONE ? m->cfg.num_layers + 1 : 0;
    m->segs = calloc((size_t)m->cfg.num_layers + 1, sizeof *m->segs);
    if (!m->resid || !m->acts || !m->segs) {
        set_err(err, errlen, "out of host memory");
        return -1;
    }
    arena w = {0}, ms = {0}, g = {0}, mo = {0}, a = {0};
    layout_params(m, &w, &ms, &g, &mo);
    layout_acts(m, &a);
    model_memory *p = &m->plan;
    memset(p, 0, sizeof *p);
    p->weights = w.off;
    p->masters = ms.off;
    p->grads = g.off;
    p->moments = mo.off;
    p->activations = a.off;
    p->nf4 = m->nf4_bytes;
    p->nf4_workspace = m->nf4_ws_bytes;
    p->mxfp4 = m->mx_bytes;
    p->mxfp4_workspace = m->mx_ws_bytes;
    p->experts_mxfp4 = m->opt.experts_mxfp4;
    p->quant = quant;
    p->total = w.off + ms.off + g.off + mo.off + a.off;
    p->offload = m->off_layers > 0;
    p->offload_layer = m->off_bytes;
    p->host_pinned = (size_t)m->off_layers * m->off_bytes;
    p->mlp_chunk = m->mlp_rows;
    for (int i = 0; i < m->nparams; i++) {
        if (is_base_param(m, &m->params[i])) p->params_total += m->params[i].n;
        if (m->params[i].trained) p->params_trained += m->params[i].n;
        if (m->params[i].trained && !is_base_param(m, &m->params[i]) && strstr(m->params[i].name, ".experts."))
            p->params_trained_experts += m->params[i].n;
    }
    p->batch_size = opt->batch_size;
    p->seq_len = opt->seq_len;
    p->checkpoint = opt->checkpoint;
    p->shard_world = opt->shard_world > 1 ? opt->shard_world : 1;
    p->shard_grads = p->shard_world > 1 && opt->shard_grads;
    p->train = opt->train;
    p->act_dtype = m->act_dtype;
    if (m->be)
        snprintf(p->backend_name, sizeof p->backend_name, "%s", m->be->name);
    else
        snprintf(p->backend_name, sizeof p->backend_name, "a %s device", dtype_name(m->act_dtype));
    m->planned = 1;
    if (plan) *plan = *p;
    return 0;
}

static void print_bytes(FILE *f, const char *what, size_t bytes, const char *note) {
    double v = (double)bytes;
    const char *unit = "B";
    if (v >= 1024.0 * 1024 * 1024) { v /= 1024.0 * 1024 * 1024; unit = "GiB"; }
    else if (v >= 1024.0 * 1024) { v /= 1024.0 * 1024; unit = "MiB"; }
    else if (v >= 1024.0) { v /= 1024.0; unit = "KiB"; }
    fprintf(f, "  %-14s %9.2f %-3s  %s\n", what, v, unit, note);
}

const char *model_recompute_name(model_recompute r) {
    return r == MODEL_RECOMPUTE_FULL ? "full" : r == MODEL_RECOMPUTE_SELECTIVE ? "selective" : "none";
}

int model_recompute_parse(const char *s, model_recompute *out) {
    static const model_recompute all[] = {MODEL_RECOMPUTE_NONE, MODEL_RECOMPUTE_SELECTIVE, MODEL_RECOMPUTE_FULL};
    for (int i = 0; i < 3; i++)
        if (s && strcmp(s, model_recompute_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return -1;
}

void model_memory_print(const model_memory *p, FILE *f) {
    static const char *modes[] = {"forward only", "full fine-tuning", "LoRA"};
    char note[160], total[32], trained[32];
    size_t counts[2] = {p->params_total, p->params_trained};
    char *bufs[2] = {total, trained};
    for (int i = 0; i < 2; i++) {
        double c = (double)counts[i];
        if (c >= 1e9) snprintf(bufs[i], 32, "%.2fB", c / 1e9);
        else if (c >= 1e6) snprintf(bufs[i], 32, "%.2fM", c / 1e6);
        else snprintf(bufs[i], 32, "%.1fK", c / 1e3);
    }
    fprintf(f, "memory plan on %s (%s, %s activations): %s parameters, %s trained\n", p->backend_name,
            p->quant != MODEL_QUANT_NONE && p->train == MODEL_TRAIN_LORA ? "QLoRA" : modes[p->train],
            dtype_name(p->act_dtype), total, trained);
    snprintf(note, sizeof note, "%s weights the forward reads", dtype_name(p->act_dtype));
    print_bytes(f, "weights", p->weights, note);
    if (p->quant != MODEL_QUANT_NONE) {
        snprintf(note, sizeof note, "of the weights: 4-bit codes + %s of the frozen linears",
                 p->quant == MODEL_QUANT_NF4 ? "8-bit absmax + nested f32 absmax (double quant)" : "f32 absmax");
        print_bytes(f, "  NF4", p->nf4, note);
    }
    if (p->experts_mxfp4)
        print_bytes(f, "  MXFP4", p->mxfp4, "of the weights: the experts as the checkpoint packs them (4.25 bits a weight)");
    char shard[96] = "";
    if (p->shard_world > 1) snprintf(shard, sizeof shard, ", this rank's 1/%d (ZeRO)", p->shard_world);
    snprintf(note, sizeof note, "trained tensors%s", p->act_dtype == DTYPE_F32 ? ", whole: the forward reads them" : shard);
    print_bytes(f, "f32 masters", p->masters, note);
    if (p->shard_grads) snprintf(note, sizeof note, "f32, two layers whole, this rank's 1/%d summed (ZeRO-2)", p->shard_world);
    else snprintf(note, sizeof note, "f32");
    print_bytes(f, "gradients", p->grads, note);
    snprintf(note, sizeof note, "f32%s", shard);
    print_bytes(f, "AdamW m, v", p->moments, note);
    static const char *recompute[] = {"none: every layer kept", "full: layers rerun in the backward",
                                      "selective: norms and SwiGLU recomputed"};
    int rc = p->checkpoint >= 0 && p->checkpoint <= 2 ? p->checkpoint : 0;
    snprintf(note, sizeof note, "batch %d × %d tokens, recompute %s", p->batch_size, p->seq_len,
             p->train == MODEL_TRAIN_NONE ? "none: forward only" : recompute[rc]);
    print_bytes(f, "activations", p->activations, note);
    if (p->mlp_chunk)
        fprintf(f, "  %-14s the MLP in chunks of %d rows: gate, up and SwiGLU for one chunk (gate and up computed "
                "again in the backward)\n", "", p->mlp_chunk);
    if (p->offload) {
        snprintf(note, sizeof note, "offloaded activations, %zu layers × %.2f MiB (%d on the device); not in the total",
                 p->offload_layer ? p->host_pinned / p->offload_layer : 0, p->offload_layer / 1048576.0,
                 (int)MODEL_OFFLOAD_SLOTS);
        print_bytes(f, "pinned host", p->host_pinned, note);
    }
    if (p->nf4_workspace)
        print_bytes(f, "  NF4 workspace", p->nf4_workspace, "of the activations: the largest linear dequantised");
    if (p->mxfp4_workspace)
        print_bytes(f, "  MXFP4 workspace", p->mxfp4_workspace, "of the activations: one expert matrix dequantised");
    print_bytes(f, "total", p->total, "");
    if (p->params_trained_experts) {
        // Expert adapters: layers × experts × 3 pairs, each costing its f32 master, gradient
        // and moments (and an act copy): the count a MoE LoRA plan is dominated by.
        char ex[32];
        double c = (double)p->params_trained_experts;
        snprintf(ex, sizeof ex, c >= 1e6 ? "%.2fM" : "%.1fK", c >= 1e6 ? c / 1e6 : c / 1e3);
        double mib = (double)(p->masters + p->grads + p->moments) / 1048576.0;
        fprintf(f, "  trained %s parameters, of which expert adapters %s (%.1f%%): %.2f %s in masters, "
                "gradients and moments\n", trained, ex, 100.0 * c / (double)(p->params_trained ? p->params_trained : 1),
                mib >= 1024 ? mib / 1024 : mib, mib >= 1024 ? "GiB" : "MiB");
    }
}

static void *alloc_buf(model *m, size_t bytes, const char *what, char *err, size_t errlen) {
    if (!bytes) return NULL;
    void *p = m->be->alloc(m->be, bytes);
    if (!p) set_err(err, errlen, "allocating %s (%zu bytes) on %s failed: %s", what, bytes,
                    m->be->name, m->be->error);
    return p;
}

// Host f32 → the parameter's act copy and owned master, through a device staging buffer (f32
// (n), unused when the act dtype is f32: there the master is the act copy).
static void upload(model *m, model_param *p, const float *host, float *staging) {
    backend *be = m->be;
    if (be->act_dtype == DTYPE_F32) {
        be->copy_to_device(be, p->act, host, p->n * 4);
        return;
    }
    be->copy_to_device(be, staging, host, p->n * 4);
    be->cast_f32_to_act(be, p->act, staging, p->n);
    if (p->trained && p->own_len) be->copy(be, p->master, staging + p->own_begin, p->own_len * 4);
}

// Host NF4 h → the device buffers of d (laid out by layout_params for the same length and kind).
static void copy_nf4(model *m, nf4_tensor *d, const nf4_tensor *h) {
    backend *be = m->be;
    be->copy_to_device(be, d->packed, h->packed, d->packed_bytes);
    if (d->qabsmax) {
        be->copy_to_device(be, d->qabsmax, h->qabsmax, d->n_qabsmax);
        be->copy_to_device(be, d->nested_absmax, h->nested_absmax, d->n_nested * 4);
        d->offset = h->offset;   // a host field of the struct the ops read
    } else {
        be->copy_to_device(be, d->absmax, h->absmax, d->n_absmax * 4);
    }
}

// Host f32 (n) → the NF4 tensor d (device buffers laid out by layout_params), quantised on the
// host into h (buffers for the largest weight) as bitsandbytes' quantize_4bit. 0, or -1 + why.
static int upload_nf4(model *m, nf4_tensor *d, nf4_tensor *h, const float *host, size_t n, char *why,
                      size_t whylen) {
    nf4_tensor t = *h;
    t.packed_bytes = d->packed_bytes;
    t.n_absmax = d->n_absmax;
    t.n_qabsmax = d->n_qabsmax;
    t.n_nested = d->n_nested;
    if (!d->qabsmax) t.qabsmax = NULL, t.nested_absmax = NULL;
    else t.absmax = NULL;
    if (nf4_quantize(&t, host, DTYPE_F32, n, why, whylen) != 0) return -1;
    copy_nf4(m, d, &t);
    return 0;
}

// Each expert's matrices must follow the previous expert's (the stacks model/moe reads).
static int check_expert_layout(const model *m, char *err, size_t errlen) {
    size_t as = act_size(m);
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const layer_weights *lw = &m->layers[l];
        if (lw->mlp != MLP_SPARSE_MOE) continue;
        for (int j = 0; j < 3; j++)
            for (int e = 1; e < m->cfg.n_experts; e++) {
                const model_param *p0 = lw->experts[j], *p = p0 + e;
                if (p0->nf4 || p0->mxfp4) continue;   // a tensor per expert (moe_expert_weights.gate_q, gate_mx)
                int ok = (char *)p->act == (char *)p0->act + (size_t)e * p0->n * as &&
                         (!p0->grad || p->grad == p0->grad + (size_t)e * p0->n);
                if (!ok) {
                    set_err(err, errlen, "%s: internal error: expert %d of layer %d is not laid out after "
                            "expert %d", m->path, e, l, e - 1);
                    return -1;
                }
            }
    }
    return 0;
}

int model_allocate(model *m, char *err, size_t errlen) {
    backend *be = m->be;
    if (!m->planned) {
        set_err(err, errlen, "model_plan must come before model_allocate");
        return -1;
    }
    if (m->allocated) return 0;
    if (!be || !m->st) {
        set_err(err, errlen, "%s: the model was opened from a config only: it can be planned, not "
                "allocated", m->path);
        return -1;
    }
    size_t free_b = 0, total_b = 0;
    be->memory_info(be, &free_b, &total_b);
    // Host memory counts page cache as used, so "free" understates what a host can give:
    // there only the total is a hard limit.
    size_t limit = be->device_index < 0 ? total_b : free_b;
    if (limit && m->plan.total > limit) {
        set_err(err, errlen, "the memory plan needs %.2f GiB, %s has %.2f GiB %s; try "
                "--recompute full, a smaller --micro-batch or --max-seq-len, or %s",
                (double)m->plan.total / 1073741824.0, be->name, (double)limit / 1073741824.0,
                be->device_index < 0 ? "in all" : "free",
                m->opt.train == MODEL_TRAIN_FULL ? "--method lora"
                : m->cfg.experts_fused && !m->opt.experts_mxfp4 && m->opt.quant == MODEL_QUANT_NONE &&
                        mxfp4_checkpoint(m->path) ? "--experts-dtype mxfp4 (the experts as the checkpoint packs them)"
                : m->opt.quant == MODEL_QUANT_NONE && !m->opt.experts_mxfp4 ? "--quantize nf4 (a 4-bit base: QLoRA)"
                : "more devices");
        return -1;
    }
    const char *names[] = {"weights", "f32 masters", "gradients", "AdamW moments", "activations"};
    size_t sizes[] = {m->plan.weights, m->plan.masters, m->plan.grads, m->plan.moments, m->plan.activations};
    void **bufs[] = {&m->buf_weights, &m->buf_masters, &m->buf_grads, &m->buf_moments, &m->buf_acts};
    for (int i = 0; i < 5; i++) {
        *bufs[i] = alloc_buf(m, sizes[i], names[i], err, errlen);
        if (sizes[i] && !*bufs[i]) {
            for (int j = 0; j < i; j++)
                if (*bufs[j]) {
                    be->free(be, *bufs[j]);
                    *bufs[j] = NULL;
                }
            return -1;
        }
    }
    if (m->plan.host_pinned && !(m->host_off = be->host_alloc(be, m->plan.host_pinned))) {
        set_err(err, errlen, "allocating %.2f GiB of pinned host memory for the offloaded activations failed: %s; "
                "use --offload-activations off, or a smaller --max-seq-len", (double)m->plan.host_pinned / 1073741824.0,
                be->error);
        for (int j = 0; j < 5; j++)
            if (*bufs[j]) {
                be->free(be, *bufs[j]);
                *bufs[j] = NULL;
            }
        return -1;
    }
    size_t Nrows = (size_t)m->opt.batch_size * (size_t)m->opt.seq_len;
    if (m->moe_host_bytes && m->has_lora) {
        free(m->elora_pairs);
        m->elora_pairs = calloc((size_t)MOE_LORA_SLOTS * (size_t)m->cfg.n_experts, sizeof *m->elora_pairs);
        if (!m->elora_pairs) {
            set_err(err, errlen, "out of host memory for the MoE adapters");
            return -1;
        }
    }
    if (m->moe_host_bytes) {
        // Host buffers of an earlier failed allocation, if any: a retry must not leak them.
        free(m->moe_ptrs);
        free(m->moe_host);
        free(m->h_mask);
        int E = m->cfg.n_experts;
        m->moe_ptrs = malloc((MOE_EXPERT_PTRS(E) + MOE_LORA_PTRS(E)) * sizeof *m->moe_ptrs);
        m->moe_host = malloc(m->moe_host_bytes);
        m->h_mask = malloc(Nrows * sizeof *m->h_mask);
        if (!m->moe_ptrs || !m->moe_host || !m->h_mask) {
            set_err(err, errlen, "out of host memory for the MoE routing (%zu bytes)", m->moe_host_bytes);
            return -1;
        }
    }
    arena w = {m->buf_weights, 0}, ms = {m->buf_masters, 0}, g = {m->buf_grads, 0};
    arena mo = {m->buf_moments, 0}, a = {m->buf_acts, 0};
    layout_params(m, &w, &ms, &g, &mo);
    layout_acts(m, &a);
    if (check_expert_layout(m, err, errlen) != 0) return -1;
    if (m->buf_grads) be->memset_zero(be, m->buf_grads, m->plan.grads);
    if (m->buf_moments) be->memset_zero(be, m->buf_moments, m->plan.moments);

    size_t maxn = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].n > maxn) maxn = m->params[i].n;
    float *host = malloc(maxn * 4);
    float *staging = be->act_dtype == DTYPE_F32 ? NULL : be->alloc(be, maxn * 4);
    if (!host || (be->act_dtype != DTYPE_F32 && !staging)) {
        set_err(err, errlen, "out of memory staging weights of %zu elements", maxn);
        free(host);
        if (staging) be->free(be, staging);
        return -1;
    }
    // Host NF4 buffers for the largest weight, when any is quantised.
    nf4_tensor hq = {0};
    int rc = 0, mxfp4 = mxfp4_checkpoint(m->path);   // experts stored as *_blocks/*_scales
    if (m->nf4_bytes) {
        hq.packed = malloc(nf4_packed_bytes(maxn));
        hq.absmax = malloc(nf4_n_blocks(maxn) * 4);
        hq.qabsmax = malloc(nf4_n_blocks(maxn));
        hq.nested_absmax = malloc(nf4_n_nested(maxn) * 4);
        if (!hq.packed || !hq.absmax || !hq.qabsmax || !hq.nested_absmax) {
            set_err(err, errlen, "out of host memory quantising weights of %zu elements", maxn);
            rc = -1;
        }
    }
    uint8_t *hmx = NULL;   // host MXFP4 blocks + scales of one expert matrix
    if (m->mx_bytes && !(hmx = malloc(mxfp4_block_bytes(maxn) + mxfp4_scale_bytes(maxn)))) {
        set_err(err, errlen, "out of host memory reading MXFP4 experts of %zu elements", maxn);
        rc = -1;
    }
    for (int i = 0; i < m->nparams && rc == 0; i++) {
        model_param *p = &m->params[i];
        if (p->mxfp4) {   // the checkpoint's packed rows as they are (model_expert_mxfp4_read)
            uint8_t *hs = hmx + mxfp4_block_bytes(p->n);
            rc = model_expert_mxfp4_read(&m->cfg, m->st, p->name, hmx, hs, m->path, err, errlen);
            if (rc == 0) {
                be->copy_to_device(be, m->mxq[i].blocks, hmx, mxfp4_block_bytes(p->n));
                be->copy_to_device(be, m->mxq[i].scales, hs, mxfp4_scale_bytes(p->n));
                be->synchronize(be);   // hmx is reused by the next matrix
            }
            continue;
        }
        if (p->nf4 && m->bnb4) {   // already 4-bit: the checkpoint's codes and scales as they are
            nf4_tensor v;
            rc = bnb4_tensor(m->st, m->path, p->name, p->shape[0], p->shape[1], m->bnb4_double, &v, err, errlen);
            if (rc == 0) copy_nf4(m, &m->nf4q[i], &v);
            continue;
        }
        if (is_base_param(m, p)) {
            if (model_tensor_read(&m->cfg, m->st, p->name, mxfp4, host, p->n, m->path, err, errlen) != 0) {
                rc = -1;
                break;
            }
        } else if (strstr(p->name, ".lora_A.")) {
            // Stream id: the index among adapters keeps each draw independent of the others.
            lora_init_a(host, (int)p->shape[0], (int)p->shape[1], m->lora.seed, (uint64_t)i);
        } else {
            memset(host, 0, p->n * 4);   // B = 0: the adapted model starts as the base
        }
        char why[256];
        if (!p->nf4) {
            upload(m, p, host, staging);
        } else if (upload_nf4(m, &m->nf4q[i], &hq, host, p->n, why, sizeof why) != 0) {
            set_err(err, errlen, "%s: quantising %s to NF4: %s", m->path, p->name, why);
            rc = -1;
        }
    }
    if (rc == 0) {
        model_config_rope_inv_freq(&m->cfg, host);
        be->copy_to_device(be, m->inv_freq, host, (size_t)m->cfg.head_dim / 2 * 4);
        m->rope.inv_freq = m->inv_freq;
        m->rope.head_dim = m->cfg.head_dim;
        m->rope.attention_scaling = m->cfg.rope_attention_factor;
    }
    be->synchronize(be);
    free(hq.packed);
    free(hq.absmax);
    free(hq.qabsmax);
    free(hq.nested_absmax);
    free(hmx);
    free(host);
    if (staging) be->free(be, staging);
    if (rc != 0) return -1;
    size_t N = (size_t)m->opt.batch_size * (size_t)m->opt.seq_len;
    m->h_losses = malloc(N * sizeof *m->h_losses);
    if (!m->h_losses) {
        set_err(err, errlen, "out of host memory");
        return -1;
    }
    st_close(m->st);   // every weight is on the device now
    m->st = NULL;
    m->allocated = 1;
    return 0;
}

int model_segment_count(const model *m) { return m->nsegs; }
const model_segment *model_segment_at(const model *m, int s) { return s >= 0 && s < m->nsegs ? &m->segs[s] : NULL; }

void model_set_grad_hooks(model *m, const model_grad_hooks *h) {
    if (h) m->hooks = *h;
    else memset(&m->hooks, 0, sizeof m->hooks);
}

// The hook around segment s's gradient (when it has one and a hook is set). With shard_grads
// before() is followed by zeroing the segment's staging. Nonzero: the pass fails.
static int grad_before(model *m, int s) {
    const model_segment *sg = &m->segs[s];
    if (!sg->n) return 0;
    if (m->hooks.before && m->hooks.before(m->hooks.ctx, s)) return -1;
    if (m->plan.shard_grads) m->be->memset_zero(m->be, sg->grad, sg->n * 4);
    return 0;
}

static int grad_after(model *m, int s) {
    return m->segs[s].n && m->hooks.after ? m->hooks.after(m->hooks.ctx, s) : 0;
}

int model_param_count(const model *m) { return m->nparams; }
model_param *model_param_at(model *m, int i) { return i >= 0 && i < m->nparams ? &m->params[i] : NULL; }
int model_trained_count(const model *m) { return m->ntrained; }
model_param *model_trained_at(model *m, int i) { return i >= 0 && i < m->ntrained ? m->trained[i] : NULL; }

model_param *model_param_find(model *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return &m->params[i];
    return NULL;
}

int model_param_write(model *m, model_param *p, const float *host) {
    if (!m->allocated || p->nf4 || p->mxfp4) return -1;
    float *staging = NULL;
    if (m->be->act_dtype != DTYPE_F32) {
        staging = m->be->alloc(m->be, p->n * 4);
        if (!staging) return -1;
    }
    upload(m, p, host, staging);
    m->be->synchronize(m->be);
    if (staging) m->be->free(m->be, staging);
    return 0;
}

int model_param_read(model *m, const model_param *p, float *host) {
    backend *be = m->be;
    if (!m->allocated) return -1;
    if (p->nf4 || p->mxfp4) {
        // The weights the forward multiplies by: dequantised to the act dtype, then widened.
        void *w = be->alloc(be, p->n * act_size(m));
        float *staging = be->act_dtype == DTYPE_F32 ? w : be->alloc(be, p->n * 4);
        if (!w || !staging) {
            if (w) be->free(be, w);
            return -1;
        }
        if (p->mxfp4) be->mxfp4_dequantize(be, w, &m->mxq[p - m->params], (int)p->shape[0], (int)p->shape[1]);
        else be->nf4_dequantize(be, w, &m->nf4q[p - m->params], (int)p->shape[0], (int)p->shape[1]);
        if (staging != w) be->cast_act_to_f32(be, staging, w, p->n);
        be->copy_to_host(be, host, staging, p->n * 4);
        be->synchronize(be);
        if (staging != w) be->free(be, staging);
        be->free(be, w);
        return 0;
    }
    if (p->trained && p->own_len == p->n) {
        be->copy_to_host(be, host, p->master, p->n * 4);
    } else if (be->act_dtype == DTYPE_F32) {
        be->copy_to_host(be, host, p->act, p->n * 4);
    } else {
        float *staging = be->alloc(be, p->n * 4);
        if (!staging) return -1;
        be->cast_act_to_f32(be, staging, p->act, p->n);
        be->copy_to_host(be, host, staging, p->n * 4);
        be->free(be, staging);
    }
    be->synchronize(be);
    return 0;
}

void model_zero_grads(model *m) {
    if (m->buf_grads) m->be->memset_zero(m->be, m->buf_grads, m->plan.grads);
}

static uint64_t dropout_seed(uint64_t seed, int l, int t) {
    return rng_mix64(seed ^ rng_mix64(((uint64_t)l << 8 | (uint64_t)t) + 0x64726F70ull));
}

// y = (accumulate ? y : 0) + x·Wᵀ + b: the frozen (or fully trained) weight's share.
static void linear_base_fwd(model *m, void *y, const void *x, const linear_layer *ll, int N, int accumulate) {
    backend *be = m->be;
    const void *bias = ll->b ? ll->b->act : NULL;
    if (ll->q) be->nf4_linear_forward(be, y, x, ll->q, bias, N, ll->in, ll->out, 1.0f, accumulate, m->nf4_ws);
    else be->linear_forward(be, y, x, ll->w->act, bias, N, ll->in, ll->out, 1.0f, accumulate);
}

// y += s·(dropout(x)·Aᵀ)·Bᵀ; h = dropout(x)·Aᵀ saved.
static void linear_lora_fwd(model *m, void *y, const void *x, const linear_layer *ll, void *h, int N, uint64_t seed) {
    backend *be = m->be;
    const void *xin = x;
    if (m->fwd_train && m->lora.dropout > 0.0f) {   // as PEFT: dropout only while training
        be->dropout_forward(be, m->xdrop, x, (size_t)N * (size_t)ll->in, m->lora.dropout, seed);
        xin = m->xdrop;
    }
    int r = m->lora.rank;
    be->linear_forward(be, h, xin, ll->la->act, NULL, N, ll->in, r, 1.0f, 0);
    be->linear_forward(be, y, h, ll->lb->act, NULL, N, r, ll->out, m->lora_s, 1);
}

// y = (accumulate ? y : 0) + x·Wᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ; h = dropout(x)·Aᵀ saved.
static void linear_fwd(model *m, void *y, const void *x, const linear_layer *ll, void *h, int N,
                       int accumulate, uint64_t seed) {
    linear_base_fwd(m, y, x, ll, N, accumulate);
    if (ll->la) linear_lora_fwd(m, y, x, ll, h, N, seed);
}

// dx = (accumulate ? dx : 0) + dy·W; W's gradients accumulate when it is trained.
static void linear_base_bwd(model *m, void *dx, const void *dy, const void *x, const linear_layer *ll, int N,
                            int accumulate) {
    backend *be = m->be;
    if (!ll->q)
        be->linear_backward(be, dx, ll->w->grad, ll->b ? ll->b->grad : NULL, dy, x, ll->w->act, N,
                            ll->in, ll->out, 1.0f, accumulate);
    else if (dx)   // frozen (model_plan refuses full training): the input's gradient only
        be->nf4_linear_backward(be, dx, dy, ll->q, N, ll->in, ll->out, 1.0f, accumulate, m->nf4_ws);
}

// dx += the adapter's share of dy's gradient; A's and B's gradients accumulate.
static void linear_lora_bwd(model *m, void *dx, const void *dy, const void *x, const linear_layer *ll,
                            const void *h, int N, uint64_t seed) {
    backend *be = m->be;
    int r = m->lora.rank;
    // y += s·h·Bᵀ: dh = s·dy·B, dB += s·dyᵀ·h.
    be->linear_backward(be, m->dlh, ll->lb->grad, NULL, dy, h, ll->lb->act, N, r, ll->out,
                        m->lora_s, 0);
    if (m->fwd_train && m->lora.dropout > 0.0f) {
        size_t n = (size_t)N * (size_t)ll->in;
        be->dropout_forward(be, m->xdrop, x, n, m->lora.dropout, seed);   // the same mask again
        be->linear_backward(be, m->dxdrop, ll->la->grad, NULL, m->dlh, m->xdrop, ll->la->act, N,
                            ll->in, r, 1.0f, 0);
        if (dx) be->dropout_backward(be, dx, m->dxdrop, n, m->lora.dropout, seed);
    } else {
        be->linear_backward(be, dx, ll->la->grad, NULL, m->dlh, x, ll->la->act, N, ll->in, r, 1.0f, 1);
    }
}

// dx = (accumulate ? dx : 0) + dy·W (+ the adapter's share); parameter gradients accumulate.
static void linear_bwd(model *m, void *dx, const void *dy, const void *x, const linear_layer *ll,
                       const void *h, int N, int accumulate, uint64_t seed) {
    linear_base_bwd(m, dx, dy, x, ll, N, accumulate);
    if (ll->la) linear_lora_bwd(m, dx, dy, x, ll, h, N, seed);
}

// Rows r0.. of act (N, width), or NULL for NULL (an absent LoRA h).
static void *rows_of(const model *m, void *p, int r0, int width) {
    return p ? act_row(m, p, (size_t)r0, (size_t)width) : NULL;
}

// Whether group t0 of layer lw runs fused: every projection adapted, no dropout this pass (its
// masks differ per projection, as PEFT's, so the inputs are not shared), the A's (and their
// gradients) contiguous, and the fusion not switched off (MODEL_FUSE_LORA_GROUP).
static int lora_group_fused(const model *m, const layer_weights *lw, const layer_acts *x, int t0) {
    int G = lora_group_size(t0);
    if (!G || !m->has_lora || (m->opt.no_fusion & MODEL_FUSE_LORA_GROUP) || (m->fwd_train && m->lora.dropout > 0.0f)) return 0;
    const model_param *a0 = lw->lin[t0].la;
    if (!a0 || !x->lora_h[t0]) return 0;
    size_t as = act_size(m);
    for (int g = 1; g < G; g++) {
        const linear_layer *ll = &lw->lin[t0 + g];
        if (!ll->la || !x->lora_h[t0 + g] || ll->in != lw->lin[t0].in) return 0;
        if ((const char *)ll->la->act != (const char *)a0->act + (size_t)g * a0->n * as) return 0;
        if (!ll->la->grad != !a0->grad || (a0->grad && ll->la->grad != a0->grad + (size_t)g * a0->n)) return 0;
    }
    return 1;
}

// y[g] = x·W_gᵀ (+ b_g) (+ the adapter) for the G projections of group t0 over one input x.
static void linear_group_fwd(model *m, int l, layer_acts *x, void *const *y, const void *in, int t0, int r0, int N) {
    const layer_weights *lw = &m->layers[l];
    int G = lora_group_size(t0), r = m->lora.rank;
    uint64_t s = m->fwd_seed;
    if (!lora_group_fused(m, lw, x, t0)) {
        for (int g = 0; g < G; g++)
            linear_fwd(m, y[g], in, &lw->lin[t0 + g], rows_of(m, x->lora_h[t0 + g], r0, r), N, 0,
                       dropout_seed(s, l, t0 + g));
        return;
    }
    const void *b[3];
    int out[3];
    for (int g = 0; g < G; g++) {
        linear_base_fwd(m, y[g], in, &lw->lin[t0 + g], N, 0);
        b[g] = lw->lin[t0 + g].lb->act;
        out[g] = lw->lin[t0 + g].out;
    }
    m->be->lora_group_forward(m->be, y, rows_of(m, x->lora_h[t0], r0, G * r), in, lw->lin[t0].la->act, b, out, G, N, lw->lin[t0].in,
                              m->lora.rank, m->lora_s);
}

// dx = Σ_g dy[g]·W_g (+ the adapters' shares, after every W's), gradients accumulated: group
// t0's backward. The order of dx's sums is the same fused or not (the CPU: the same bits).
static void linear_group_bwd(model *m, int l, layer_acts *x, void *dx, const void *const *dy, const void *in,
                             int t0, int r0, int N) {
    const layer_weights *lw = &m->layers[l];
    int G = lora_group_size(t0), r = m->lora.rank;
    uint64_t s = m->fwd_seed;
    for (int g = 0; g < G; g++) linear_base_bwd(m, dx, dy[g], in, &lw->lin[t0 + g], N, g > 0);
    if (!lw->lin[t0].la && !lw->lin[t0 + 1].la && !lw->lin[t0 + G - 1].la) return;
    if (!lora_group_fused(m, lw, x, t0)) {
        for (int g = 0; g < G; g++)
            if (lw->lin[t0 + g].la)
                linear_lora_bwd(m, dx, dy[g], in, &lw->lin[t0 + g], rows_of(m, x->lora_h[t0 + g], r0, r), N,
                                dropout_seed(s, l, t0 + g));
        return;
    }
    const void *b[3];
    float *db[3];
    int out[3];
    for (int g = 0; g < G; g++) {
        b[g] = lw->lin[t0 + g].lb->act;
        db[g] = lw->lin[t0 + g].lb->grad;
        out[g] = lw->lin[t0 + g].out;
    }
    const model_param *a0 = lw->lin[t0].la;
    m->be->lora_group_backward(m->be, dx, a0->grad, db, m->dlh, dy, in, rows_of(m, x->lora_h[t0], r0, G * r), a0->act, b, out, G, N,
                               lw->lin[t0].in, m->lora.rank, m->lora_s);
}

// Attention block: mid = resid[l] + o(attention(rope(q), rope(k), v)) with q, k, v projections of
// ln1 = rmsnorm(resid[l]), q and k normed per head first when the kind says so; then the MLP's
// ln2 = rmsnorm(mid). T query rows per batch; Tk > T only when decoding (B = 1): the new keys and
// values go to rows Tk − T.. of the layer's cache x->k, x->v and attention reads all Tk of them.
static void attn_forward(model *m, int l, layer_acts *x, int B, int T, int Tk) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    const layer_weights *lw = &m->layers[l];
    const attn_kind *ak = &m->kinds.attn;
    int N = B * T, C = c->hidden_size, H = c->num_heads, KV = c->num_kv_heads, hd = c->head_dim;
    size_t K = (size_t)KV * (size_t)hd;
    void *k = act_row(m, x->k, (size_t)(Tk - T), K), *v = act_row(m, x->v, (size_t)(Tk - T), K);
    uint64_t s = m->fwd_seed;
    be->rmsnorm_forward(be, x->ln1, x->rstd1, m->resid[l], lw->norm[NORM_IN]->act, N, C, c->rms_norm_eps);
    void *const qkv[3] = {ak->qk_norm ? x->q_raw : x->q, ak->qk_norm ? x->k_raw : k, v};
    linear_group_fwd(m, l, x, qkv, x->ln1, LORA_Q, 0, N);
    if (!(m->opt.no_fusion & MODEL_FUSE_ROPE_QK)) {
        // One pass over q and k (in place, or from q_raw, k_raw through their norms): one launch
        // instead of two (four with the norms), the angles once per token row.
        be->rope_qk_forward(be, x->q, k, x->rstd_q, x->rstd_k, qkv[0], qkv[1],
                            ak->qk_norm ? lw->qk_norm[0]->act : NULL, ak->qk_norm ? lw->qk_norm[1]->act : NULL,
                            m->d_pos, &m->rope, N, H, KV, c->rms_norm_eps);
    } else {
        if (ak->qk_norm) {
            // q is (N, H·hd) contiguous: (N·H) rows of hd, each normed on its own.
            be->rmsnorm_forward(be, x->q, x->rstd_q, x->q_raw, lw->qk_norm[0]->act, N * H, hd, c->rms_norm_eps);
            be->rmsnorm_forward(be, k, x->rstd_k, x->k_raw, lw->qk_norm[1]->act, N * KV, hd, c->rms_norm_eps);
        }
        be->rope_forward(be, x->q, m->d_pos, &m->rope, N, H);
        be->rope_forward(be, k, m->d_pos, &m->rope, N, KV);
    }
    if (ak->sinks) be->cast_act_to_f32(be, m->sinks_f32, lw->sinks->act, (size_t)H);
    be->attention_forward(be, x->att, x->lse, x->q, x->k, x->v, m->d_doc, m->doc_packed, B, T, Tk, H, KV, hd,
                          1.0f / sqrtf((float)hd), ak->layer_windows ? model_config_layer_window(c, l) : 0,
                          ak->sinks ? m->sinks_f32 : NULL);
    // mid = resid + o(att), then the MLP's input ln2 = rmsnorm(mid). Fused: o's output goes to
    // ln2's buffer (ln1 is spent when it is shared) and one add_rmsnorm pass writes mid and ln2,
    // instead of a copy, an accumulating GEMM and an RMSNorm pass.
    const model_param *nw = lw->norm[NORM_POST];
    if (!(m->opt.no_fusion & MODEL_FUSE_ADD_NORM)) {
        linear_fwd(m, x->ln2, x->att, &lw->lin[LORA_O], x->lora_h[LORA_O], N, 0, dropout_seed(s, l, LORA_O));
        be->add_rmsnorm_forward(be, x->mid, x->ln2, x->rstd2, x->ln2, m->resid[l], nw->act, N, C, c->rms_norm_eps);
        return;
    }
    be->copy(be, x->mid, m->resid[l], (size_t)N * (size_t)C * act_size(m));
    linear_fwd(m, x->mid, x->att, &lw->lin[LORA_O], x->lora_h[LORA_O], N, 1, dropout_seed(s, l, LORA_O));
    be->rmsnorm_forward(be, x->ln2, x->rstd2, x->mid, nw->act, N, C, c->rms_norm_eps);
}

// dres holds ∂loss/∂mid on entry and ∂loss/∂resid[l] on return.
static void attn_backward(model *m, int l, layer_acts *x, int B, int T) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    const layer_weights *lw = &m->layers[l];
    const attn_kind *ak = &m->kinds.attn;
    int N = B * T, C = c->hidden_size, H = c->num_heads, KV = c->num_kv_heads, hd = c->head_dim;
    uint64_t s = m->fwd_seed;
    linear_bwd(m, m->datt, m->dres, x->att, &lw->lin[LORA_O], x->lora_h[LORA_O], N, 0,
               dropout_seed(s, l, LORA_O));
    if (ak->sinks) be->cast_act_to_f32(be, m->sinks_f32, lw->sinks->act, (size_t)H);
    be->attention_backward(be, m->dq, m->dk, m->dv, m->datt, x->att, x->lse, x->q, x->k, x->v,
                           m->d_doc, m->doc_packed, B, T, T, H, KV, hd, 1.0f / sqrtf((float)hd),
                           ak->layer_windows ? model_config_layer_window(c, l) : 0, ak->sinks ? m->sinks_f32 : NULL,
                           ak->sinks ? lw->sinks->grad : NULL);
    int fused = !(m->opt.no_fusion & MODEL_FUSE_ROPE_QK);
    if (fused) {
        // dq, dk become ∂loss/∂q_raw, ∂loss/∂k_raw in place (through the norms when there are).
        be->rope_qk_backward(be, m->dq, m->dk, ak->qk_norm ? lw->qk_norm[0]->grad : NULL,
                             ak->qk_norm ? lw->qk_norm[1]->grad : NULL, x->q_raw, x->k_raw,
                             ak->qk_norm ? lw->qk_norm[0]->act : NULL, ak->qk_norm ? lw->qk_norm[1]->act : NULL,
                             x->rstd_q, x->rstd_k, m->d_pos, &m->rope, N, H, KV);
    } else {
        be->rope_backward(be, m->dq, m->d_pos, &m->rope, N, H);
        be->rope_backward(be, m->dk, m->d_pos, &m->rope, N, KV);
    }
    if (m->opt.checkpoint == MODEL_RECOMPUTE_SELECTIVE)
        be->rmsnorm_forward(be, x->ln1, x->rstd1, m->resid[l], lw->norm[NORM_IN]->act, N, C, c->rms_norm_eps);
    // Through the q/k norms, unfused: datt is free once attention's backward has read it and holds
    // ∂loss/∂q_raw, then dq (read) holds ∂loss/∂k_raw (rmsnorm_backward adds to its dx: zeroed
    // first), so that q, k and v's gradients are all live for their group's backward.
    size_t as = act_size(m);
    const void *dq = m->dq, *dk = m->dk;
    if (ak->qk_norm && !fused) {
        be->memset_zero(be, m->datt, (size_t)N * (size_t)H * (size_t)hd * as);
        be->rmsnorm_backward(be, m->datt, lw->qk_norm[0]->grad, m->dq, x->q_raw, lw->qk_norm[0]->act, x->rstd_q,
                             N * H, hd);
        dq = m->datt;
        be->memset_zero(be, m->dq, (size_t)N * (size_t)KV * (size_t)hd * as);
        be->rmsnorm_backward(be, m->dq, lw->qk_norm[1]->grad, m->dk, x->k_raw, lw->qk_norm[1]->act, x->rstd_k,
                             N * KV, hd);
        dk = m->dq;
    }
    const void *const dqkv[3] = {dq, dk, m->dv};
    linear_group_bwd(m, l, x, m->dln, dqkv, x->ln1, LORA_Q, 0, N);
    be->rmsnorm_backward(be, m->dres, lw->norm[NORM_IN]->grad, m->dln, m->resid[l],
                         lw->norm[NORM_IN]->act, x->rstd1, N, C);
}

// gate, up (and act = silu(gate)·up when act_too) of rows [r0, r0 + n) of ln2, into rows 0.. of
// x->gate, x->up, x->act: one MLP chunk (model_options.mlp_chunk), or all N rows at r0 = 0.
static void mlp_dense_up(model *m, int l, layer_acts *x, int r0, int n, int act_too) {
    backend *be = m->be;
    int C = m->cfg.hidden_size;
    const void *ln2 = act_row(m, x->ln2, (size_t)r0, (size_t)C);
    void *const gu[2] = {x->gate, x->up};
    linear_group_fwd(m, l, x, gu, ln2, LORA_GATE, r0, n);
    if (act_too) be->swiglu_forward(be, x->act, x->gate, x->up, (size_t)n * (size_t)m->cfg.intermediate_size);
}

// Dense SwiGLU MLP block: resid[l+1] = mid + down(silu(gate(ln2)) · up(ln2)), ln2 = rmsnorm(mid),
// over chunks of m->mlp_rows rows when planned (each row's output is its own: the same values).
static void mlp_dense_forward(model *m, int l, layer_acts *x, int N) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    const layer_weights *lw = &m->layers[l];
    int C = c->hidden_size, R = m->mlp_rows ? m->mlp_rows : N;
    // ln2 = rmsnorm(mid) is attn_forward's (fused with mid's residual add); resid[l+1] = mid + down(act).
    be->copy(be, m->resid[l + 1], x->mid, (size_t)N * (size_t)C * act_size(m));
    for (int r0 = 0; r0 < N; r0 += R) {
        int n = N - r0 < R ? N - r0 : R;
        mlp_dense_up(m, l, x, r0, n, 1);
        linear_fwd(m, act_row(m, m->resid[l + 1], (size_t)r0, (size_t)C), x->act, &lw->lin[LORA_DOWN],
                   rows_of(m, x->lora_h[LORA_DOWN], r0, m->lora.rank), n, 1, dropout_seed(m->fwd_seed, l, LORA_DOWN));
    }
}

// dres holds ∂loss/∂resid[l+1] on entry and ∂loss/∂mid on return.
static void mlp_dense_backward(model *m, int l, layer_acts *x, int N) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    const layer_weights *lw = &m->layers[l];
    int C = c->hidden_size, F = c->intermediate_size, r = m->lora.rank, R = m->mlp_rows ? m->mlp_rows : N;
    uint64_t s = m->fwd_seed;
    // Selective recomputation: act, ln2 (and ln1 in attn_backward) are refilled from the kept
    // gate, up, mid and resid[l] just before each is read (the same op on the same inputs: the
    // same bits). MLP chunks: gate and up too, chunk by chunk, from ln2.
    int sel = m->opt.checkpoint == MODEL_RECOMPUTE_SELECTIVE, chunked = m->mlp_rows > 0;
    if (sel) be->rmsnorm_forward(be, x->ln2, x->rstd2, x->mid, lw->norm[NORM_POST]->act, N, C, c->rms_norm_eps);
    for (int r0 = 0; r0 < N; r0 += R) {
        int n = N - r0 < R ? N - r0 : R;
        size_t nf = (size_t)n * (size_t)F;
        const void *ln2 = act_row(m, x->ln2, (size_t)r0, (size_t)C);
        void *dln = act_row(m, m->dln, (size_t)r0, (size_t)C);
        if (chunked) mlp_dense_up(m, l, x, r0, n, 1);
        else if (sel) be->swiglu_forward(be, x->act, x->gate, x->up, nf);
        linear_bwd(m, m->dact, act_row(m, m->dres, (size_t)r0, (size_t)C), x->act, &lw->lin[LORA_DOWN],
                   rows_of(m, x->lora_h[LORA_DOWN], r0, r), n, 0, dropout_seed(s, l, LORA_DOWN));
        be->swiglu_backward(be, m->dgate, m->dup, m->dact, x->gate, x->up, nf);
        const void *const dgu[2] = {m->dgate, m->dup};
        linear_group_bwd(m, l, x, dln, dgu, ln2, LORA_GATE, r0, n);
    }
    be->rmsnorm_backward(be, m->dres, lw->norm[NORM_POST]->grad, m->dln, x->mid,
                         lw->norm[NORM_POST]->act, x->rstd2, N, C);
}

static const void *act_of(const model_param *p) { return p ? p->act : NULL; }
static float *grad_of(const model_param *p) { return p ? p->grad : NULL; }

// The MoE layer's weights (biases: gpt-oss's variant, else NULL); with LoRA in its block, lo is
// filled (pairs in m->elora_pairs, h in x) and w.experts.lora points at it.
static moe_weights moe_weights_of(model *m, int l, layer_acts *x, moe_lora *lo) {
    const layer_weights *lw = &m->layers[l];
    moe_weights w = {.router = lw->router->act,
                     .experts = {.gate = lw->experts[0]->act, .up = lw->experts[1]->act,
                                 .down = lw->experts[2]->act, .lora = NULL,
                                 .gate_bias = act_of(lw->expert_bias[0]), .up_bias = act_of(lw->expert_bias[1]),
                                 .down_bias = act_of(lw->expert_bias[2]),
                                 .gate_q = experts_nf4(m, lw->experts[0]), .up_q = experts_nf4(m, lw->experts[1]),
                                 .down_q = experts_nf4(m, lw->experts[2]), .nf4_ws = m->nf4_ws,
                                 .gate_mx = experts_mxfp4(m, lw->experts[0]),
                                 .up_mx = experts_mxfp4(m, lw->experts[1]),
                                 .down_mx = experts_mxfp4(m, lw->experts[2]), .mx_ws = m->mx_ws,
                                 .ptrs = m->moe_ptrs},
                     .router_bias = act_of(lw->router_bias)};
    if (!lw->elora[0] && !lw->router_lora[0]) return w;
    int E = m->cfg.n_experts;
    memset(lo, 0, sizeof *lo);
    lo->rank = m->lora.rank;
    lo->scale = m->lora_s;
    // gpt-oss: PEFT adapts the fused experts and the router as parameters (ParamWrapper adds
    // s·B·A to the weight), so there is no adapter input to drop: it refuses lora_dropout ≠ 0
    // (peft 0.21.2 tuners/lora/layer.py:2363). quarry trains them without dropout.
    lo->dropout = m->cfg.experts_fused ? 0.0f : m->lora.dropout;
    lo->gate_up = m->cfg.experts_fused;
    lo->train = m->fwd_train;
    lo->dh = m->elora_dh;
    lo->ptrs = m->moe_ptrs + MOE_EXPERT_PTRS(E);
    lo->xdrop = m->elora_xdrop;
    lo->dxdrop = m->elora_dxdrop;
    for (int j = 0; j < MOE_LORA_SLOTS; j++) {
        moe_lora_pair *pairs = m->elora_pairs + (size_t)j * E;
        const model_param *p = j == MOE_LORA_ROUTER ? lw->router_lora[0] : lw->elora[j];
        if (!p) continue;
        int n = j == MOE_LORA_ROUTER ? 1 : E;
        for (int e = 0; e < n; e++) {
            const model_param *pa = j == MOE_LORA_ROUTER ? lw->router_lora[0] : p + 2 * e;
            const model_param *pb = j == MOE_LORA_ROUTER ? lw->router_lora[1] : p + 2 * e + 1;
            pairs[e] = (moe_lora_pair){pa->act, pb->act, pa->grad, pb->grad};
        }
        lo->pair[j] = pairs;
        lo->h[j] = x->elora_h[j];
        lo->seed[j] = dropout_seed(m->fwd_seed, l, LORA_NUM_TARGETS + 1 + j);
    }
    w.experts.lora = lo;
    return w;
}

// Sparse MoE block: resid[l+1] = mid + moe(ln2), ln2 = rmsnorm(mid) (model/moe/block.h).
static void mlp_moe_forward(model *m, int l, layer_acts *x, int N) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    int C = c->hidden_size;
    // ln2 = rmsnorm(mid): attn_forward's (fused with mid's residual add).
    moe_lora lo;
    moe_weights w = moe_weights_of(m, l, x, &lo);
    char why[160];
    if (moe_block_forward(be, &m->kinds.moe, &w, &x->moe, &m->moe_t, x->ln2, m->resid[l + 1],
                          m->use_mask ? m->d_mask : NULL, m->moe_stats ? m->d_prob_sum : NULL,
                          m->moe_stats ? m->d_count : NULL, N, why, sizeof why) != 0) {
        snprintf(m->error, sizeof m->error, "layer %d: %s", l, why);
        m->moe_failed = 1;
    }
    be->add(be, m->resid[l + 1], m->resid[l + 1], x->mid, (size_t)N * (size_t)C);
}

// dres holds ∂loss/∂resid[l+1] on entry and ∂loss/∂mid on return.
static void mlp_moe_backward(model *m, int l, layer_acts *x, int N) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    const layer_weights *lw = &m->layers[l];
    int C = c->hidden_size;
    if (m->opt.checkpoint == MODEL_RECOMPUTE_SELECTIVE)
        be->rmsnorm_forward(be, x->ln2, x->rstd2, x->mid, lw->norm[NORM_POST]->act, N, C, c->rms_norm_eps);
    moe_lora lo;
    moe_weights w = moe_weights_of(m, l, x, &lo);
    moe_grads g = {.router = lw->router->grad,
                   .experts = {.gate = lw->experts[0]->grad, .up = lw->experts[1]->grad, .down = lw->experts[2]->grad,
                               .gate_bias = grad_of(lw->expert_bias[0]), .up_bias = grad_of(lw->expert_bias[1]),
                               .down_bias = grad_of(lw->expert_bias[2])},
                   .router_bias = grad_of(lw->router_bias)};
    moe_block_backward(be, &m->kinds.moe, &w, &g, &x->moe, &m->moe_t, x->ln2, m->dres, m->dln,
                       m->use_aux ? m->d_dprob : NULL, m->use_mask ? m->d_mask : NULL, N, 0);
    be->rmsnorm_backward(be, m->dres, lw->norm[NORM_POST]->grad, m->dln, x->mid,
                         lw->norm[NORM_POST]->act, x->rstd2, N, C);
}

// The MLP kind's block, mid → resid[l+1] and back: the one place an MLP kind is chosen.
static void mlp_forward(model *m, int l, layer_acts *x, int N) {
    switch (m->layers[l].mlp) {
    case MLP_DENSE_SWIGLU: mlp_dense_forward(m, l, x, N); break;
    case MLP_SPARSE_MOE: mlp_moe_forward(m, l, x, N); break;
    }
}

static void mlp_backward(model *m, int l, layer_acts *x, int N) {
    switch (m->layers[l].mlp) {
    case MLP_DENSE_SWIGLU: mlp_dense_backward(m, l, x, N); break;
    case MLP_SPARSE_MOE: mlp_moe_backward(m, l, x, N); break;
    }
}

// The padding rows of a packed batch (see the MoE kind above) → m->d_mask; m->use_mask.
static void moe_mask_of(model *m, const model_batch *b) {
    int N = b->B * b->T, pad = 0;
    m->use_mask = 0;
    if (!m->d_mask || !b->targets) return;
    for (int i = 0; i < N; i++) {
        int t = i % b->T;
        int alone = b->doc_start[i] == t && (t + 1 == b->T || b->doc_start[i + 1] != t);
        m->h_mask[i] = !(alone && b->targets[i] == -1);
        pad += !m->h_mask[i];
    }
    if (!pad) return;   // every row real: the same as no mask
    m->be->copy_to_device(m->be, m->d_mask, m->h_mask, (size_t)N * 4);
    m->use_mask = 1;
}

// After a forward with the statistics: aux (and dprob uploaded for the backward when
// training). grad_scale·tokens weighs this micro-batch's aux as its CE (see the MoE kind).
static int moe_aux_after_forward(model *m, int N, float grad_scale, int64_t tokens, double *aux) {
    backend *be = m->be;
    int E = m->cfg.n_experts, real = N;
    if (m->use_mask) {
        real = 0;
        for (int i = 0; i < N; i++) real += m->h_mask[i] != 0;
    }
    float *h = malloc((size_t)E * 3 * sizeof *h);
    if (!h) {
        snprintf(m->error, sizeof m->error, "out of host memory");
        return -1;
    }
    be->copy_to_host(be, h, m->d_prob_sum, (size_t)E * 4);
    be->copy_to_host(be, h + E, m->d_count, (size_t)E * 4);
    be->synchronize(be);
    int train = grad_scale > 0.0f && m->aux_coef > 0;
    *aux = moe_aux_loss(h, h + E, E, (double)m->n_moe_layers * (double)real, m->aux_coef,
                        (double)grad_scale * (double)tokens, train ? h + 2 * E : NULL);
    if (train) {
        be->copy_to_device(be, m->d_dprob, h + 2 * E, (size_t)E * 4);
        be->synchronize(be);
    }
    free(h);
    m->use_aux = train;
    return 0;
}

// Layer l from resid[l] to resid[l+1], keeping what the backward needs in x (see attn_forward
// for T and Tk).
static void layer_forward(model *m, int l, layer_acts *x, int B, int T, int Tk) {
    attn_forward(m, l, x, B, T, Tk);
    mlp_forward(m, l, x, B * T);
}

// dres holds ∂loss/∂resid[l+1] on entry and ∂loss/∂resid[l] on return.
static void layer_backward(model *m, int l, layer_acts *x, int B, int T) {
    mlp_backward(m, l, x, B * T);
    attn_backward(m, l, x, B, T);
}

// Activation offload (see struct model; the copies run on the backend's side stream, in order).
// Before layer l's forward: the slot its output goes to (and so the older one it uses itself)
// has finished its way to the host.
static void offload_before_forward(model *m, int l) {
    if (m->off_layers) m->be->side_wait(m->be, (l + 1) % MODEL_OFFLOAD_SLOTS);
}

// After layer l's training forward: its region goes to the host, beside the next layers' compute.
static void offload_after_forward(model *m, int l) {
    if (l >= m->off_layers || !m->fwd_train) return;
    int s = l % MODEL_OFFLOAD_SLOTS;
    m->be->side_copy(m->be, (char *)m->host_off + (size_t)l * m->off_bytes, m->off_slot[s], m->off_bytes, 1, s);
}

// Before layer l's backward: layer l − 1 starts its way back into its slot (whose last user,
// layer l + S − 1, is done), one layer ahead; layer l's own, started one layer earlier, must
// have arrived.
static void offload_before_backward(model *m, int l) {
    if (!m->off_layers) return;
    int p = l - 1, S = MODEL_OFFLOAD_SLOTS;
    if (p >= 0 && p < m->off_layers)
        m->be->side_copy(m->be, m->off_slot[p % S], (char *)m->host_off + (size_t)p * m->off_bytes, m->off_bytes, 0,
                         p % S);
    if (l < m->off_layers) m->be->side_wait(m->be, l % S);
}

static int check_batch(model *m, const model_batch *b) {
    const model_config *c = &m->cfg;
    if (!m->allocated) {
        snprintf(m->error, sizeof m->error, "the model is not allocated (model_plan, model_allocate)");
        return -1;
    }
    if (b->B < 1 || b->T < 1 || b->B > m->opt.batch_size || b->T > m->opt.seq_len) {
        snprintf(m->error, sizeof m->error, "batch %d × %d exceeds the planned %d × %d", b->B, b->T,
                 m->opt.batch_size, m->opt.seq_len);
        return -1;
    }
    for (int i = 0; i < b->B * b->T; i++) {
        int t = i % b->T;
        if (b->ids[i] < 0 || b->ids[i] >= c->vocab_size ||
            (b->targets && (b->targets[i] < -1 || b->targets[i] >= c->vocab_size))) {
            snprintf(m->error, sizeof m->error, "token %d (id %d, target %d) is outside the vocabulary "
                     "of %d", i, b->ids[i], b->targets ? b->targets[i] : -1, c->vocab_size);
            return -1;
        }
        if (b->doc_start[i] < 0 || b->doc_start[i] > t || b->pos[i] < 0) {
            snprintf(m->error, sizeof m->error, "row %d: document start %d / position %d do not fit "
                     "position %d in its row", i, b->doc_start[i], b->pos[i], t);
            return -1;
        }
    }
    return 0;
}

int model_forward(model *m, const model_batch *b, float grad_scale, model_loss *loss) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    m->fwd_ready = 0;
    m->dec_n = 0;
    if (check_batch(m, b) != 0) return -1;
    int train = grad_scale > 0.0f;
    if (train && m->opt.train == MODEL_TRAIN_NONE) {
        snprintf(m->error, sizeof m->error, "the model was planned without training");
        return -1;
    }
    if (train && !b->targets) {
        snprintf(m->error, sizeof m->error, "a training forward needs targets");
        return -1;
    }
    int B = b->B, T = b->T, N = B * T, C = c->hidden_size, L = c->num_layers;
    m->fwd_B = B;
    m->fwd_T = T;
    m->fwd_train = train;
    m->fwd_grad_scale = grad_scale;
    m->fwd_seed = b->dropout_seed;
    be->copy_to_device(be, m->d_ids, b->ids, (size_t)N * 4);
    be->copy_to_device(be, m->d_pos, b->pos, (size_t)N * 4);
    be->copy_to_device(be, m->d_doc, b->doc_start, (size_t)N * 4);
    m->doc_packed = attention_rows_packed(b->doc_start, (size_t)N);   // once per batch, on the host
    be->embedding_forward(be, m->resid[0], m->d_ids, m->embed->act, N, C);
    // Sparse MoE: the padding mask, and the load-balancing statistics when the loss has them.
    moe_mask_of(m, b);
    m->moe_stats = m->n_moe_layers > 0 && b->targets != NULL;   // aux is reported even when not trained on
    m->use_aux = 0;
    m->moe_failed = 0;
    if (m->moe_stats) {
        be->memset_zero(be, m->d_prob_sum, (size_t)c->n_experts * 4);
        be->memset_zero(be, m->d_count, (size_t)c->n_experts * 4);
    }
    for (int l = 0; l < L; l++) {
        offload_before_forward(m, l);
        layer_forward(m, l, &m->acts[l], B, T, T);
        offload_after_forward(m, l);
    }
    int stats = m->moe_stats;
    m->moe_stats = 0;   // a recomputing backward must not count its layers again
    if (m->moe_failed) return -1;
    be->rmsnorm_forward(be, m->lnf, m->rstdf, m->resid[L], m->final_norm->act, N, C, c->rms_norm_eps);
    if (loss) memset(loss, 0, sizeof *loss);
    if (train && grad_before(m, L)) {   // lm_head's gradient is written here
        snprintf(m->error, sizeof m->error, "gradient communication failed before the lm_head");
        return -1;
    }
    if (b->targets) {
        be->copy_to_device(be, m->d_targets, b->targets, (size_t)N * 4);
        be->lm_head_loss(be, m->losses, train ? m->dln : NULL, train ? m->lm_head->grad : NULL, m->lnf,
                         m->lm_head->act, m->d_targets, N, C, c->vocab_size, grad_scale);
        be->copy_to_host(be, m->h_losses, m->losses, (size_t)N * 4);
        be->synchronize(be);
        if (loss)
            for (int i = 0; i < N; i++)
                if (b->targets[i] != -1) {
                    loss->sum += m->h_losses[i];
                    loss->tokens++;
                }
    } else {
        memset(m->h_losses, 0, (size_t)N * sizeof *m->h_losses);
        be->synchronize(be);
    }
    if (stats) {
        int64_t tokens = 0;
        for (int i = 0; i < N; i++) tokens += b->targets[i] != -1;
        double aux = 0;
        if (moe_aux_after_forward(m, N, train ? grad_scale : 0.0f, tokens, &aux) != 0) return -1;
        if (loss) {
            loss->aux = aux;
            loss->aux_coef = m->aux_coef;
        }
    }
    m->fwd_ready = 1;
    return 0;
}

int model_backward(model *m) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    if (!m->fwd_ready || !m->fwd_train) {
        snprintf(m->error, sizeof m->error, "model_backward needs a training forward first "
                 "(model_forward with grad_scale > 0)");
        return -1;
    }
    int B = m->fwd_B, T = m->fwd_T, N = B * T, C = c->hidden_size, L = c->num_layers;
    // dln holds ∂loss/∂lnf from lm_head_loss.
    be->memset_zero(be, m->dres, (size_t)N * (size_t)C * act_size(m));
    be->rmsnorm_backward(be, m->dres, m->final_norm->grad, m->dln, m->resid[L], m->final_norm->act,
                         m->rstdf, N, C);
    int rc = 0;
    for (int l = L - 1; l >= 0 && !rc; l--) {
        offload_before_backward(m, l);
        // The shared set still holds the last layer from the forward.
        if (m->opt.checkpoint == MODEL_RECOMPUTE_FULL && l < L - 1) layer_forward(m, l, &m->acts[l], B, T, T);
        if ((rc = grad_before(m, l)) != 0) break;
        layer_backward(m, l, &m->acts[l], B, T);
        rc = grad_after(m, l);
    }
    if (!rc && m->embed->grad) be->embedding_backward(be, m->embed->grad, m->dres, m->d_ids, N, C, c->vocab_size);
    if (!rc) rc = grad_after(m, L);
    be->synchronize(be);
    m->fwd_ready = 0;   // the saved activations were overwritten by recomputation, or are spent
    if (rc) snprintf(m->error, sizeof m->error, "gradient communication failed in the backward");
    return rc;
}

int model_read_losses(model *m, float *host) {
    if (!m->allocated) return -1;
    memcpy(host, m->h_losses, (size_t)m->fwd_B * (size_t)m->fwd_T * sizeof *host);
    return 0;
}

int model_logits_row(model *m, int row, float *host) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    if (!m->allocated || row < 0 || row >= m->fwd_B * m->fwd_T) {
        snprintf(m->error, sizeof m->error, "no row %d in the last forward", row);
        return -1;
    }
    be->linear_forward(be, m->logits_act, act_row(m, m->lnf, (size_t)row, (size_t)c->hidden_size),
                       m->lm_head->act, NULL, 1, c->hidden_size, c->vocab_size, 1.0f, 0);
    be->cast_act_to_f32(be, m->logits_f32, m->logits_act, (size_t)c->vocab_size);
    be->copy_to_host(be, host, m->logits_f32, (size_t)c->vocab_size * 4);
    be->synchronize(be);
    return 0;
}

int model_logits_last(model *m, const int32_t *ids, int n, float *host) {
    if (!m->allocated || n < 1 || n > m->opt.seq_len) {
        snprintf(m->error, sizeof m->error, "a prefix of %d tokens does not fit the planned sequence "
                 "length %d", n, m->opt.seq_len);
        return -1;
    }
    int32_t *pos = malloc((size_t)n * 2 * sizeof *pos);
    if (!pos) {
        snprintf(m->error, sizeof m->error, "out of host memory");
        return -1;
    }
    int32_t *doc = pos + n;
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        doc[i] = 0;
    }
    model_batch b = {.B = 1, .T = n, .ids = ids, .targets = NULL, .pos = pos, .doc_start = doc};
    int rc = model_forward(m, &b, 0.0f, NULL);
    free(pos);
    if (rc != 0) return -1;
    return model_logits_row(m, n - 1, host);
}

// One decoding step with the KV cache: token at position pos (the cache holds 0..pos−1 of the
// same single document); leaves the final-normed row in lnf row 0.
static void decode_step(model *m, int32_t token, int pos) {
    backend *be = m->be;
    const model_config *c = &m->cfg;
    int32_t p = pos;
    be->copy_to_device(be, m->d_ids, &token, 4);
    be->copy_to_device(be, m->d_pos, &p, 4);
    m->fwd_train = 0;   // no dropout while decoding
    m->use_mask = 0;
    be->embedding_forward(be, m->resid[0], m->d_ids, m->embed->act, 1, c->hidden_size);
    for (int l = 0; l < c->num_layers; l++) layer_forward(m, l, &m->acts[l], 1, 1, pos + 1);
    be->rmsnorm_forward(be, m->lnf, m->rstdf, m->resid[c->num_layers], m->final_norm->act, 1,
                        c->hidden_size, c->rms_norm_eps);
    m->fwd_B = m->fwd_T = 1;
    m->fwd_ready = 0;   // the saved activations no longer match a batch
}

static int argmax(const float *x, int n) {
    int best = 0;   // the first maximum, as torch.argmax
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int model_generate_greedy(model *m, const int32_t *prompt, int n_prompt, int n_new, int eos_id,
                          int32_t *out) {
    const model_config *c = &m->cfg;
    if (!m->allocated || n_prompt < 1 || n_new < 0 || n_prompt + n_new > m->opt.seq_len + 1) {
        snprintf(m->error, sizeof m->error, "prompt %d + %d new tokens exceed the planned sequence "
                 "length %d", n_prompt, n_new, m->opt.seq_len);
        return -1;
    }
    int32_t *ids = malloc((size_t)(n_prompt + n_new) * sizeof *ids);
    float *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    if (!ids || !logits) {
        free(ids);
        free(logits);
        snprintf(m->error, sizeof m->error, "out of host memory");
        return -1;
    }
    memcpy(ids, prompt, (size_t)n_prompt * sizeof *ids);
    int n = n_prompt, made = 0;
    while (made < n_new) {
        int rc;
        if (!m->kv_per_layer) {
            rc = model_logits_last(m, ids, n, logits);   // no cache: the whole prefix again
        } else if (made == 0) {
            // The prompt in one pass fills every layer's k and v for positions 0..n−1.
            rc = model_logits_last(m, ids, n, logits);
            if (rc == 0) m->be->memset_zero(m->be, m->d_doc, (size_t)m->opt.seq_len * 4);
        } else {
            decode_step(m, ids[n - 1], n - 1);
            rc = model_logits_row(m, 0, logits);
        }
        if (rc != 0) {
            made = -1;
            break;
        }
        int best = argmax(logits, c->vocab_size);
        out[made++] = best;
        ids[n++] = best;
        if (best == eos_id) break;
    }
    free(ids);
    free(logits);
    return made;
}

int model_decode(model *m, const int32_t *ids, int n, float *host) {
    if (!m->allocated || n < 1 || n > m->opt.seq_len || m->opt.batch_size < 1) {
        snprintf(m->error, sizeof m->error, "a prefix of %d tokens does not fit the planned sequence "
                 "length %d", n, m->opt.seq_len);
        return -1;
    }
    if (!m->kv_per_layer) return model_logits_last(m, ids, n, host);
    if (!m->dec_ids) {
        m->dec_ids = malloc((size_t)m->opt.seq_len * sizeof *m->dec_ids);
        if (!m->dec_ids) {
            snprintf(m->error, sizeof m->error, "out of host memory");
            return -1;
        }
    }
    int k = 0;   // positions already in the cache
    while (k < m->dec_n && k < n && m->dec_ids[k] == ids[k]) k++;
    if (k == n) k = n - 1;   // the same prefix again: recompute its last position for the logits
    int rc;
    if (k > 0) {
        // Positions k..n−1 in one pass over the cached 0..k−1 (one document: d_doc stays zero).
        int T = n - k;
        int32_t *pos = malloc((size_t)T * sizeof *pos);
        if (!pos) {
            snprintf(m->error, sizeof m->error, "out of host memory");
            return -1;
        }
        for (int i = 0; i < T; i++) pos[i] = k + i;
        backend *be = m->be;
        const model_config *c = &m->cfg;
        be->copy_to_device(be, m->d_ids, ids + k, (size_t)T * 4);
        be->copy_to_device(be, m->d_pos, pos, (size_t)T * 4);
        m->use_mask = 0;
        be->embedding_forward(be, m->resid[0], m->d_ids, m->embed->act, T, c->hidden_size);
        for (int l = 0; l < c->num_layers; l++) layer_forward(m, l, &m->acts[l], 1, T, n);
        be->rmsnorm_forward(be, m->lnf, m->rstdf, m->resid[c->num_layers], m->final_norm->act, T,
                            c->hidden_size, c->rms_norm_eps);
        be->synchronize(be);
        free(pos);
        m->fwd_B = 1;
        m->fwd_T = T;
        m->fwd_ready = 0;
        rc = model_logits_row(m, T - 1, host);
    } else {
        // A new prefix: one batched pass fills every layer's k and v.
        rc = model_logits_last(m, ids, n, host);
        if (rc == 0) m->be->memset_zero(m->be, m->d_doc, (size_t)m->opt.seq_len * 4);
    }
    if (rc != 0) {
        m->dec_n = 0;
        return -1;
    }
    memcpy(m->dec_ids, ids, (size_t)n * sizeof *ids);
    m->dec_n = n;
    return 0;
}

model *model_load(const char *dir, backend *be, const model_options *opt, const lora_config *lora,
                  FILE *plan_out, char *err, size_t errlen) {
    model *m = model_open(dir, be, err, errlen);
    if (!m) return NULL;
    model_memory plan;
    if ((lora && model_enable_lora(m, lora, err, errlen) != 0) ||
        model_plan(m, opt, &plan, err, errlen) != 0) {
        model_free(m);
        return NULL;
    }
    if (plan_out) model_memory_print(&plan, plan_out);
    if (model_allocate(m, err, errlen) != 0) {
        model_free(m);
        return NULL;
    }
    return m;
}
