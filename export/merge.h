// export/merge.h — LoRA adapters folded into base weights: W' = W + scale·B·A with
// scale = alpha/r (alpha/sqrt(r) with rsLoRA). Each element is computed once in wide precision
// (the r-term dot product accumulated in double, then one rounding to fp32) and rounded ONCE
// more to the package dtype with round-to-nearest-even — never through an intermediate bf16.
// Adapters are read as PEFT writes them: adapter_config.json (r, lora_alpha, use_rslora,
// target_modules, base_model_name_or_path) beside adapter_model.safetensors holding
//   base_model.model.<module>.lora_A.weight   (r, in)
//   base_model.model.<module>.lora_B.weight   (out, r)
// for each adapted <module>, e.g. model.layers.3.self_attn.q_proj.
#pragma once
#include "../model/safetensors.h"
#include <stddef.h>
#include <stdint.h>

struct cJSON;

typedef struct {
    char dir[4096];
    int r;
    double alpha;
    int rslora;
    double scale;                 // alpha / r, or alpha / sqrt(r)
    const char *base_model;       // base_model_name_or_path, or "" (points into config)
    struct cJSON *config;         // adapter_config.json as parsed
    st_set *weights;              // adapter_model.safetensors (mmap)
    int pairs;                    // number of lora_A tensors (each with its lora_B)
} merge_adapter;

// Opens DIR/adapter_config.json and DIR/adapter_model.safetensors and checks them: LORA, r ≥ 1,
// lora_alpha > 0, no DoRA / rank_pattern / alpha_pattern / fan_in_fan_out (not mergeable here),
// every lora_A with its lora_B, shapes (r, in) and (out, r). 0 ok; -1 with a message.
int merge_adapter_open(merge_adapter *a, const char *dir, char *err, size_t errlen);
void merge_adapter_close(merge_adapter *a);

// The adapter of one base weight ("model.layers.3.self_attn.q_proj.weight", shape out × in):
// 1 with *A, *B set, 0 when the weight has no adapter, -1 when the adapter's shapes do not fit
// the weight (message).
int merge_adapter_find(const merge_adapter *a, const char *weight_name, int64_t out, int64_t in,
                       const st_tensor **A, const st_tensor **B, char *err, size_t errlen);

// gpt-oss's fused expert tensor ("model.layers.3.mlp.experts.gate_up_proj" or ".down_proj", shape
// E × in × out) in PEFT's target_parameters layout (model/lora_peft.h): 1 with *A (r·E, in) and
// *B (out, r·E), 0 when it has no adapter, -1 when the shapes do not fit (message).
int merge_adapter_find_fused(const merge_adapter *a, const char *tensor_name, int64_t E, int64_t in, int64_t out,
                             const st_tensor **A, const st_tensor **B, char *err, size_t errlen);

// w (E, in, out) ← w + scale · ΔW, ΔW[e][i][o] = Σ_ρ b[o][ρ·E + e] · a[e·r + ρ][i] (PEFT's
// ParamWrapper.get_delta_weight), each element in double and rounded once to fp32.
void merge_lora_fused_f32(float *w, const float *a, const float *b, int64_t E, int64_t in, int64_t out, int r,
                          double scale);

// w (out, in) ← w + scale · b (out, r) · a (r, in), in place, element by element as
// (float)((double)w + scale · Σ_k (double)b[o,k]·a[k,i]). OpenMP over rows.
void merge_lora_f32(float *w, const float *a, const float *b, int64_t out, int64_t in, int r, double scale);

// f32 → dtype: F32 copied, BF16 and F16 rounded to nearest even. dst holds n elements of dtype
// (may alias src only for F32).
void merge_convert(const float *src, size_t n, st_dtype dtype, void *dst);

// Bytes per element of F32/F16/BF16 (0 otherwise).
size_t merge_dtype_size(st_dtype d);
