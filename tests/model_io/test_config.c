// tests/model_io/test_config.c — config.json parsing: the published configs in examples/configs/
// give the published parameter counts and fields; unsupported settings are refused by name.
#include "model/config.h"
#include "test.h"

static void check_published(const char *src_dir) {
    static const struct {
        const char *file;
        model_arch arch;
        int V, C, F, L, H, KV, hd, tied, bias, window, bos, eos;
        float theta;
        rope_scaling_type rs;
        float factor;
        size_t params;
        const char *dtype;
    } cases[] = {
        {"Llama-3.1-8B.json", ARCH_LLAMA, 128256, 4096, 14336, 32, 32, 8, 128, 0, 0, 0, 128000, 128001, 500000.0f,
         ROPE_SCALING_LLAMA3, 8.0f, 8030261248u, "bfloat16"},
        {"Llama-3.2-1B.json", ARCH_LLAMA, 128256, 2048, 8192, 16, 32, 8, 64, 1, 0, 0, 128000, 128001, 500000.0f,
         ROPE_SCALING_LLAMA3, 32.0f, 1235814400u, "bfloat16"},
        {"Llama-2-7b.json", ARCH_LLAMA, 32000, 4096, 11008, 32, 32, 32, 128, 0, 0, 0, 1, 2, 10000.0f, ROPE_SCALING_NONE,
         1.0f, 6738415616u, "float16"},
        {"Mistral-7B-v0.3.json", ARCH_MISTRAL, 32768, 4096, 14336, 32, 32, 8, 128, 0, 0, 0, 1, 2, 1000000.0f,
         ROPE_SCALING_NONE, 1.0f, 7248023552u, "bfloat16"},
        {"Qwen2.5-0.5B.json", ARCH_QWEN2, 151936, 896, 4864, 24, 14, 2, 64, 1, 1, 0, 151643, 151643, 1000000.0f,
         ROPE_SCALING_NONE, 1.0f, 494032768u, "bfloat16"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4096], err[1024];
        snprintf(path, sizeof path, "%s/examples/configs/%s", src_dir, cases[i].file);
        model_config c;
        int rc = model_config_load(&c, path, err, sizeof err);
        CHECK(rc == 0, "%s: %s", cases[i].file, err);
        if (rc) continue;
        CHECK(c.arch == cases[i].arch, "%s arch %d", cases[i].file, (int)c.arch);
        CHECK(c.vocab_size == cases[i].V && c.hidden_size == cases[i].C && c.intermediate_size == cases[i].F,
              "%s dims V=%d C=%d F=%d", cases[i].file, c.vocab_size, c.hidden_size, c.intermediate_size);
        CHECK(c.num_layers == cases[i].L && c.num_heads == cases[i].H && c.num_kv_heads == cases[i].KV &&
                  c.head_dim == cases[i].hd,
              "%s L=%d H=%d KV=%d hd=%d", cases[i].file, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim);
        CHECK(c.tie_word_embeddings == cases[i].tied, "%s tied %d", cases[i].file, c.tie_word_embeddings);
        CHECK(c.attention_bias == cases[i].bias, "%s attention_bias %d", cases[i].file, c.attention_bias);
        CHECK(c.sliding_window == cases[i].window, "%s sliding_window %d", cases[i].file, c.sliding_window);
        CHECK(c.bos_token_id == cases[i].bos && c.eos_token_id == cases[i].eos, "%s bos %d eos %d", cases[i].file,
              c.bos_token_id, c.eos_token_id);
        CHECK(c.rope_theta == cases[i].theta, "%s rope_theta %g", cases[i].file, c.rope_theta);
        CHECK(c.rope_scaling == cases[i].rs && c.rope_factor == cases[i].factor, "%s rope scaling %d factor %g",
              cases[i].file, (int)c.rope_scaling, c.rope_factor);
        CHECK(model_config_num_params(&c) == cases[i].params, "%s num_params %zu, published %zu", cases[i].file,
              model_config_num_params(&c), cases[i].params);
        CHECK(!strcmp(c.torch_dtype, cases[i].dtype), "%s torch_dtype %s", cases[i].file, c.torch_dtype);
        CHECK(c.rms_norm_eps == (cases[i].arch == ARCH_QWEN2 ? 1e-6f : 1e-5f), "%s rms_norm_eps %g", cases[i].file,
              c.rms_norm_eps);
        CHECK(c.initializer_range == 0.02f, "%s initializer_range %g", cases[i].file, c.initializer_range);
        if (cases[i].rs == ROPE_SCALING_LLAMA3)
            CHECK(c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f &&
                      c.rope_original_max_position == 8192,
                  "%s llama3 fields %g %g %d", cases[i].file, c.rope_low_freq_factor, c.rope_high_freq_factor,
                  c.rope_original_max_position);
    }
}

