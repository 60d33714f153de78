// export/cmi.c — see cmi.h.
#include "cmi.h"
#include "../data/fileio.h"
#include "../model/config.h"
#include "../model/names.h"
#include "../model/safetensors.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// "Supported architectures" as documented on CMI_TABLE_DATE: Mistral; Mixtral; Flan (T5);
// Llama 2, 3, 3.1, 3.2, 3.3 and Mllama; GPTBigCode; Qwen2, Qwen2.5, Qwen2-VL, Qwen2.5-VL and
// Qwen3 (only Qwen3ForCausalLM and Qwen3MoeForCausalLM; no Converse); GPT-OSS (us-east-1 only).
const cmi_arch cmi_architectures[] = {
    {"LlamaForCausalLM", "Llama 2/3/3.1/3.2/3.3", 0},
    {"MllamaForConditionalGeneration", "Mllama (Llama 3.2 Vision)", 1},
    {"MistralForCausalLM", "Mistral", 0},
    {"MixtralForCausalLM", "Mixtral", 0},
    {"T5ForConditionalGeneration", "Flan (T5)", 0},
    {"GPTBigCodeForCausalLM", "GPTBigCode", 0},
    {"Qwen2ForCausalLM", "Qwen2/Qwen2.5", 0},
    {"Qwen2VLForConditionalGeneration", "Qwen2-VL", 1},
    {"Qwen2_5_VLForConditionalGeneration", "Qwen2.5-VL", 1},
    {"Qwen3ForCausalLM", "Qwen3 (no Converse support)", 0},
    {"Qwen3MoeForCausalLM", "Qwen3 MoE (no Converse support)", 0},
    {"GptOssForCausalLM", "GPT-OSS (us-east-1 only)", 0},
};
const int cmi_narchitectures = (int)(sizeof cmi_architectures / sizeof cmi_architectures[0]);

// "Supported tokenizers" of the same page.
static const char *const cmi_tokenizers[] = {
    "T5Tokenizer",        "T5TokenizerFast",     "LlamaTokenizer",         "LlamaTokenizerFast",
    "CodeLlamaTokenizer", "CodeLlamaTokenizerFast", "GPT2Tokenizer",       "GPT2TokenizerFast",
    "GPTNeoXTokenizer",   "GPTNeoXTokenizerFast", "PreTrainedTokenizer",   "PreTrainedTokenizerFast",
    "Qwen2Tokenizer",     "Qwen2TokenizerFast",
};

// "The size of the imported model weights must be less than 100GB for multimodal models and
// 200GB for text models" (decimal GB: the stricter reading).
#define CMI_MAX_TEXT_BYTES 200e9
#define CMI_MAX_MULTIMODAL_BYTES 100e9
// "The maximum positional embeddings or the maximum context length supported by the model should
// be less than 128K." Read as at most 131072 (= 128·1024, what "128K" means for the Llama 3.1–3.3
// models the same page lists as supported: all ship max_position_embeddings 131072).
#define CMI_MAX_POSITIONS 131072

const cmi_arch *cmi_arch_find(const char *architecture) {
    for (int i = 0; i < cmi_narchitectures; i++)
        if (!strcmp(cmi_architectures[i].architecture, architecture)) return &cmi_architectures[i];
    return NULL;
}

static int add(cmi_report *r, const char *name, cmi_status st, const char *fmt, ...) {
    if (r->n == r->cap) {
        int nc = r->cap ? 2 * r->cap : 16;
        cmi_check *nb = realloc(r->checks, sizeof *nb * (size_t)nc);
        if (!nb) {
            r->oom = 1;
            r->failed++;
            return -1;
        }
        r->checks = nb;
        r->cap = nc;
    }
    cmi_check *c = &r->checks[r->n++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof c->reason, fmt, ap);
    va_end(ap);
    if (st == CMI_FAIL) r->failed++;
    if (st == CMI_WARN) r->warned++;
    return 0;
}

