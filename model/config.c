// model/config.c — see config.h. Defaults are those of transformers' LlamaConfig,
// MistralConfig, Qwen2Config, Qwen3Config, Qwen3MoeConfig, MixtralConfig and GptOssConfig for keys a
// config.json leaves out.
#include "config.h"
#include "moe/router.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUPPORTED_ARCHS \
    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, " \
    "MixtralForCausalLM, GptOssForCausalLM"

static int fail(char *err, size_t errlen, const char *src, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (err && errlen) snprintf(err, errlen, "%s: error: %s", src, msg);
    return -1;
}

// A config transformers would load but whose model quarry does not implement (another
// architecture, a rope type, an activation...): the same message, and -2 instead of -1.
#define unsupported(...) (fail(__VA_ARGS__), -2)

// Reads an integer-valued key. 1 = found, 0 = absent or null, -1 = wrong type (message set).
static int get_int(const cJSON *o, const char *key, int *out, const char *src, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return fail(err, errlen, src, "\"%s\" must be an integer%s", key, cJSON_IsString(v) ? ", not a string" : "");
    if (fabs(v->valuedouble) > 2147483647.0)
        return fail(err, errlen, src, "\"%s\" is %g; too large (at most 2147483647)", key, v->valuedouble);
    *out = (int)v->valuedouble;
    return 1;
}

// A number that fits a float (every such setting is stored as one).
static int get_double(const cJSON *o, const char *key, double *out, const char *src, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(err, errlen, src, "\"%s\" must be a number", key);
    if (fabs(v->valuedouble) > 1e30) return fail(err, errlen, src, "\"%s\" is %g; implausibly large", key, v->valuedouble);
    *out = v->valuedouble;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, int *out, const char *src, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return fail(err, errlen, src, "\"%s\" must be true or false", key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 1;
}

// A required positive integer.
static int need_pos_int(const cJSON *o, const char *key, int *out, const char *src, char *err, size_t errlen) {
    int r = get_int(o, key, out, src, err, errlen);
    if (r < 0) return -1;
    if (r == 0) return fail(err, errlen, src, "\"%s\" is missing; a Llama-family config.json needs it", key);
    if (*out <= 0) return fail(err, errlen, src, "\"%s\" is %d; it must be positive", key, *out);
    return 0;
}

// eos_token_id / bos_token_id: an int, a list of ints (the first is kept) or null.
static int get_token_id(const cJSON *o, const char *key, int *out, const char *src, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsArray(v)) {
        v = cJSON_GetArrayItem(v, 0);
        if (!v) return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 2147483647.0)
        return fail(err, errlen, src, "\"%s\" must be a token id or a list of token ids", key);
    *out = (int)v->valuedouble;
    return 1;
}

