// model/config.h — a Hugging Face config.json read into the shape of a Llama-family decoder:
// LlamaForCausalLM (Llama 2, 3, 3.1–3.3), MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
// and the sparse mixture-of-experts Qwen3MoeForCausalLM, MixtralForCausalLM and GptOssForCausalLM.
// The architecture only chooses defaults and settings: the decoder reads the properties below
// (biases, q/k norm, window), never the architecture (model/llama.c's block kinds). Anything
// else, or a setting this code does not implement, is refused with what is supported.
#pragma once
#include <stddef.h>

typedef enum { ARCH_LLAMA = 0, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3, ARCH_QWEN3_MOE, ARCH_MIXTRAL, ARCH_GPT_OSS } model_arch;

#define MODEL_MAX_MLP_ONLY 256
#define MODEL_MAX_LAYER_TYPES 1024
typedef enum { ROPE_SCALING_NONE = 0, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3, ROPE_SCALING_YARN } rope_scaling_type;

typedef struct {
    model_arch arch;
    char architecture[64];       // "LlamaForCausalLM", ...
    int vocab_size;
    int hidden_size;             // C
    int intermediate_size;       // F: the dense MLP's (Mixtral: each expert's)
    int num_layers;
    int num_heads;
    int num_kv_heads;
    int head_dim;                // config.json's, else hidden_size / num_heads (Qwen3: 128)
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    rope_scaling_type rope_scaling;
    float rope_factor;                    // linear and llama3
    float rope_low_freq_factor;           // llama3
    float rope_high_freq_factor;          // llama3
    int rope_original_max_position;       // llama3, yarn
    float rope_beta_fast, rope_beta_slow; // yarn
    int rope_truncate;                    // yarn: floor/ceil the correction range (default true)
    float rope_attention_factor;          // yarn: multiplies cos and sin (1 otherwise)
    int tie_word_embeddings;
    int attention_bias;          // q/k/v biases (Qwen2: always; Llama: attention_bias)
    int qk_norm;                 // per-head RMSNorm of q and k (weight (head_dim)) before RoPE: Qwen3
    int mlp_bias;                // refused when set (no supported model uses it)
    int sliding_window;          // Mistral (every layer), gpt-oss (the sliding_attention layers); 0 = none
    // gpt-oss: layer_types; layer l uses sliding_window when layer_sliding[l] (else full
    // attention). n_layer_types 0: every layer uses sliding_window (model_config_layer_window).
    int n_layer_types;
    unsigned char layer_sliding[MODEL_MAX_LAYER_TYPES];
    int attention_sinks;         // gpt-oss: one learned logit per head joins each softmax (sinks (H))
    int o_bias;                  // o_proj bias (gpt-oss: attention_bias covers q, k, v and o)
    int bos_token_id, eos_token_id;      // -1 when absent (eos may be a list: the first)
    char torch_dtype[16];        // "bfloat16", "float16", "float32" (recorded for export)
    float initializer_range;     // for `quarry init`
    // Sparse MoE (Qwen3-MoE, Mixtral); n_experts 0: every layer's MLP is dense. Which layers
    // are sparse: model_config_layer_is_moe.
    int n_experts;               // num_experts (Qwen3-MoE) / num_local_experts (Mixtral)
    int top_k;                   // num_experts_per_tok (≤ n_experts)
    int moe_intermediate_size;   // each expert's I (Mixtral: intermediate_size)
    int norm_topk_prob;          // renormalise the top-k weights (Mixtral: always)
    int decoder_sparse_step;     // Qwen3-MoE: layer l is sparse when (l + 1) % step == 0 ...
    int n_mlp_only;              // ... and l is not one of mlp_only_layers[0 .. n_mlp_only)
    int mlp_only_layers[MODEL_MAX_MLP_ONLY];
    float router_aux_loss_coef;  // config.json's
    int output_router_logits;    // transformers adds coef·aux to the loss only when this is true
    // gpt-oss's MoE variant: the router has a bias (E) and routes by top-k of the logits then a
    // softmax over the chosen k; every expert projection has a bias; the experts' activation is
    // the clamped SwiGLU (up + 1)·g·σ(alpha·g), g = min(gate, limit), up clamped to ±limit.
    int router_bias;
    int expert_bias;
    float swiglu_alpha, swiglu_limit;   // swiglu_limit 0: the plain SwiGLU
    // The published checkpoint stores the experts fused (gpt-oss: gate_up_proj (E, C, 2I)) and
    // the router as a module PEFT cannot wrap: no per-expert or router adapter has a name there.
    int experts_fused;
} model_config;

// The sliding window of layer l in tokens (0: full attention).
int model_config_layer_window(const model_config *cfg, int l);

// 1 when layer l's MLP is a sparse MoE block, 0 when dense.
int model_config_layer_is_moe(const model_config *cfg, int l);
// The coefficient of the load-balancing loss in the trained objective: router_aux_loss_coef
// when output_router_logits is true (as transformers' *ForCausalLM.forward), else 0.
double model_config_aux_coef(const model_config *cfg);

// Reads DIR/config.json (or a config.json path). 0 on success; with a message in err, -1 when the
// config cannot describe a decoder (unreadable, not JSON, a size missing, mistyped, too large or
// inconsistent), -2 when it is well formed but asks for what quarry does not implement (another
// architecture, rope type, activation, biases, sliding window, dtype).
int model_config_load(model_config *cfg, const char *path, char *err, size_t errlen);

// The same from JSON text (for tests and `quarry init`).
int model_config_parse(model_config *cfg, const char *json, const char *source_name, char *err, size_t errlen);

// inv_freq (head_dim/2 floats) with the config's rope scaling, as transformers computes it.
void model_config_rope_inv_freq(const model_config *cfg, float *inv_freq);

// Parameter count of the full model (embeddings counted once when tied).
size_t model_config_num_params(const model_config *cfg);