// 0 parsed into *out, 1 absent, -1 unreadable or not JSON (message in err).
static int read_json(const char *dir, const char *name, cJSON **out, char *err, size_t errlen) {
    char path[4400], *text = NULL;
    size_t len = 0;
    *out = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!fileio_exists(path)) return 1;
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    const char *end = NULL;
    // Strict: nothing but whitespace after the value (the length includes the NUL read_all adds).
    *out = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!*out) {
        long line = 1;
        for (const char *p = text; end && p < end; p++) line += *p == '\n';
        snprintf(err, errlen, "%s:%ld: not valid JSON", path, line);
    }
    free(text);
    return *out ? 0 : -1;
}

static int file_exists(const char *dir, const char *name) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return fileio_exists(path);
}

// The first NaN/Inf of a tensor: element index, or -1 when every element is finite. OpenMP over
// blocks: an 8B checkpoint is 16 GB to read.
static long long first_nonfinite(const st_tensor *t) {
    const unsigned char *p = t->data;
    const int es = t->dtype == ST_F32 ? 4 : (t->dtype == ST_BF16 || t->dtype == ST_F16) ? 2 : 0;
    if (!es) return -1;
    const uint32_t mask = t->dtype == ST_F32 ? 0x7f800000u : t->dtype == ST_BF16 ? 0x7f80u : 0x7c00u;
    const long long n = (long long)(t->nbytes / (size_t)es);
    long long first = n;
#pragma omp parallel for schedule(static) reduction(min : first)
    for (long long i = 0; i < n; i++) {
        uint32_t u = 0;
        if (es == 4) {
            memcpy(&u, p + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            u = h;
        }
        if ((u & mask) == mask && i < first) first = i;
    }
    return first < n ? first : -1;
}

static void check_tokenizer(const char *dir, cmi_report *r, const cJSON *tok_cfg, int tok_cfg_rc, const char *tok_err) {
    char err[1024];
    if (tok_cfg_rc == 1) {
        add(r, "tokenizer", CMI_FAIL, "tokenizer_config.json is missing (CMI needs tokenizer_config.json with tokenizer.json "
                                      "or tokenizer.model)");
        return;
    }
    if (tok_cfg_rc < 0) {
        add(r, "tokenizer", CMI_FAIL, "%s", tok_err);
        return;
    }
    int has_json = file_exists(dir, "tokenizer.json"), has_model = file_exists(dir, "tokenizer.model");
    if (!has_json && !has_model) {
        add(r, "tokenizer", CMI_FAIL, "neither tokenizer.json nor tokenizer.model is present");
        return;
    }
    const char *more[] = {"tokenizer.json", "special_tokens_map.json", "generation_config.json", "added_tokens.json"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        cJSON *j = NULL;
        int rc = read_json(dir, more[i], &j, err, sizeof err);
        cJSON_Delete(j);
        if (rc < 0) {
            add(r, "tokenizer", CMI_FAIL, "%s", err);
            return;
        }
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(tok_cfg, "tokenizer_class");
    if (cJSON_IsString(cls)) {
        int known = 0;
        for (size_t i = 0; i < sizeof cmi_tokenizers / sizeof cmi_tokenizers[0]; i++)
            known |= !strcmp(cls->valuestring, cmi_tokenizers[i]);
        if (!known) {
            add(r, "tokenizer", CMI_WARN,
                "tokenizer_class %s is not among the tokenizers CMI lists (PreTrainedTokenizerFast, LlamaTokenizerFast, "
                "Qwen2TokenizerFast, GPT2TokenizerFast, T5TokenizerFast, ...)",
                cls->valuestring);
            return;
        }
    }
    add(r, "tokenizer", CMI_PASS, "tokenizer_config.json%s%s parse%s", has_json ? ", tokenizer.json" : "",
        has_model ? ", tokenizer.model" : "", has_json ? "" : " (tokenizer.model present)");
}

static void check_chat_template(const char *dir, cmi_report *r, const cJSON *tok_cfg) {
    const cJSON *ct = tok_cfg ? cJSON_GetObjectItemCaseSensitive(tok_cfg, "chat_template") : NULL;
    int in_cfg = ct && !cJSON_IsNull(ct);
    int jinja = file_exists(dir, "chat_template.jinja"), json = file_exists(dir, "chat_template.json");
    int sources = in_cfg + jinja + json;
    if (sources == 0) {
        add(r, "chat_template", CMI_WARN,
            "no chat template (tokenizer_config.json chat_template, chat_template.jinja or chat_template.json): "
            "InvokeModel works, but Converse/ChatCompletion requests need one");
    } else if (sources > 1) {
        add(r, "chat_template", CMI_WARN,
            "%d chat template sources (%s%s%s): Bedrock uses the separate file and ignores the one in "
            "tokenizer_config.json; keep exactly one",
            sources, in_cfg ? "tokenizer_config.json " : "", jinja ? "chat_template.jinja " : "",
            json ? "chat_template.json" : "");
    } else {
        add(r, "chat_template", CMI_PASS, "from %s",
            in_cfg ? "tokenizer_config.json" : jinja ? "chat_template.jinja" : "chat_template.json");
    }
}

const int cmi_gptoss_eos[3] = {200002, 199999, 200012};

int cmi_generation_eos_fix(cJSON *gen, const char *architecture) {
    if (!architecture || strcmp(architecture, CMI_GPTOSS_ARCH)) return 0;
    cJSON *eos = cJSON_CreateIntArray(cmi_gptoss_eos, 3);
    if (!eos) return -1;
    if (cJSON_GetObjectItemCaseSensitive(gen, "eos_token_id"))
        return cJSON_ReplaceItemInObjectCaseSensitive(gen, "eos_token_id", eos) ? 0 : (cJSON_Delete(eos), -1);
    return cJSON_AddItemToObject(gen, "eos_token_id", eos) ? 0 : (cJSON_Delete(eos), -1);
}

// gpt-oss: generation_config.json's eos_token_id holds every id of cmi_gptoss_eos.
static void check_generation_config(const char *dir, const char *architecture, cmi_report *r) {
    if (strcmp(architecture, CMI_GPTOSS_ARCH)) return;
    const char *fix = "hint: set \"eos_token_id\": [200002, 199999, 200012] in generation_config.json (the updated "
                      "list CMI needs for gpt-oss; `quarry export` writes it)";
    cJSON *gen = NULL;
    char err[1024];
    int rc = read_json(dir, "generation_config.json", &gen, err, sizeof err);
    if (rc != 0) {
        add(r, "generation", CMI_FAIL, "%s\n%s", rc > 0 ? "generation_config.json is missing; CMI needs it for gpt-oss" : err,
            fix);
        cJSON_Delete(gen);
        return;
    }
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(gen, "eos_token_id");
    int have[3] = {0, 0, 0};
    const cJSON *it;
    if (cJSON_IsNumber(eos)) {
        for (int k = 0; k < 3; k++) have[k] |= eos->valuedouble == cmi_gptoss_eos[k];
    } else if (cJSON_IsArray(eos)) {
        cJSON_ArrayForEach(it, eos)
            for (int k = 0; k < 3; k++) have[k] |= cJSON_IsNumber(it) && it->valuedouble == cmi_gptoss_eos[k];
    }
    char *shown = eos ? cJSON_PrintUnformatted(eos) : NULL;
    if (have[0] && have[1] && have[2]) {
        add(r, "generation", CMI_PASS, "generation_config.json eos_token_id %s (gpt-oss)", shown ? shown : "");
    } else {
        add(r, "generation", CMI_FAIL, "generation_config.json eos_token_id is %s; CMI needs gpt-oss's updated EOS ids "
                                      "[200002, 199999, 200012] (<|return|>, <|endoftext|>, <|call|>), or generation does not stop at them\n%s",
            shown ? shown : "absent", fix);
    }
    free(shown);
    cJSON_Delete(gen);
}

static int dtype_name_ok(const char *s) {
    return !strcmp(s, "float32") || !strcmp(s, "float16") || !strcmp(s, "bfloat16");
}

// model/config's message without its "DIR/config.json: error: " (the check's name says which file).
static const char *config_reason(const char *msg) {
    const char *e = strstr(msg, ": error: ");
    return e ? e + 9 : msg;
}

// A config integer: 0 in *v, 1 absent (or null), -1 present but not an integer in [lo, 1e9].
static int cfg_int(const cJSON *cfg, const char *key, long lo, long *v) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!j || cJSON_IsNull(j)) return 1;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < (double)lo ||
        j->valuedouble > 1e9)
        return -1;
    *v = (long)j->valuedouble;
    return 0;
}