// YaRN (transformers' _compute_yarn_parameters): factor (null: max_position_embeddings /
// original_max_position_embeddings), beta_fast (32) and beta_slow (1) where absent or 0,
// original_max_position_embeddings (default max_position_embeddings), truncate (default true),
// attention_factor (default 0.1·ln(factor) + 1 when factor > 1). DeepSeek's mscale pair is refused.
static int parse_yarn(model_config *cfg, const cJSON *rs, const char *rkey, const char *src, char *err, size_t errlen) {
    int omp = cfg->max_position_embeddings;
    double factor = 0, bf = 0, bs = 0, af = 0;
    int truncate = 1;
    if (get_int(rs, "original_max_position_embeddings", &omp, src, err, errlen) < 0) return -1;
    if (omp <= 0) return fail(err, errlen, src, "\"%s.original_max_position_embeddings\" must be positive", rkey);
    int hf = get_double(rs, "factor", &factor, src, err, errlen);
    if (hf < 0) return -1;
    if (hf == 0) factor = (double)cfg->max_position_embeddings / omp;
    if (!(factor > 0)) return fail(err, errlen, src, "\"%s.factor\" is %g; it must be positive", rkey, factor);
    if (get_double(rs, "beta_fast", &bf, src, err, errlen) < 0 || get_double(rs, "beta_slow", &bs, src, err, errlen) < 0 ||
        get_bool(rs, "truncate", &truncate, src, err, errlen) < 0)
        return -1;
    // 0 is transformers' "use the default"; a negative or infinite beta makes the correction
    // range's log NaN (the rope table with it).
    if (!(bf >= 0 && isfinite(bf)) || !(bs >= 0 && isfinite(bs)))
        return fail(err, errlen, src, "\"%s.beta_fast\" (%g) and \"%s.beta_slow\" (%g) must be positive and finite",
                    rkey, bf, rkey, bs);
    static const char *const refused[] = {"mscale", "mscale_all_dim"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(rs, refused[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
            return unsupported(err, errlen, src, "\"%s.%s\" is not supported (DeepSeek's YaRN variant); "
                               "supported yarn keys: factor, beta_fast, beta_slow, original_max_position_embeddings, "
                               "truncate, attention_factor", rkey, refused[i]);
    }
    int ha = get_double(rs, "attention_factor", &af, src, err, errlen);
    if (ha < 0) return -1;
    if (ha == 0) af = factor <= 1 ? 1.0 : 0.1 * log(factor) + 1.0;
    if (!(af > 0)) return fail(err, errlen, src, "\"%s.attention_factor\" is %g; it must be positive", rkey, af);
    cfg->rope_scaling = ROPE_SCALING_YARN;
    cfg->rope_factor = (float)factor;
    cfg->rope_beta_fast = (float)(bf != 0 ? bf : 32.0);
    cfg->rope_beta_slow = (float)(bs != 0 ? bs : 1.0);
    cfg->rope_truncate = truncate;
    cfg->rope_original_max_position = omp;
    cfg->rope_attention_factor = (float)af;
    return 0;
}

// rope_scaling (legacy key) or rope_parameters (transformers 5): type, factor and llama3 fields.
static int parse_rope(model_config *cfg, const cJSON *root, const char *src, char *err, size_t errlen) {
    // MixtralConfig / GptOssConfig.default_theta
    double theta = cfg->arch == ARCH_MIXTRAL ? 1000000.0 : cfg->arch == ARCH_GPT_OSS ? 150000.0 : 10000.0;
    if (get_double(root, "rope_theta", &theta, src, err, errlen) < 0) return -1;
    cfg->rope_scaling = ROPE_SCALING_NONE;
    cfg->rope_factor = 1.0f;
    cfg->rope_low_freq_factor = 0.0f;
    cfg->rope_high_freq_factor = 0.0f;
    cfg->rope_original_max_position = 0;
    cfg->rope_attention_factor = 1.0f;

    // transformers gives rope_scaling priority over rope_parameters.
    const char *rkey = "rope_scaling";
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, rkey);
    if (!rs || cJSON_IsNull(rs) || (cJSON_IsObject(rs) && !rs->child)) {
        rkey = "rope_parameters";
        rs = cJSON_GetObjectItemCaseSensitive(root, rkey);
    }
    if ((!rs || cJSON_IsNull(rs)) && cfg->arch == ARCH_GPT_OSS) {
        // GptOssConfig.__post_init__'s rope_parameters when none is given.
        cfg->rope_scaling = ROPE_SCALING_YARN;
        cfg->rope_factor = 32.0f;
        cfg->rope_beta_fast = 32.0f;
        cfg->rope_beta_slow = 1.0f;
        cfg->rope_truncate = 0;
        cfg->rope_original_max_position = 4096;
        cfg->rope_attention_factor = (float)(0.1 * log(32.0) + 1.0);
    }
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsObject(rs)) return fail(err, errlen, src, "\"%s\" must be an object or null", rkey);
        if (get_double(rs, "rope_theta", &theta, src, err, errlen) < 0) return -1;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
        if (!t || cJSON_IsNull(t)) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
        const char *type = "default";
        if (t && !cJSON_IsNull(t)) {
            if (!cJSON_IsString(t)) return fail(err, errlen, src, "\"%s.rope_type\" must be a string", rkey);
            type = t->valuestring;
        }
        double prf = 1.0;
        if (get_double(rs, "partial_rotary_factor", &prf, src, err, errlen) < 0) return -1;
        if (prf != 1.0)
            return unsupported(err, errlen, src, "partial_rotary_factor %g is not supported; quarry rotates the whole head (1.0)", prf);
        if (!strcmp(type, "default")) {
            cfg->rope_scaling = ROPE_SCALING_NONE;
        } else if (!strcmp(type, "linear") || !strcmp(type, "llama3")) {
            double factor = 1;
            int r = get_double(rs, "factor", &factor, src, err, errlen);
            if (r < 0) return -1;
            if (r == 0) return fail(err, errlen, src, "\"%s\" of type %s needs \"factor\"", rkey, type);
            if (!(factor >= 1.0))
                return fail(err, errlen, src, "\"%s.factor\" is %g; it must be at least 1", rkey, factor);
            cfg->rope_factor = (float)factor;
            cfg->rope_scaling = ROPE_SCALING_LINEAR;
            if (!strcmp(type, "llama3")) {
                double lo = 0, hi = 0;
                int omp = cfg->max_position_embeddings;
                int a = get_double(rs, "low_freq_factor", &lo, src, err, errlen);
                if (a < 0) return -1;
                int b = get_double(rs, "high_freq_factor", &hi, src, err, errlen);
                if (b < 0) return -1;
                if (!a || !b)
                    return fail(err, errlen, src, "\"%s\" of type llama3 needs \"low_freq_factor\" and \"high_freq_factor\"", rkey);
                if (get_int(rs, "original_max_position_embeddings", &omp, src, err, errlen) < 0) return -1;
                if (!(lo > 0) || !(hi > lo))
                    return fail(err, errlen, src, "llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor (got %g, %g)", lo, hi);
                if (omp <= 0)
                    return fail(err, errlen, src, "\"original_max_position_embeddings\" must be positive");
                cfg->rope_scaling = ROPE_SCALING_LLAMA3;
                cfg->rope_low_freq_factor = (float)lo;
                cfg->rope_high_freq_factor = (float)hi;
                cfg->rope_original_max_position = omp;
            }
        } else if (!strcmp(type, "yarn")) {
            int r = parse_yarn(cfg, rs, rkey, src, err, errlen);
            if (r) return r;
        } else {
            return unsupported(err, errlen, src,
                        "rope scaling type \"%s\" is not supported; supported: none (default), linear, llama3, yarn", type);
        }
    }
    // base^(−2i/d): a base of 1 or less gives every pair the same (or a growing) frequency, and
    // YaRN's correction range divides by log(base) (fuzz_config: NaN rope table at rope_theta 1).
    if (!(theta > 1) || !isfinite(theta))
        return fail(err, errlen, src, "\"rope_theta\" is %g; it must be a finite number greater than 1", theta);
    cfg->rope_theta = (float)theta;
    return 0;
}

