// model/names.h — the Hugging Face tensor names and shapes a config implies, kept in one place:
// the model loader, `quarry init`, export and preflight all enumerate checkpoints through it.
//   model.embed_tokens.weight                       [V, C]
//   model.layers.N.input_layernorm.weight           [C]
//   model.layers.N.self_attn.q_proj.weight          [H*hd, C]   (+ .bias [H*hd] with attention_bias)
//   model.layers.N.self_attn.k_proj.weight          [KV*hd, C]  (+ .bias [KV*hd])
//   model.layers.N.self_attn.v_proj.weight          [KV*hd, C]  (+ .bias [KV*hd])
//   model.layers.N.self_attn.o_proj.weight          [C, H*hd]
//   model.layers.N.self_attn.q_norm.weight          [hd]        (qk_norm: Qwen3)
//   model.layers.N.self_attn.k_norm.weight          [hd]        (qk_norm)
//   model.layers.N.post_attention_layernorm.weight  [C]
//   model.layers.N.mlp.gate_proj.weight             [F, C]
//   model.layers.N.mlp.up_proj.weight               [F, C]
//   model.layers.N.mlp.down_proj.weight             [C, F]
//   sparse MoE layers instead (model_config_layer_is_moe), Qwen3-MoE:
//   model.layers.N.mlp.gate.weight                  [E, C]      router
//   model.layers.N.mlp.experts.X.gate_proj.weight   [I, C]      expert X = 0 .. E-1
//   model.layers.N.mlp.experts.X.up_proj.weight     [I, C]
//   model.layers.N.mlp.experts.X.down_proj.weight   [C, I]
//   Mixtral: model.layers.N.block_sparse_moe.gate.weight, ...block_sparse_moe.experts.X.{w1,w3,w2}
//   (w1 gate, w3 up, w2 down), the shapes as above with I = intermediate_size.
//   gpt-oss (GptOssForCausalLM) instead, as transformers' modules name them (fused experts):
//   model.layers.N.self_attn.o_proj.bias            [C]         (attention_bias: q/k/v/o)
//   model.layers.N.self_attn.sinks                  [H]
//   model.layers.N.mlp.router.weight / .bias        [E, C] / [E]
//   model.layers.N.mlp.experts.gate_up_proj         [E, C, 2I]  gate and up interleaved in the last dim
//   model.layers.N.mlp.experts.gate_up_proj_bias    [E, 2I]     (gate at even, up at odd indices)
//   model.layers.N.mlp.experts.down_proj            [E, I, C]
//   model.layers.N.mlp.experts.down_proj_bias       [E, C]
//   The decoder keeps the experts expert-major (model_tensor_read unpacks them): per expert the
//   Qwen3-MoE names above, and per layer the bias stacks mlp.experts.{gate,up,down}_bias
//   [E, I] / [E, I] / [E, C].
//   model.norm.weight                               [C]
//   lm_head.weight                                  [V, C]      (absent when embeddings are tied)
#pragma once
#include "config.h"
#include "safetensors.h"
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TENSOR_EMBED = 0,
    TENSOR_ATTN_NORM,
    TENSOR_Q,
    TENSOR_Q_BIAS,
    TENSOR_K,
    TENSOR_K_BIAS,
    TENSOR_V,
    TENSOR_V_BIAS,
    TENSOR_O,
    TENSOR_MLP_NORM,
    TENSOR_GATE,
    TENSOR_UP,
    TENSOR_DOWN,
    TENSOR_FINAL_NORM,
    TENSOR_LM_HEAD,
    TENSOR_Q_NORM,
    TENSOR_K_NORM,
    TENSOR_ROUTER,
    TENSOR_EXPERT_GATE,
    TENSOR_EXPERT_UP,
    TENSOR_EXPERT_DOWN,
    TENSOR_O_BIAS,
    TENSOR_SINKS,
    TENSOR_ROUTER_BIAS,
    TENSOR_EXPERTS_GATE_UP,        // gpt-oss's fused checkpoint tensors
    TENSOR_EXPERTS_GATE_UP_BIAS,
    TENSOR_EXPERTS_DOWN,
    TENSOR_EXPERTS_DOWN_BIAS,
    TENSOR_EXPERT_GATE_BIAS,       // the decoder's bias stacks (E, I), (E, I), (E, C)
    TENSOR_EXPERT_UP_BIAS,
    TENSOR_EXPERT_DOWN_BIAS,
} tensor_role;