// A present key that is not an integer ≥ lo FAILs; an absent one WARNs with transformers' default
// (the defaults of its Qwen3MoeConfig / MixtralConfig), which then has to match the expert tensors.
static int moe_int(cmi_report *r, const cJSON *cfg, const char *key, long lo, long dflt, long *v) {
    int rc = cfg_int(cfg, key, lo, v);
    if (rc < 0) {
        add(r, "moe", CMI_FAIL, "config.json \"%s\" must be an integer >= %ld\nhint: copy it from the base model's "
                                "published config.json", key, lo);
        return -1;
    }
    if (rc == 1) {
        add(r, "moe", CMI_WARN, "config.json has no \"%s\"; transformers will use its default %ld, which must match "
                                "the expert tensors", key, dflt);
        *v = dflt;
    }
    return 0;
}

// The mixture-of-experts keys of Qwen3MoeForCausalLM and MixtralForCausalLM. Checked here whatever
// model/config makes of the config (it may not build these models): a wrong count of experts or
// an out-of-range layer index makes transformers build a model the weights do not fit.
static void check_moe(const cJSON *cfg, const char *architecture, cmi_report *r) {
    int qwen = !strcmp(architecture, "Qwen3MoeForCausalLM");
    if (!qwen && strcmp(architecture, "MixtralForCausalLM")) return;
    int before = r->failed;
    const char *nkey = qwen ? "num_experts" : "num_local_experts";
    const char *ffn = qwen ? "moe_intermediate_size" : "intermediate_size";
    long nexp = 0, topk = 0, inter = 0, step = 1, layers = 0;
    if (moe_int(r, cfg, nkey, 1, qwen ? 128 : 8, &nexp) || moe_int(r, cfg, "num_experts_per_tok", 1, qwen ? 8 : 2, &topk) ||
        moe_int(r, cfg, ffn, 1, qwen ? 768 : 14336, &inter))
        return;
    if (topk > nexp) {
        add(r, "moe", CMI_FAIL, "config.json \"num_experts_per_tok\" is %ld but \"%s\" is %ld: a token cannot be routed "
                                "to more experts than a layer has\nhint: set num_experts_per_tok to at most %ld",
            topk, nkey, nexp, nexp);
        return;
    }
    int nsparse = 0;
    if (cfg_int(cfg, "num_hidden_layers", 1, &layers) != 0) layers = 0;   // the config check says why
    if (qwen) {
        if (moe_int(r, cfg, "decoder_sparse_step", 1, 1, &step)) return;
        const cJSON *only = cJSON_GetObjectItemCaseSensitive(cfg, "mlp_only_layers");
        if (only && !cJSON_IsNull(only) && !cJSON_IsArray(only)) {
            add(r, "moe", CMI_FAIL, "config.json \"mlp_only_layers\" must be a list of layer indices");
            return;
        }
        char *dense = calloc((size_t)layers + 1, 1);
        if (!dense) {
            r->oom = 1;
            return;
        }
        int i = 0, bad = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, only) {
            if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
                (layers > 0 && it->valuedouble >= (double)layers)) {
                char what[64];
                if (cJSON_IsNumber(it)) snprintf(what, sizeof what, "%g", it->valuedouble);
                else snprintf(what, sizeof what, "not a number");
                add(r, "moe", CMI_FAIL, "config.json \"mlp_only_layers\"[%d] is %s, not a layer index of this model "
                                        "(num_hidden_layers %ld: 0 to %ld)\nhint: list only existing layers",
                    i, what, layers, layers - 1);
                bad = 1;
                break;
            }
            if (layers > 0) dense[(long)it->valuedouble] = 1;
            i++;
        }
        for (long l = 0; l < layers; l++) nsparse += !dense[l] && (l + 1) % step == 0;
        free(dense);
        if (bad) return;
    } else {
        nsparse = (int)layers;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(cfg, "norm_topk_prob");
    if (norm && !cJSON_IsBool(norm) && !cJSON_IsNull(norm)) {
        add(r, "moe", CMI_FAIL, "config.json \"norm_topk_prob\" must be true or false");
        return;
    }
    const char *nums[] = {"router_aux_loss_coef", "router_jitter_noise"};
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, nums[k]);
        if (v && !cJSON_IsNull(v) && (!cJSON_IsNumber(v) || !(v->valuedouble >= 0))) {
            add(r, "moe", CMI_FAIL, "config.json \"%s\" must be a number >= 0", nums[k]);
            return;
        }
    }
    if (r->failed == before)
        add(r, "moe", CMI_PASS, "%ld experts, %ld per token, %s %ld; %d of %ld layers sparse", nexp, topk, ffn, inter,
            nsparse, layers);
}