#define BASE "\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":48," \
             "\"num_hidden_layers\":2,\"num_attention_heads\":4"

#define MOE_BASE "\"architectures\":[\"Qwen3MoeForCausalLM\"],\"vocab_size\":64,\"hidden_size\":32," \
                 "\"intermediate_size\":48,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_experts\":8," \
                 "\"moe_intermediate_size\":16"
#define MIXTRAL_BASE "\"architectures\":[\"MixtralForCausalLM\"],\"vocab_size\":64,\"hidden_size\":32," \
                     "\"intermediate_size\":48,\"num_hidden_layers\":2,\"num_attention_heads\":4," \
                     "\"num_key_value_heads\":2"

#define GPTOSS_BASE "\"architectures\":[\"GptOssForCausalLM\"],\"vocab_size\":64,\"hidden_size\":32," \
                    "\"intermediate_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2," \
                    "\"num_local_experts\":4"

// A config that must be refused, with a message containing want.
static void refused(const char *json, const char *want) {
    model_config c;
    char err[1024] = "";
    int rc = model_config_parse(&c, json, "t.json", err, sizeof err);
    CHECK(rc < 0, "accepted: %s", json);
    CHECK(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
    CHECK(strncmp(err, "t.json: error: ", 15) == 0, "message \"%s\" does not name the file", err);
}

static model_config accepted(const char *json) {
    model_config c;
    char err[1024] = "";
    int rc = model_config_parse(&c, json, "t.json", err, sizeof err);
    CHECK(rc == 0, "refused: %s: %s", json, err);
    return c;
}

static void check_variants(void) {
    // Defaults as transformers' LlamaConfig: kv heads = heads, theta 10000, eps 1e-6, bos 1, eos 2.
    model_config c = accepted("{" BASE "}");
    CHECK(c.num_kv_heads == 4 && c.head_dim == 8 && c.rope_theta == 10000.0f && c.rms_norm_eps == 1e-6f &&
              c.bos_token_id == 1 && c.eos_token_id == 2 && c.max_position_embeddings == 2048 &&
              c.rope_scaling == ROPE_SCALING_NONE && !c.tie_word_embeddings && !c.attention_bias,
          "defaults: kv %d hd %d theta %g eps %g bos %d eos %d maxpos %d", c.num_kv_heads, c.head_dim, c.rope_theta,
          c.rms_norm_eps, c.bos_token_id, c.eos_token_id, c.max_position_embeddings);
    // eos as a list (Llama-3.1-Instruct); explicit head_dim; null bos.
    c = accepted("{" BASE ",\"eos_token_id\":[128001,128008,128009],\"bos_token_id\":null,\"head_dim\":16}");
    CHECK(c.eos_token_id == 128001 && c.bos_token_id == -1 && c.head_dim == 16, "eos %d bos %d hd %d",
          c.eos_token_id, c.bos_token_id, c.head_dim);
    // rope_scaling spelled with "type"; linear factor.
    c = accepted("{" BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}}");
    CHECK(c.rope_scaling == ROPE_SCALING_LINEAR && c.rope_factor == 4.0f, "linear: %d %g", (int)c.rope_scaling,
          c.rope_factor);
    // transformers 5 writes rope_parameters with rope_theta inside, and "dtype".
    c = accepted("{" BASE ",\"dtype\":\"float16\",\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,"
                 "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}");
    CHECK(c.rope_scaling == ROPE_SCALING_LLAMA3 && c.rope_theta == 500000.0f && c.rope_original_max_position == 8192 &&
              !strcmp(c.torch_dtype, "float16"),
          "rope_parameters: %d %g %d %s", (int)c.rope_scaling, c.rope_theta, c.rope_original_max_position, c.torch_dtype);
    c = accepted("{" BASE ",\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1000.0}}");
    CHECK(c.rope_scaling == ROPE_SCALING_NONE && c.rope_theta == 1000.0f, "default rope_parameters %g", c.rope_theta);
    // llama3 without original_max_position_embeddings falls back on max_position_embeddings.
    c = accepted("{" BASE ",\"max_position_embeddings\":4096,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
                 "\"low_freq_factor\":1,\"high_freq_factor\":4}}");
    CHECK(c.rope_original_max_position == 4096, "llama3 original max %d", c.rope_original_max_position);
    // Llama attention_bias; Mistral window and default; Qwen2 biases always.
    c = accepted("{" BASE ",\"attention_bias\":true}");
    CHECK(c.attention_bias == 1, "attention_bias %d", c.attention_bias);
    c = accepted("{\"architectures\":[\"MistralForCausalLM\"],\"vocab_size\":64,\"hidden_size\":32,"
                 "\"intermediate_size\":48,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                 "\"sliding_window\":4096}");
    CHECK(c.arch == ARCH_MISTRAL && c.sliding_window == 4096 && c.num_kv_heads == 2, "mistral window %d",
          c.sliding_window);
    c = accepted("{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":48,"
                 "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"sliding_window\":32768,\"use_sliding_window\":false}");
    CHECK(c.arch == ARCH_QWEN2 && c.attention_bias == 1 && c.sliding_window == 0 && c.eos_token_id == -1,
          "qwen2 via model_type: bias %d window %d", c.attention_bias, c.sliding_window);
    CHECK(!strcmp(c.architecture, "Qwen2ForCausalLM"), "architecture %s", c.architecture);
    // Qwen3 (0.6B's published shape): q/k norms, head_dim 128 ≠ 1024/16, tied, no biases; and
    // Qwen3Config's head_dim default of 128 when the key is absent.
#define QWEN3 "\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":151936,\"hidden_size\":1024," \
              "\"intermediate_size\":3072,\"num_hidden_layers\":28,\"num_attention_heads\":16,\"num_key_value_heads\":8"
    c = accepted("{" QWEN3 ",\"head_dim\":128,\"rope_theta\":1000000,\"tie_word_embeddings\":true,\"attention_bias\":false,"
                 "\"use_sliding_window\":false,\"sliding_window\":null,\"max_window_layers\":28,\"bos_token_id\":151643,"
                 "\"eos_token_id\":151645,\"layer_types\":[\"full_attention\",\"full_attention\"]}");
    CHECK(c.arch == ARCH_QWEN3 && c.qk_norm == 1 && c.head_dim == 128 && !c.attention_bias && c.sliding_window == 0 &&
              c.tie_word_embeddings && c.eos_token_id == 151645 && c.rope_theta == 1e6f &&
              model_config_num_params(&c) == 596049920u,
          "qwen3: qk_norm %d hd %d bias %d window %d params %zu", c.qk_norm, c.head_dim, c.attention_bias,
          c.sliding_window, model_config_num_params(&c));
    c = accepted("{\"architectures\":[\"Qwen3ForCausalLM\"],\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":48,"
                 "\"num_hidden_layers\":2,\"num_attention_heads\":4}");
    CHECK(c.head_dim == 128 && c.bos_token_id == -1 && c.max_position_embeddings == 32768, "qwen3 defaults: hd %d bos %d",
          c.head_dim, c.bos_token_id);
    c = accepted("{\"model_type\":\"qwen3\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":48,"
                 "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"head_dim\":16}");
    CHECK(c.arch == ARCH_QWEN3 && c.qk_norm && !strcmp(c.architecture, "Qwen3ForCausalLM"), "qwen3 via model_type");
    refused("{" QWEN3 ",\"use_sliding_window\":true}", "use_sliding_window true is not supported for Qwen3");
    refused("{" QWEN3 ",\"layer_types\":[\"full_attention\",\"sliding_attention\"]}",
            "layer_types[1] is \"sliding_attention\"; quarry implements Qwen3 with full_attention layers only");
    refused("{" QWEN3 ",\"attention_bias\":true}", "attention_bias true is not supported for Qwen3");
    refused("{" QWEN3 ",\"layer_types\":\"full_attention\"}", "\"layer_types\" must be a list of strings");
    refused("{" QWEN3 ",\"attention_dropout\":0.1}", "attention_dropout");
    c = accepted("{" BASE "}");
    CHECK(!c.qk_norm, "llama has no q/k norm");

    refused("{\"architectures\":[\"GPT2LMHeadModel\"]}", "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM");
    refused("{\"model_type\":\"gemma\"}", "not supported");
    refused("{" BASE ",\"rope_scaling\":{\"rope_type\":\"longrope\",\"factor\":4.0}}", "supported: none (default), linear, llama3, yarn");
    refused("{" BASE ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}}", "\"dynamic\" is not supported");
    refused("{" BASE ",\"rope_scaling\":{\"rope_type\":\"linear\"}}", "needs \"factor\"");
    refused("{" BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}", "low_freq_factor");
    refused("{" BASE ",\"mlp_bias\":true}", "mlp_bias");
    refused("{" BASE ",\"hidden_act\":\"gelu\"}", "supported: silu");
    refused("{" BASE ",\"num_key_value_heads\":3}", "divide num_attention_heads");
    refused("{" BASE ",\"torch_dtype\":\"int8\"}", "bfloat16, float16, float32");
    refused("{" BASE ",\"partial_rotary_factor\":0.5,\"rope_parameters\":{\"rope_type\":\"default\",\"partial_rotary_factor\":0.5}}",
            "partial_rotary_factor");
    refused("{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":48,"
            "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"use_sliding_window\":true}",
            "use_sliding_window");
    refused("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":32}", "\"vocab_size\" is missing");
    refused("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":-5}", "must be positive");
    refused("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":32.5}", "must be an integer");
    refused("{" BASE ",\"vocab_size\":65}", "\"vocab_size\" appears twice");
    refused("{" BASE ",\"tie_word_embeddings\":\"yes\"}", "true or false");
    refused("{" BASE ",\"head_dim\":7}", "even");
    refused("{" BASE, "not valid JSON");
    refused("[1,2]", "JSON object");
    refused("{" BASE "} {}", "text after the object");
    refused("\x02{" BASE "}", "control byte 0x02");
    refused("{" BASE ",\"max_position_embeddings\":1e12}", "\"max_position_embeddings\" is 1e+12; too large");
    refused("{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":\"64\"}", "must be an integer, not a string");
    // -1: the config cannot describe a decoder; -2: a valid config of something quarry does not implement.
    const struct { const char *json; int rc; } kinds[] = {
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":64}", -1},
        {"{" BASE ",\"hidden_size\":\"32\"}", -1},
        {"{" BASE ",\"num_key_value_heads\":3}", -1},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":64,\"hidden_size\":30,\"intermediate_size\":48,"
         "\"num_hidden_layers\":2,\"num_attention_heads\":4}", -1},
        {"{\"architectures\":[\"DeepseekV3ForCausalLM\"]}", -2},
        {"{\"architectures\":[\"MixtralForCausalLM\"]}", -1},
        {"{" MOE_BASE ",\"num_experts_per_tok\":9}", -1},
        {"{" MOE_BASE ",\"mlp_only_layers\":[2]}", -1},
        {"{" MIXTRAL_BASE ",\"router_jitter_noise\":0.01}", -2},
        {"{" BASE ",\"hidden_act\":\"gelu\"}", -2},
        {"{" BASE ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}}", -2},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        model_config k;
        char kerr[1024] = "";
        int krc = model_config_parse(&k, kinds[i].json, "t.json", kerr, sizeof kerr);
        CHECK(krc == kinds[i].rc, "%s: rc %d, want %d (%s)", kinds[i].json, krc, kinds[i].rc, kerr);
    }
    refused("{" BASE ",\"x\":\"a\x01" "b\"}", "control byte 0x01");
    // Sparse MoE: what each bad setting's message names, and what a good one reads.
    refused("{" MOE_BASE ",\"num_experts_per_tok\":9}", "\"num_experts_per_tok\" is 9; it must lie in [1, num_experts = 8]");
    refused("{" MOE_BASE ",\"mlp_only_layers\":[0,2]}", "\"mlp_only_layers\"[1] is 2; the model has layers 0..1");
    refused("{" MOE_BASE ",\"mlp_only_layers\":\"1\"}", "\"mlp_only_layers\" must be a list");
    refused("{" MIXTRAL_BASE ",\"router_jitter_noise\":0.01}", "router_jitter_noise = 0.01 is not supported");
    refused("{" MIXTRAL_BASE ",\"num_local_experts\":0}", "\"num_local_experts\" is 0");
    // gpt-oss: GptOssConfig's defaults (alternating windows, sinks, q/k/v/o biases, YaRN), and
    // bad layer_types named by key.
    model_config g = accepted("{" GPTOSS_BASE "}");
    CHECK(g.arch == ARCH_GPT_OSS && g.attention_sinks && g.o_bias && g.attention_bias && g.n_experts == 4 &&
          g.top_k == 4 && g.router_bias && g.expert_bias && g.swiglu_limit == 7.0f && g.head_dim == 64,
          "gpt-oss defaults");
    CHECK(model_config_layer_window(&g, 0) == 128 && model_config_layer_window(&g, 1) == 0,
          "gpt-oss layer windows %d %d", model_config_layer_window(&g, 0), model_config_layer_window(&g, 1));
    CHECK(g.rope_scaling == ROPE_SCALING_YARN && g.rope_factor == 32.0f && g.rope_original_max_position == 4096 &&
          fabsf(g.rope_attention_factor - (float)(0.1 * log(32.0) + 1.0)) < 1e-7f, "gpt-oss default YaRN");
    refused("{" GPTOSS_BASE ",\"layer_types\":[\"full_attention\"]}",
            "\"layer_types\" lists 1 layers but \"num_hidden_layers\" is 2");
    refused("{" GPTOSS_BASE ",\"layer_types\":[\"full_attention\",\"chunked_attention\"]}",
            "\"layer_types\"[1] is \"chunked_attention\"");
    refused("{" GPTOSS_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,\"mscale\":0.7}}",
            "\"rope_scaling.mscale\" is not supported");
    // A negative beta made the rope table NaN (fuzz_config found it).
    refused("{" GPTOSS_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":32.0,\"beta_fast\":-232.0}}",
            "\"rope_scaling.beta_fast\" (-232) and \"rope_scaling.beta_slow\" (0) must be positive and finite");
    // rope_theta 1: YaRN's log(base) is 0, and the rope table NaN (fuzz_config found it).
    refused("{" GPTOSS_BASE ",\"rope_theta\":1}", "\"rope_theta\" is 1; it must be a finite number greater than 1");
    {
        model_config q = accepted("{" MOE_BASE ",\"mlp_only_layers\":[0],\"num_experts_per_tok\":2,"
                                  "\"output_router_logits\":true,\"router_aux_loss_coef\":0.01}");
        CHECK(q.n_experts == 8 && q.top_k == 2 && q.moe_intermediate_size == 16 && !q.norm_topk_prob && q.qk_norm,
              "qwen3_moe: E %d k %d I %d renorm %d qk_norm %d", q.n_experts, q.top_k, q.moe_intermediate_size,
              q.norm_topk_prob, q.qk_norm);
        CHECK(!model_config_layer_is_moe(&q, 0) && model_config_layer_is_moe(&q, 1), "qwen3_moe: layer kinds");
        CHECK(fabs(model_config_aux_coef(&q) - 0.01) < 1e-7, "qwen3_moe: aux coef %g", model_config_aux_coef(&q));
        model_config x = accepted("{" MIXTRAL_BASE "}");
        CHECK(x.n_experts == 8 && x.top_k == 2 && x.moe_intermediate_size == 48 && x.norm_topk_prob &&
              x.sliding_window == 0 && model_config_aux_coef(&x) == 0 && model_config_layer_is_moe(&x, 0),
              "mixtral defaults: E %d k %d I %d renorm %d window %d", x.n_experts, x.top_k, x.moe_intermediate_size,
              x.norm_topk_prob, x.sliding_window);
    }

    model_config missing;
    char err[1024];
    CHECK(model_config_load(&missing, "/nonexistent/dir", err, sizeof err) == -1 && strstr(err, "/nonexistent/dir/config.json"),
          "missing file message: %s", err);
}

int main(void) {
    const char *src = test_env("QUARRY_SOURCE_DIR", ".");
    check_published(src);
    check_variants();
    return test_finish("test_config");
}