// The sparse MoE settings of Qwen3MoeConfig / MixtralConfig (defaults as theirs).
static int parse_moe(model_config *cfg, const cJSON *root, const char *src, char *err, size_t errlen) {
    cfg->n_experts = 0;
    if (cfg->arch != ARCH_QWEN3_MOE && cfg->arch != ARCH_MIXTRAL && cfg->arch != ARCH_GPT_OSS) return 0;
    int gptoss = cfg->arch == ARCH_GPT_OSS;
    int mixtral = cfg->arch == ARCH_MIXTRAL || gptoss;   // every layer sparse, I = intermediate_size
    const char *ekey = mixtral ? "num_local_experts" : "num_experts";
    double coef = 0.001, jitter = 0;
    cfg->n_experts = gptoss ? 128 : mixtral ? 8 : 128;
    cfg->top_k = gptoss ? 4 : mixtral ? 2 : 8;
    cfg->moe_intermediate_size = mixtral ? cfg->intermediate_size : 768;
    cfg->norm_topk_prob = mixtral;
    cfg->decoder_sparse_step = 1;
    cfg->output_router_logits = 0;
    // transformers 5 saves Qwen3-MoE's num_experts under its attribute_map's num_local_experts.
    int got = get_int(root, ekey, &cfg->n_experts, src, err, errlen);
    if (got == 0 && !mixtral) {
        ekey = "num_local_experts";
        got = get_int(root, ekey, &cfg->n_experts, src, err, errlen);
    }
    if (got < 0 || get_int(root, "num_experts_per_tok", &cfg->top_k, src, err, errlen) < 0 ||
        get_bool(root, "output_router_logits", &cfg->output_router_logits, src, err, errlen) < 0 ||
        get_double(root, "router_aux_loss_coef", &coef, src, err, errlen) < 0)
        return -1;
    if (!mixtral && (get_int(root, "moe_intermediate_size", &cfg->moe_intermediate_size, src, err, errlen) < 0 ||
                     get_bool(root, "norm_topk_prob", &cfg->norm_topk_prob, src, err, errlen) < 0 ||
                     get_int(root, "decoder_sparse_step", &cfg->decoder_sparse_step, src, err, errlen) < 0))
        return -1;
    if (cfg->n_experts < 1 || cfg->n_experts > 4096)
        return fail(err, errlen, src, "\"%s\" is %d; it must lie in [1, 4096]", ekey, cfg->n_experts);
    if (cfg->top_k < 1 || cfg->top_k > cfg->n_experts)
        return fail(err, errlen, src, "\"num_experts_per_tok\" is %d; it must lie in [1, %s = %d]", cfg->top_k, ekey,
                    cfg->n_experts);
    if (cfg->moe_intermediate_size < 1 || (long long)cfg->moe_intermediate_size * cfg->hidden_size > (1LL << 40))
        return fail(err, errlen, src, "\"moe_intermediate_size\" is %d; it must be positive", cfg->moe_intermediate_size);
    if (cfg->decoder_sparse_step < 1)
        return fail(err, errlen, src, "\"decoder_sparse_step\" is %d; it must be at least 1", cfg->decoder_sparse_step);
    if (!(coef >= 0)) return fail(err, errlen, src, "\"router_aux_loss_coef\" is %g; it must be at least 0", coef);
    cfg->router_aux_loss_coef = (float)coef;
    if (gptoss) {
        // GptOssTopKRouter / GptOssExperts: biases everywhere, top-k then softmax over the chosen
        // (the same weights as a softmax over all E renormalised over the chosen), clamped SwiGLU.
        double alpha = 1.702, limit = 7.0;
        if (get_double(root, "swiglu_alpha", &alpha, src, err, errlen) < 0 ||
            get_double(root, "swiglu_limit", &limit, src, err, errlen) < 0)
            return -1;
        if (!(limit > 0)) return fail(err, errlen, src, "\"swiglu_limit\" is %g; it must be positive", limit);
        cfg->swiglu_alpha = (float)alpha;
        cfg->swiglu_limit = (float)limit;
        cfg->router_bias = cfg->expert_bias = 1;
        cfg->experts_fused = 1;
    } else if (mixtral) {
        if (get_double(root, "router_jitter_noise", &jitter, src, err, errlen) < 0) return -1;
        if (moe_check_router_jitter(jitter, src, err, errlen)) return -2;
    }
    cfg->n_mlp_only = 0;
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    if (!mixtral && mo && !cJSON_IsNull(mo)) {
        if (!cJSON_IsArray(mo)) return fail(err, errlen, src, "\"mlp_only_layers\" must be a list of layer indices");
        int i = 0;
        for (const cJSON *e = mo->child; e; e = e->next, i++) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble))
                return fail(err, errlen, src, "\"mlp_only_layers\"[%d] must be an integer layer index", i);
            if (e->valuedouble < 0 || e->valuedouble >= cfg->num_layers)
                return fail(err, errlen, src, "\"mlp_only_layers\"[%d] is %g; the model has layers 0..%d "
                            "(num_hidden_layers %d)", i, e->valuedouble, cfg->num_layers - 1, cfg->num_layers);
            if (i >= MODEL_MAX_MLP_ONLY)
                return fail(err, errlen, src, "\"mlp_only_layers\" lists more than %d layers", MODEL_MAX_MLP_ONLY);
            cfg->mlp_only_layers[cfg->n_mlp_only++] = (int)e->valuedouble;
        }
    }
    return 0;
}