// How transformers initialises each kind (for `quarry init`).
typedef enum { TENSOR_INIT_NORMAL = 0, TENSOR_INIT_ONES, TENSOR_INIT_ZEROS } tensor_init;

typedef struct {
    char name[96];
    tensor_role role;
    int layer;              // -1 outside the decoder layers
    int expert;             // the expert of TENSOR_EXPERT_*, else -1
    int ndim;               // 1, 2 or 3 (gpt-oss's fused experts)
    int64_t shape[3];
    tensor_init init;
} model_tensor_info;

// The number of tensors the config implies.
int model_tensor_count(const model_config *cfg);

// Fills out[0 .. model_tensor_count) in model order (embedding, layer 0 .. L-1, final norm,
// lm_head). Returns the count.
int model_tensor_list(const model_config *cfg, model_tensor_info *out);

// The HF name of one tensor (layer ignored outside the layers) of a dense layer.
void model_tensor_name(tensor_role role, int layer, char *buf, size_t n);
// Any tensor's name, the MoE ones included (expert ignored unless TENSOR_EXPERT_*).
void model_tensor_name_of(const model_config *cfg, tensor_role role, int layer, int expert, char *buf, size_t n);

// Reads the decoder's parameter `name` (n elements) from the checkpoint as f32: the tensor of
// that name (mxfp4 set: or its dequantised _blocks/_scales pair, model/mxfp4_load.h), or for
// gpt-oss's experts the expert's gate/up/down (de-interleaved, transposed) or bias stack cut from
// the fused tensors, an MXFP4 pair dequantised one expert at a time. 0 ok; -1 with a message
// naming source and the tensor.
int model_tensor_read(const model_config *cfg, const st_set *s, const char *name, int mxfp4, float *dst, size_t n,
                      const char *source, char *err, size_t errlen);

// gpt-oss's expert matrix `name` (model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight, W
// (out, in)) kept packed: its MXFP4 rows copied from the fused pair as they are stored — gate's
// the even rows of gate_up_proj_blocks[E], up's the odd ones, down's down_proj_blocks[E] — into
// blocks (out, in/2) and scales (out, in/32) (kernels/mxfp4_format.h's mxfp4_tensor), which
// dequantise to model_tensor_read's f32 bit for bit.  0; -1 with a message when the checkpoint
// does not hold the pair or its blocks are not of 32 values.
int model_expert_mxfp4_read(const model_config *cfg, const st_set *s, const char *name, uint8_t *blocks,
                            uint8_t *scales, const char *source, char *err, size_t errlen);

// The checkpoint tensor t (as model_tensor_list gives it) as f32 in dst: the tensor of that name
// in s, or for gpt-oss's fused experts its MXFP4 pair dequantised (a published checkpoint), or,
// when s holds the decoder's expert-major tensors instead (a run's weights), packed back from
// them (model_tensor_read's inverse). 0 ok; -1 + message naming source.
int model_tensor_pack(const model_config *cfg, const st_set *s, const model_tensor_info *t, float *dst,
                      const char *source, char *err, size_t errlen);

// Checks a checkpoint against the config: every expected tensor present with its shape and a
// float dtype (F32/F16/BF16), nothing unexpected. Tolerated as transformers does: rotary
// `inv_freq` buffers of older checkpoints, and an lm_head.weight beside tied embeddings (unused).
// 0 ok; -1 with a message naming the tensor.
int model_tensor_check(const model_config *cfg, const st_set *s, const char *source, char *err, size_t errlen);
