// cli/model_ref.h — `--model DIR|RUN` for generate and eval: a Hugging Face checkpoint
// directory, or a run directory written by `quarry train` (run.json's "base_model" plus
// RUN/final/: a PEFT LoRA adapter applied on top of the base without merging, or the tensors
// of a full fine-tune read over the base's).
#pragma once
#include <stddef.h>
#include "../model/llama.h"

typedef struct {
    char base_dir[4096];      // the checkpoint: config.json, weights, tokenizer, chat template
    char run_dir[4096];       // "" when --model named a checkpoint
    char template_name[64];   // run.json "template" (the family training rendered with); "" none
    int lora;                 // 1: weights is a PEFT adapter with settings lc
    lora_config lc;
    char weights[4200];       // RUN/final/adapter_model.safetensors or model.safetensors; "" none
    model_quant quant;        // run.json's settings.quantize (QLoRA: the base loads in 4-bit NF4)
    int experts_mxfp4;        // gpt-oss's experts kept in MXFP4: run.json's settings.experts_dtype
                              // (absent: dequantised, as runs before the setting trained); a bare
                              // checkpoint: when its experts are MXFP4 (frozen for inference)
} model_ref;

// Resolves arg. A directory holding run.json is a run: its final/ must exist and its base must be
// the one run.json records (config, tokenizer and weight hashes). 0 ok; -1 + message.
int model_ref_resolve(const char *arg, model_ref *out, char *err, size_t errlen);
// Opens the base (in 4-bit NF4 when the run trained so, whatever opt->quant says; its experts in
// MXFP4 as experts_mxfp4 says, whatever opt->experts_mxfp4 says), enables the
// adapter (dropout 0: inference), plans opt, allocates and writes
// the run's tensors by name (every one must be a tensor of the model, of its shape).
model *model_ref_load(const model_ref *r, backend *be, const model_options *opt, char *err, size_t errlen);
// Short description for status lines: "DIR" or "RUN (LoRA r 8 on DIR)".
void model_ref_describe(const model_ref *r, char *buf, size_t len);