int cmi_preflight(const char *dir, cmi_report *r) {
    memset(r, 0, sizeof *r);
    char err[8192], mc_err[1024];
    cJSON *cfg = NULL, *tok_cfg = NULL;
    st_set *st = NULL;
    int rc;
    if (!fileio_exists(dir)) {
        add(r, "package", CMI_FAIL, "%s does not exist", dir);
        return r->oom ? -1 : 0;
    }
    if (file_exists(dir, "adapter_config.json") && !file_exists(dir, "config.json")) {
        add(r, "package", CMI_FAIL,
            "this is a PEFT adapter; CMI imports full weights only (export with `quarry export --format merged`)");
        return r->oom ? -1 : 0;
    }

    // config.json and the architecture.
    rc = read_json(dir, "config.json", &cfg, err, sizeof err);
    // The reader `quarry train` uses: 0 describes a decoder, -1 cannot (a size missing, a string,
    // 1e12, heads that do not divide), -2 is a model quarry does not implement (checked less).
    model_config mc;
    int mc_rc = -2;
    if (rc == 1) add(r, "config", CMI_FAIL, "config.json is missing");
    else if (rc < 0) add(r, "config", CMI_FAIL, "%s", err);
    else if (!cJSON_IsObject(cfg)) add(r, "config", CMI_FAIL, "config.json is not a JSON object");
    else if ((mc_rc = model_config_load(&mc, dir, mc_err, sizeof mc_err)) == -1)
        add(r, "config", CMI_FAIL, "config.json cannot describe the model: %s\nhint: fix config.json so that "
                                   "`quarry train --model` and transformers can build the model from it",
            config_reason(mc_err));
    else add(r, "config", CMI_PASS, "config.json parses%s", mc_rc == 0 ? " and describes the model" : "");
    const cmi_arch *arch = NULL;
    if (cJSON_IsObject(cfg)) {
        const cJSON *archs = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
        const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
        if (!cJSON_IsString(a0)) {
            add(r, "architecture", CMI_FAIL, "config.json has no \"architectures\" list; CMI detects the architecture from it");
        } else if (!(arch = cmi_arch_find(a0->valuestring))) {
            char list[1024] = "";
            for (int i = 0; i < cmi_narchitectures; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", cmi_architectures[i].architecture);
            }
            add(r, "architecture", CMI_FAIL, "%s is not supported by Custom Model Import (supported as of %s: %s)",
                a0->valuestring, CMI_TABLE_DATE, list);
        } else {
            add(r, "architecture", CMI_PASS, "%s (%s) is supported", arch->architecture, arch->family);
            check_moe(cfg, arch->architecture, r);
            check_generation_config(dir, arch->architecture, r);
        }
    }

    // Weights: readable safetensors (one file or index + shards).
    st = st_open(dir, err, sizeof err);
    if (!st) add(r, "weights", CMI_FAIL, "%s", err);
    else add(r, "weights", CMI_PASS, "%d tensors in safetensors files that parse", st_count(st));

    // dtype: the config's and every tensor's.
    {
        const cJSON *td = cJSON_IsObject(cfg) ? cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype") : NULL;
        if (!td && cJSON_IsObject(cfg)) td = cJSON_GetObjectItemCaseSensitive(cfg, "dtype");
        const char *bad_tensor = NULL, *bad_dtype = NULL;
        int mixed = 0;
        st_dtype first = ST_OTHER;
        for (int i = 0; st && i < st_count(st); i++) {
            const st_tensor *t = st_get(st, i);
            if (t->dtype == ST_OTHER) {
                bad_tensor = t->name;
                bad_dtype = t->dtype_name;
                break;
            }
            if (i == 0) first = t->dtype;
            else mixed |= t->dtype != first;
        }
        if (td && !(cJSON_IsString(td) && dtype_name_ok(td->valuestring))) {
            add(r, "dtype", CMI_FAIL, "config.json torch_dtype is %s; CMI accepts float32, float16 or bfloat16",
                cJSON_IsString(td) ? td->valuestring : "not a string");
        } else if (bad_tensor) {
            add(r, "dtype", CMI_FAIL, "tensor %s has dtype %s; CMI accepts F32, F16 or BF16 weights only", bad_tensor,
                bad_dtype);
        } else if (td && st && st_count(st) > 0 && !mixed &&
                   strcmp(td->valuestring, st_dtype_torch_name(first))) {
            add(r, "dtype", CMI_WARN, "config.json says torch_dtype %s but the tensors are %s", td->valuestring,
                st_dtype_torch_name(first));
        } else if (mixed) {
            add(r, "dtype", CMI_WARN, "tensors mix dtypes (all F32/F16/BF16)");
        } else if (!td) {
            add(r, "dtype", CMI_WARN, "config.json has no torch_dtype (tensors are %s)",
                st && st_count(st) ? st_dtype_torch_name(first) : "absent");
        } else if (!cJSON_GetObjectItemCaseSensitive(cfg, "torch_dtype")) {
            // transformers 5 writes "dtype"; Bedrock runs transformers 4.51.3, which reads torch_dtype.
            add(r, "dtype", CMI_WARN, "config.json names the dtype \"dtype\" (%s) but not \"torch_dtype\", which the "
                                      "transformers 4.51.3 that Bedrock runs reads", td->valuestring);
        } else {
            add(r, "dtype", CMI_PASS, "%s", td->valuestring);
        }
    }

    // Size of the weights.
    if (st) {
        double total = 0;
        for (int i = 0; i < st_count(st); i++) total += (double)st_get(st, i)->nbytes;
        double limit = arch && arch->multimodal ? CMI_MAX_MULTIMODAL_BYTES : CMI_MAX_TEXT_BYTES;
        add(r, "size", total < limit ? CMI_PASS : CMI_FAIL, "weights total %.3f GB (limit: under %.0f GB for %s models)",
            total / 1e9, limit / 1e9, arch && arch->multimodal ? "multimodal" : "text");
    }

    // Context length.
    if (cJSON_IsObject(cfg)) {
        const cJSON *mp = cJSON_GetObjectItemCaseSensitive(cfg, "max_position_embeddings");
        if (!cJSON_IsNumber(mp)) {
            add(r, "context", CMI_WARN, "config.json has no max_position_embeddings");
        } else if (mp->valuedouble > CMI_MAX_POSITIONS) {
            add(r, "context", CMI_FAIL,
                "max_position_embeddings is %.0f; CMI supports context lengths up to 128K (%d)\nhint: lower "
                "max_position_embeddings in config.json to the context you need",
                mp->valuedouble, CMI_MAX_POSITIONS);
        } else {
            add(r, "context", CMI_PASS, "max_position_embeddings %.0f (limit 128K)", mp->valuedouble);
        }
        // Bedrock overrides Llama 3 rope_scaling with factor 8, low 1, high 4, original 8192.
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
        const cJSON *ty = cJSON_IsObject(rs) ? cJSON_GetObjectItemCaseSensitive(rs, "rope_type") : NULL;
        if (!ty && cJSON_IsObject(rs)) ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
        if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "llama3")) {
            const char *keys[] = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
            const double want[] = {8, 1, 4, 8192};
            int differs = 0;
            for (int i = 0; i < 4; i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(rs, keys[i]);
                differs |= !cJSON_IsNumber(v) || v->valuedouble != want[i];
            }
            if (differs)
                add(r, "rope_scaling", CMI_WARN,
                    "Bedrock replaces llama3 rope_scaling with factor 8, low_freq_factor 1, high_freq_factor 4, "
                    "original_max_position_embeddings 8192; this config's values differ, so long-context outputs in "
                    "Bedrock will differ from local ones");
        }
    }

    // Every tensor the config implies, with its shape (for the architectures quarry models; an
    // invalid config has failed above).
    if (st && cJSON_IsObject(cfg) && mc_rc != -1) {
        if (mc_rc) {
            add(r, "tensors", CMI_WARN, "quarry cannot list the tensors this config implies, so names and shapes were "
                                        "not checked: %s", config_reason(mc_err));
        } else if (model_tensor_check(&mc, st, dir, err, sizeof err)) {
            add(r, "tensors", CMI_FAIL, "%s", err);
        } else {
            add(r, "tensors", CMI_PASS, "all %d tensors %s implies are present with their shapes",
                model_tensor_count(&mc), mc.architecture);
        }
    }

    // No NaN or Inf anywhere.
    if (st) {
        int bad = -1;
        long long at = -1;
        for (int i = 0; i < st_count(st) && bad < 0; i++) {
            at = first_nonfinite(st_get(st, i));
            if (at >= 0) bad = i;
        }
        if (bad >= 0) {
            const st_tensor *t = st_get(st, bad);
            add(r, "finite", CMI_FAIL, "tensor %s has a NaN or Inf at element %lld (row %lld)\nhint: the training run "
                                       "diverged; export an earlier checkpoint or lower the learning rate",
                t->name, at, t->ndim > 1 && t->shape[1] ? at / t->shape[1] : at);
        } else {
            add(r, "finite", CMI_PASS, "no NaN or Inf in %d tensors", st_count(st));
        }
    }

    // Tokenizer files and the chat template.
    rc = read_json(dir, "tokenizer_config.json", &tok_cfg, err, sizeof err);
    check_tokenizer(dir, r, tok_cfg, rc, err);
    check_chat_template(dir, r, cJSON_IsObject(tok_cfg) ? tok_cfg : NULL);

    cJSON_Delete(tok_cfg);
    cJSON_Delete(cfg);
    if (st) st_close(st);
    return r->oom ? -1 : 0;
}