int model_config_layer_window(const model_config *cfg, int l) {
    if (cfg->n_layer_types == 0) return cfg->sliding_window;
    return l >= 0 && l < cfg->n_layer_types && cfg->layer_sliding[l] ? cfg->sliding_window : 0;
}

// gpt-oss's layer_types: one of sliding_attention / full_attention per layer (default:
// sliding for even layers, as GptOssConfig.__post_init__).
static int parse_layer_types(model_config *cfg, const cJSON *root, const char *src, char *err, size_t errlen) {
    if (cfg->num_layers > MODEL_MAX_LAYER_TYPES)
        return fail(err, errlen, src, "num_hidden_layers %d: quarry reads layer_types of at most %d layers",
                    cfg->num_layers, MODEL_MAX_LAYER_TYPES);
    cfg->n_layer_types = cfg->num_layers;
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (!lt || cJSON_IsNull(lt)) {
        for (int l = 0; l < cfg->num_layers; l++) cfg->layer_sliding[l] = (l + 1) % 2 != 0;
        return 0;
    }
    if (!cJSON_IsArray(lt)) return fail(err, errlen, src, "\"layer_types\" must be a list of strings");
    if (cJSON_GetArraySize(lt) != cfg->num_layers)
        return fail(err, errlen, src, "\"layer_types\" lists %d layers but \"num_hidden_layers\" is %d\n"
                    "hint: give one of \"sliding_attention\" / \"full_attention\" per layer",
                    cJSON_GetArraySize(lt), cfg->num_layers);
    int i = 0;
    for (const cJSON *e = lt->child; e; e = e->next, i++) {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, "sliding_attention")) cfg->layer_sliding[i] = 1;
        else if (cJSON_IsString(e) && !strcmp(e->valuestring, "full_attention")) cfg->layer_sliding[i] = 0;
        else
            return fail(err, errlen, src, "\"layer_types\"[%d] is %s%s%s; supported: \"sliding_attention\", \"full_attention\"",
                        i, cJSON_IsString(e) ? "\"" : "", cJSON_IsString(e) ? e->valuestring : "not a string",
                        cJSON_IsString(e) ? "\"" : "");
    }
    return 0;
}

int model_config_layer_is_moe(const model_config *cfg, int l) {
    if (cfg->n_experts <= 0) return 0;
    for (int i = 0; i < cfg->n_mlp_only; i++)
        if (cfg->mlp_only_layers[i] == l) return 0;
    return (l + 1) % cfg->decoder_sparse_step == 0;
}

double model_config_aux_coef(const model_config *cfg) {
    return cfg->n_experts > 0 && cfg->output_router_logits ? cfg->router_aux_loss_coef : 0.0;
}

