// tests/config_llama31_8b.h — Llama-3.1-8B's config.json as published, for memory-plan tests
// that need no weights (model_open_config).
#pragma once
#include "model/llama.h"
#include "test.h"

static const char LLAMA31_8B_CONFIG[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
    "\"hidden_size\": 4096, \"intermediate_size\": 14336, \"num_hidden_layers\": 32, "
    "\"num_attention_heads\": 32, \"num_key_value_heads\": 8, \"vocab_size\": 128256, "
    "\"max_position_embeddings\": 131072, \"rms_norm_eps\": 1e-05, \"rope_theta\": 500000.0, "
    "\"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
    "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, "
    "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"hidden_act\": \"silu\", "
    "\"bos_token_id\": 128000, \"eos_token_id\": 128001}";

// The 8B model without weights, bf16 activations as on a GPU; NULL (a failed check) on error.
static inline model *open_llama31_8b(void) {
    char err[512];
    model_config cfg;
    CHECK(model_config_parse(&cfg, LLAMA31_8B_CONFIG, "llama-3.1-8b/config.json", err, sizeof err) == 0, "parse: %s",
          err);
    model *m = model_open_config(&cfg, DTYPE_BF16, err, sizeof err);
    CHECK(m != NULL, "open config: %s", err);
    return m;
}