void cmi_report_free(cmi_report *r) {
    free(r->checks);
    memset(r, 0, sizeof *r);
}

static const char *status_name(cmi_status s) { return s == CMI_PASS ? "pass" : s == CMI_WARN ? "warn" : "fail"; }

void cmi_report_print(const cmi_report *r, const char *dir, FILE *f) {
    for (int i = 0; i < r->n; i++) {
        const cmi_check *c = &r->checks[i];
        const char *s = c->status == CMI_PASS ? "PASS" : c->status == CMI_WARN ? "WARN" : "FAIL";
        fprintf(f, "%s  %-14s %s\n", s, c->name, c->reason);
    }
    fprintf(f, "preflight %s: %s (%d checks, %d failed, %d warnings; CMI requirements as of %s)\n", dir,
            r->failed ? "FAIL" : "PASS", r->n, r->failed, r->warned, CMI_TABLE_DATE);
}

cJSON *cmi_report_json(const cmi_report *r, const char *dir) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_CreateArray() : NULL;
    int ok = o && arr && cJSON_AddStringToObject(o, "dir", dir) &&
             cJSON_AddStringToObject(o, "result", r->failed ? "fail" : "pass") &&
             cJSON_AddNumberToObject(o, "failed", r->failed) && cJSON_AddNumberToObject(o, "warnings", r->warned) &&
             cJSON_AddStringToObject(o, "table_date", CMI_TABLE_DATE);
    if (ok) ok = cJSON_AddItemToObject(o, "checks", arr);
    else cJSON_Delete(arr);
    for (int i = 0; ok && i < r->n; i++) {
        cJSON *c = cJSON_CreateObject();
        ok = c && cJSON_AddStringToObject(c, "name", r->checks[i].name) &&
             cJSON_AddStringToObject(c, "status", status_name(r->checks[i].status)) &&
             cJSON_AddStringToObject(c, "reason", r->checks[i].reason);
        if (c && !ok) cJSON_Delete(c);
        else if (ok) ok = cJSON_AddItemToArray(arr, c);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