int model_config_parse(model_config *cfg, const char *json, const char *src, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    if (!src) src = "config.json";
    // Control bytes are invalid JSON anywhere (cJSON would skip them as whitespace).
    for (const unsigned char *c = (const unsigned char *)json; *c; c++)
        if (*c < 0x20 && *c != '\t' && *c != '\n' && *c != '\r')
            return fail(err, errlen, src, "not valid JSON (control byte 0x%02x at byte %ld)", *c,
                        (long)((const char *)c - json));
    const char *p = json;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p != '{') return fail(err, errlen, src, "the top level must be a JSON object");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(p, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= json ? (long)(at - json) : -1;
        return fail(err, errlen, src, "not valid JSON (near byte %ld)", off);
    }
    for (; end && *end; end++)
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            cJSON_Delete(root);
            return fail(err, errlen, src, "not valid JSON (text after the object at byte %ld)", (long)(end - json));
        }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        fail(err, errlen, src, "the top level must be a JSON object");
        goto done;
    }

    // Python's json keeps the last of repeated keys and cJSON the first: refuse the ambiguity.
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && !strcmp(a->string, b->string)) {
                fail(err, errlen, src, "key \"%s\" appears twice", a->string);
                goto done;
            }

    // Architecture: architectures[0], else model_type.
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const char *arch = NULL;
    if (cJSON_IsArray(archs) && cJSON_GetArraySize(archs) > 0) {
        if (cJSON_GetArraySize(archs) > 1) {
            rc = unsupported(err, errlen, src, "\"architectures\" lists %d classes; quarry needs exactly one of %s",
                 cJSON_GetArraySize(archs), SUPPORTED_ARCHS);
            goto done;
        }
        const cJSON *a0 = cJSON_GetArrayItem(archs, 0);
        if (!cJSON_IsString(a0)) {
            fail(err, errlen, src, "\"architectures\" must hold strings");
            goto done;
        }
        arch = a0->valuestring;
    } else if (archs && !cJSON_IsNull(archs) && !cJSON_IsArray(archs)) {
        fail(err, errlen, src, "\"architectures\" must be a list");
        goto done;
    } else if (cJSON_IsString(mt)) {
        if (!strcmp(mt->valuestring, "llama")) arch = "LlamaForCausalLM";
        else if (!strcmp(mt->valuestring, "mistral")) arch = "MistralForCausalLM";
        else if (!strcmp(mt->valuestring, "qwen2")) arch = "Qwen2ForCausalLM";
        else if (!strcmp(mt->valuestring, "qwen3")) arch = "Qwen3ForCausalLM";
        else if (!strcmp(mt->valuestring, "qwen3_moe")) arch = "Qwen3MoeForCausalLM";
        else if (!strcmp(mt->valuestring, "mixtral")) arch = "MixtralForCausalLM";
        else if (!strcmp(mt->valuestring, "gpt_oss")) arch = "GptOssForCausalLM";
        else {
            rc = unsupported(err, errlen, src, "model_type \"%s\" is not supported; supported: llama, mistral, qwen2, qwen3, qwen3_moe, mixtral, gpt_oss (%s)",
                 mt->valuestring, SUPPORTED_ARCHS);
            goto done;
        }
    } else {
        fail(err, errlen, src, "neither \"architectures\" nor \"model_type\" is given; expected one of %s",
             SUPPORTED_ARCHS);
        goto done;
    }
    if (!strcmp(arch, "LlamaForCausalLM")) cfg->arch = ARCH_LLAMA;
    else if (!strcmp(arch, "MistralForCausalLM")) cfg->arch = ARCH_MISTRAL;
    else if (!strcmp(arch, "Qwen2ForCausalLM")) cfg->arch = ARCH_QWEN2;
    else if (!strcmp(arch, "Qwen3ForCausalLM")) cfg->arch = ARCH_QWEN3;
    else if (!strcmp(arch, "Qwen3MoeForCausalLM")) cfg->arch = ARCH_QWEN3_MOE;
    else if (!strcmp(arch, "MixtralForCausalLM")) cfg->arch = ARCH_MIXTRAL;
    else if (!strcmp(arch, "GptOssForCausalLM")) cfg->arch = ARCH_GPT_OSS;
    else {
        rc = unsupported(err, errlen, src, "architecture \"%s\" is not supported; supported: %s", arch, SUPPORTED_ARCHS);
        goto done;
    }
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", arch);

    if (need_pos_int(root, "vocab_size", &cfg->vocab_size, src, err, errlen) ||
        need_pos_int(root, "hidden_size", &cfg->hidden_size, src, err, errlen) ||
        need_pos_int(root, "intermediate_size", &cfg->intermediate_size, src, err, errlen) ||
        need_pos_int(root, "num_hidden_layers", &cfg->num_layers, src, err, errlen) ||
        need_pos_int(root, "num_attention_heads", &cfg->num_heads, src, err, errlen))
        goto done;

    int r = get_int(root, "num_key_value_heads", &cfg->num_kv_heads, src, err, errlen);
    if (r < 0) goto done;
    if (r == 0) cfg->num_kv_heads = cfg->arch == ARCH_MISTRAL || cfg->arch == ARCH_MIXTRAL || cfg->arch == ARCH_GPT_OSS ? 8
                                    : cfg->arch == ARCH_QWEN3_MOE                     ? 4
                                                                                      : cfg->num_heads;
    if (cfg->num_kv_heads <= 0 || cfg->num_heads % cfg->num_kv_heads) {
        fail(err, errlen, src, "num_key_value_heads (%d) must be positive and divide num_attention_heads (%d)",
             cfg->num_kv_heads, cfg->num_heads);
        goto done;
    }
    r = get_int(root, "head_dim", &cfg->head_dim, src, err, errlen);
    if (r < 0) goto done;
    if (r == 0 && (cfg->arch == ARCH_QWEN3 || cfg->arch == ARCH_GPT_OSS)) {
        cfg->head_dim = cfg->arch == ARCH_QWEN3 ? 128 : 64;   // Qwen3Config's / GptOssConfig's default
    } else if (r == 0) {
        if (cfg->hidden_size % cfg->num_heads) {
            fail(err, errlen, src, "hidden_size (%d) is not a multiple of num_attention_heads (%d) and no head_dim is given",
                 cfg->hidden_size, cfg->num_heads);
            goto done;
        }
        cfg->head_dim = cfg->hidden_size / cfg->num_heads;
    }
    if (cfg->head_dim <= 0 || cfg->head_dim % 2) {
        fail(err, errlen, src, "head_dim %d must be positive and even (RoPE rotates pairs)", cfg->head_dim);
        goto done;
    }
    // Dimensions whose products must fit the int64 element counts used downstream.
    if ((long long)cfg->vocab_size * cfg->hidden_size > (1LL << 40) ||
        (long long)cfg->num_heads * cfg->head_dim * (long long)cfg->hidden_size > (1LL << 40) ||
        (long long)cfg->intermediate_size * cfg->hidden_size > (1LL << 40) || cfg->num_layers > 100000) {
        fail(err, errlen, src, "dimensions are implausibly large (vocab_size %d, hidden_size %d, intermediate_size %d)",
             cfg->vocab_size, cfg->hidden_size, cfg->intermediate_size);
        goto done;
    }

    cfg->max_position_embeddings = cfg->arch == ARCH_LLAMA                                  ? 2048
                                   : cfg->arch == ARCH_MISTRAL || cfg->arch == ARCH_MIXTRAL || cfg->arch == ARCH_GPT_OSS ? 4096 * 32
                                                                                            : 32768;
    if (get_int(root, "max_position_embeddings", &cfg->max_position_embeddings, src, err, errlen) < 0) goto done;
    if (cfg->max_position_embeddings <= 0) {
        fail(err, errlen, src, "max_position_embeddings must be positive");
        goto done;
    }

    double eps = cfg->arch == ARCH_MIXTRAL || cfg->arch == ARCH_GPT_OSS ? 1e-5 : 1e-6;
    if (get_double(root, "rms_norm_eps", &eps, src, err, errlen) < 0) goto done;
    if (!((float)eps > 0)) {
        fail(err, errlen, src, "rms_norm_eps %g must be positive", eps);
        goto done;
    }
    cfg->rms_norm_eps = (float)eps;

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (!act) act = cJSON_GetObjectItemCaseSensitive(root, "hidden_activation");
    if (act && !cJSON_IsNull(act) && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu"))) {
        rc = unsupported(err, errlen, src, "hidden_act \"%s\" is not supported; supported: silu (SwiGLU MLP)",
             cJSON_IsString(act) ? act->valuestring : "(not a string)");
        goto done;
    }

    if ((r = parse_rope(cfg, root, src, err, errlen)) != 0) {
        rc = r;
        goto done;
    }

    cfg->tie_word_embeddings = 0;
    if (get_bool(root, "tie_word_embeddings", &cfg->tie_word_embeddings, src, err, errlen) < 0) goto done;

    int gptoss = cfg->arch == ARCH_GPT_OSS;
    cfg->attention_bias = cfg->arch == ARCH_QWEN2 || gptoss;
    int qwen3 = cfg->arch == ARCH_QWEN3 || cfg->arch == ARCH_QWEN3_MOE;
    if ((cfg->arch == ARCH_LLAMA || qwen3 || gptoss) &&
        get_bool(root, "attention_bias", &cfg->attention_bias, src, err, errlen) < 0)
        goto done;
    if (qwen3 && cfg->attention_bias) {
        // Qwen3 would put a bias on o_proj too, which no published Qwen3 has.
        rc = unsupported(err, errlen, src, "attention_bias true is not supported for Qwen3 (q/k/v/o biases); supported: false");
        goto done;
    }
    cfg->qk_norm = qwen3;
    cfg->o_bias = gptoss && cfg->attention_bias;
    cfg->attention_sinks = gptoss;
    cfg->mlp_bias = 0;
    if (get_bool(root, "mlp_bias", &cfg->mlp_bias, src, err, errlen) < 0) goto done;
    if (cfg->mlp_bias) {
        rc = unsupported(err, errlen, src, "mlp_bias true is not supported (no supported model uses MLP biases); supported: false");
        goto done;
    }
    double adrop = 0;
    if (get_double(root, "attention_dropout", &adrop, src, err, errlen) < 0) goto done;
    if (adrop != 0) {
        rc = unsupported(err, errlen, src, "attention_dropout %g is not supported; supported: 0.0", adrop);
        goto done;
    }

    cfg->sliding_window = 0;
    if (cfg->arch == ARCH_MISTRAL || cfg->arch == ARCH_MIXTRAL) {
        // MistralConfig's default is 4096 when the key is absent (MixtralConfig's: none); null
        // means full attention.
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
        if (!sw) cfg->sliding_window = cfg->arch == ARCH_MISTRAL ? 4096 : 0;
        else if (get_int(root, "sliding_window", &cfg->sliding_window, src, err, errlen) < 0) goto done;
        if (cfg->sliding_window < 0) {
            fail(err, errlen, src, "sliding_window must be positive or null");
            goto done;
        }
    } else if (gptoss) {
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
        cfg->sliding_window = 128;   // GptOssConfig's default; null: every layer full
        if (sw && get_int(root, "sliding_window", &cfg->sliding_window, src, err, errlen) < 0) goto done;
        if (sw && cJSON_IsNull(sw)) cfg->sliding_window = 0;
        if (cfg->sliding_window < 0) {
            fail(err, errlen, src, "sliding_window must be positive or null");
            goto done;
        }
        if (parse_layer_types(cfg, root, src, err, errlen) != 0) goto done;
    } else if (cfg->arch == ARCH_QWEN2 || qwen3) {
        const char *family = cfg->arch == ARCH_QWEN2 ? "Qwen2" : cfg->arch == ARCH_QWEN3 ? "Qwen3" : "Qwen3-MoE";
        int usw = 0;
        if (get_bool(root, "use_sliding_window", &usw, src, err, errlen) < 0) goto done;
        if (usw) {
            rc = unsupported(err, errlen, src, "use_sliding_window true is not supported for %s (per-layer windows); supported: false",
                             family);
            goto done;
        }
        // An explicit layer_types overrides use_sliding_window in transformers.
        const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
        if (lt && !cJSON_IsNull(lt)) {
            if (!cJSON_IsArray(lt)) {
                fail(err, errlen, src, "\"layer_types\" must be a list of strings");
                goto done;
            }
            int i = 0;
            for (const cJSON *e = lt->child; e; e = e->next, i++) {
                if (!cJSON_IsString(e)) {
                    fail(err, errlen, src, "\"layer_types\" must be a list of strings");
                    goto done;
                }
                if (strcmp(e->valuestring, "full_attention")) {
                    rc = unsupported(err, errlen, src, "layer_types[%d] is \"%s\"; quarry implements %s with full_attention layers only",
                                     i, e->valuestring, family);
                    goto done;
                }
            }
        }
    }

    int qwen = cfg->arch == ARCH_QWEN2 || qwen3;
    cfg->bos_token_id = qwen ? -1 : 1;
    cfg->eos_token_id = qwen ? -1 : 2;
    if (cJSON_GetObjectItemCaseSensitive(root, "bos_token_id")) cfg->bos_token_id = -1;
    if (cJSON_GetObjectItemCaseSensitive(root, "eos_token_id")) cfg->eos_token_id = -1;
    if (get_token_id(root, "bos_token_id", &cfg->bos_token_id, src, err, errlen) < 0 ||
        get_token_id(root, "eos_token_id", &cfg->eos_token_id, src, err, errlen) < 0)
        goto done;

    // transformers 5 writes "dtype"; older versions "torch_dtype".
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!dt || cJSON_IsNull(dt)) dt = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "float32");
    if (dt && !cJSON_IsNull(dt)) {
        if (!cJSON_IsString(dt) || (strcmp(dt->valuestring, "bfloat16") && strcmp(dt->valuestring, "float16") &&
                                    strcmp(dt->valuestring, "float32"))) {
            rc = unsupported(err, errlen, src, "torch_dtype \"%s\" is not supported; supported: bfloat16, float16, float32",
                 cJSON_IsString(dt) ? dt->valuestring : "(not a string)");
            goto done;
        }
        snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt->valuestring);
    }

    double ir = 0.02;
    if (get_double(root, "initializer_range", &ir, src, err, errlen) < 0) goto done;
    if (!(ir >= 0 && ir <= 1)) {
        fail(err, errlen, src, "initializer_range %g must lie in [0, 1]", ir);
        goto done;
    }
    cfg->initializer_range = (float)ir;
    if ((r = parse_moe(cfg, root, src, err, errlen)) != 0) {
        rc = r;
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int model_config_load(model_config *cfg, const char *path, char *err, size_t errlen) {
    char file[4096];
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) snprintf(file, sizeof file, "%s", path);
    else snprintf(file, sizeof file, "%s/config.json", path);
    FILE *f = fopen(file, "rb");
    if (!f) return fail(err, errlen, file, "cannot open: %s", strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            if (cap > (64u << 20)) {
                fclose(f);
                free(buf);
                return fail(err, errlen, file, "larger than 64 MiB; not a config.json");
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                fclose(f);
                free(buf);
                return fail(err, errlen, file, "out of memory");
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(buf);
        return fail(err, errlen, file, "read error");
    }
    buf[len] = 0;
    int rc = model_config_parse(cfg, buf, file, err, errlen);
    free(buf);
    return rc;
}

// The same float32 operations, in the same order, as transformers' _compute_default_rope_parameters
// / _compute_linear_scaling_rope_parameters / _compute_llama3_parameters under torch on CPU:
//   inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim))    (torch: reciprocal(pow) * 1.0)
// Python scalars meet float32 tensors as float32. The power is rounded once from double.
void model_config_rope_inv_freq(const model_config *cfg, float *inv_freq) {
    const int half = cfg->head_dim / 2;
    const float dim = (float)cfg->head_dim;
    const float base = cfg->rope_theta;
    for (int i = 0; i < half; i++) {
        volatile float e = (float)(2 * i) / dim;
        float p = (float)pow((double)base, (double)e);
        volatile float inv = 1.0f / p;
        inv_freq[i] = inv;
    }
    if (cfg->rope_scaling == ROPE_SCALING_LINEAR) {
        for (int i = 0; i < half; i++) inv_freq[i] = inv_freq[i] / cfg->rope_factor;
    } else if (cfg->rope_scaling == ROPE_SCALING_YARN) {
        // _compute_yarn_parameters: the correction range in Python doubles, the ramp and the
        // blend of inv_freq / (factor·pos_freqs) and inv_freq in float32 tensors.
        const double two_pi = 2.0 * 3.14159265358979323846, base_d = (double)cfg->rope_theta;
        const double omp = (double)cfg->rope_original_max_position;
        double lo = (cfg->head_dim * log(omp / ((double)cfg->rope_beta_fast * two_pi))) / (2 * log(base_d));
        double hi = (cfg->head_dim * log(omp / ((double)cfg->rope_beta_slow * two_pi))) / (2 * log(base_d));
        if (cfg->rope_truncate) {
            lo = floor(lo);
            hi = ceil(hi);
        }
        if (lo < 0) lo = 0;
        if (hi > cfg->head_dim - 1) hi = cfg->head_dim - 1;
        if (lo == hi) hi += 0.001;
        const float lo_f = (float)lo, span = (float)(hi - lo);
        for (int i = 0; i < half; i++) {
            volatile float e = (float)(2 * i) / dim;
            float pos_freq = (float)pow((double)base, (double)e);
            volatile float ext = 1.0f / pos_freq;
            volatile float scaled = cfg->rope_factor * pos_freq;
            volatile float inter = 1.0f / scaled;
            volatile float t = ((float)i - lo_f) / span;
            float ramp = t < 0 ? 0.0f : t > 1 ? 1.0f : t;
            volatile float ext_factor = 1.0f - ramp;
            volatile float keep = 1.0f - ext_factor;
            volatile float a = inter * keep;
            volatile float b = ext * ext_factor;
            inv_freq[i] = a + b;
        }
    } else if (cfg->rope_scaling == ROPE_SCALING_LLAMA3) {
        const float factor = cfg->rope_factor;
        const float lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
        const double old_ctx = (double)cfg->rope_original_max_position;
        // Python doubles, compared against float32 tensors after a cast to float32.
        const float low_wavelen = (float)(old_ctx / (double)lo);
        const float high_wavelen = (float)(old_ctx / (double)hi);
        const float two_pi = (float)(2.0 * 3.14159265358979323846);
        const float old_ctx_f = (float)old_ctx;
        const float hi_minus_lo = (float)((double)hi - (double)lo);
        for (int i = 0; i < half; i++) {
            float inv = inv_freq[i];
            volatile float recip = 1.0f / inv;
            volatile float wavelen = recip * two_pi;
            float inv_llama = wavelen > low_wavelen ? inv / factor : inv;
            volatile float rw = 1.0f / wavelen;
            volatile float t1 = rw * old_ctx_f;
            volatile float t2 = t1 - lo;
            volatile float smooth = t2 / hi_minus_lo;
            volatile float one_minus = 1.0f - smooth;
            volatile float a = one_minus * inv_llama;
            volatile float a2 = a / factor;
            volatile float b = smooth * inv_llama;
            volatile float smoothed = a2 + b;
            int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv_freq[i] = medium ? smoothed : inv_llama;
        }
    }
}

size_t model_config_num_params(const model_config *cfg) {
    const size_t C = (size_t)cfg->hidden_size, V = (size_t)cfg->vocab_size, F = (size_t)cfg->intermediate_size;
    const size_t q = (size_t)cfg->num_heads * cfg->head_dim, kv = (size_t)cfg->num_kv_heads * cfg->head_dim;
    size_t layer = C * q + 2 * C * kv + q * C   // q, k, v, o
                   + 2 * C;                     // input and post-attention norms
    if (cfg->attention_bias) layer += q + 2 * kv;
    if (cfg->o_bias) layer += C;
    if (cfg->attention_sinks) layer += (size_t)cfg->num_heads;
    if (cfg->qk_norm) layer += 2 * (size_t)cfg->head_dim;
    size_t n = V * C + (size_t)cfg->num_layers * layer + C;
    for (int l = 0; l < cfg->num_layers; l++)   // gate, up, down: dense, or router + experts
        n += model_config_layer_is_moe(cfg, l)
                 ? (size_t)cfg->n_experts * (C + 3 * C * (size_t)cfg->moe_intermediate_size) +
                       (cfg->router_bias ? (size_t)cfg->n_experts : 0) +
                       (cfg->expert_bias ? (size_t)cfg->n_experts * (2 * (size_t)cfg->moe_intermediate_size + C) : 0)
                 : 3 * C * F;
    if (!cfg->tie_word_embeddings) n += V * C;
    return n;
}
