// model/lora_peft.h — gpt-oss's expert adapters as PEFT stores them (target_parameters, one
// ParamWrapper per fused tensor) and as quarry trains them (one adapter per expert).
//
// PEFT 0.21.2, peft/tuners/lora/layer.py, class ParamWrapper, on a 3-D parameter (E, d1, d2) of a
// module with is_transposed (transformers 5.24's GptOssExperts: @use_experts_implementation(
// is_transposed=True), its forward x·W[e] with W[e] (in, out)):
//   in = d1, out = d2                           _get_in_out_features (:2397-2398); no swap (:2437)
//   lora_A (r·E, in), lora_B (out, r·E)         update_layer (:2455-2456)
//   ΔW[e][i][o] = scaling · Σ_ρ B[o][ρ·E + e] · A[e·r + ρ][i]
//                 get_delta_weight (:2551-2557): A.reshape(E, r, in), B.reshape(out, r, E),
//                 einsum("o r e, e r i -> e i o")
//   scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (:2459-2462); lora_dropout
//   must be 0 (:2363-2366); A Kaiming-uniform (bound 1/sqrt(in)), B zero, as lora.Linear.
// So the delta is separable per expert: expert e's adapter is an ordinary LoRA with
// A_e = A's rows e·r .. e·r + r − 1 (r, in) and B_e = B's columns e, E + e, 2E + e, .. (out, r)
// (A expert-major, B expert-minor). In quarry's terms (W (out, in), y = x·Wᵀ):
//   gate_up_proj (E, C, 2I), gate at even and up at odd columns: one adapter per expert with
//     A_e (r, C) shared by gate and up, and B_e (2I, r) = [B's even rows; B's odd rows] (gate's I
//     rows, then up's), quarry's "experts.E.gate_up_proj" (model/moe/adapters.h, gate_up);
//   down_proj (E, I, C): A_e (r, I), B_e (C, r), quarry's "experts.E.down_proj".
// The router's weight (E, C) is 2-D: ParamWrapper is lora.Linear's LoRA there (num_experts 1,
// in = C, out = E, :2399-2400), the same tensors as quarry's router adapter.
//
// Names: PEFT nests the wrappers of one module, the first parameter targeted innermost. With both
// fused tensors adapted (quarry always adapts both), PEFT 0.21.2's saved names are
//   base_model.model.model.layers.L.mlp.experts.base_layer.lora_{A,B}.weight   gate_up_proj
//   base_model.model.model.layers.L.mlp.experts.lora_{A,B}.weight              down_proj
//   base_model.model.model.layers.L.mlp.router.lora_{A,B}.weight               router.weight
// (written by peft.get_peft_model(...).save_pretrained on the tiny gpt_oss fixture).
#pragma once
#include "llama.h"
#include "lora.h"
#include "safetensors.h"
#include <stddef.h>

// Where a trained quarry tensor lives in PEFT's file: the fused tensor's name and expert e's part.
typedef struct {
    char name[256];   // PEFT's tensor holding it
    int expert, n_experts, rank;
    int is_b;         // 0: A (r·E, in); 1: B (out, r·E)
    int in, out;      // the fused tensor's in and out (gate_up: C and 2I; down: I and C)
    int gate_up;      // quarry's B_e (2I, r) is gate's rows then up's; PEFT's rows interleave them
} lora_peft_part;

// 1 and *part filled when p is an expert adapter of gpt-oss's fused experts; 0 for every other
// tensor (which PEFT stores under quarry's name, as it is).
int lora_peft_part_of(const model *m, const model_param *p, lora_peft_part *part);

// Expert part->expert's tensor (quarry's layout: A (r, in) or B (out, r)) from PEFT's fused
// tensor `fused`, and back into it (the other experts' values left as they are).
void lora_peft_unpack(const lora_peft_part *part, const float *fused, float *q);
void lora_peft_pack(const lora_peft_part *part, const float *q, float *fused);

// The fused tensor's element count: r·E·in (A) or out·r·E (B).
size_t lora_peft_fused_numel(const lora_peft_part *part);

// Writes m's trained adapters (host: their f32 values back to back in model_trained_at order) to
// path as PEFT's adapter_model.safetensors: gpt-oss's expert adapters packed into PEFT's fused
// tensors, every other tensor as it is. 0, or -1 with a message.
int lora_peft_write(const char *path, model *m, const float *host, char *err, size_t errlen);

// Reads PEFT's fused expert tensors of st into m's expert adapters (every one must be there).
// Returns how many of st's tensors it consumed, or -1 with a message.
int lora_peft_read_experts(model *m, const st_set *st, const char *path, char *err, size_t errlen);

// lora_peft_is_fused_name: model/lora.h.
