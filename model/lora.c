// model/lora.c — LoRA settings, target lists and PEFT's initialisation of A.
#include "lora.h"
#include "../kernels/rng.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const target_names[LORA_NUM_TARGETS] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};
static const char *const target_short[LORA_NUM_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};

lora_config lora_config_default(void) {
    lora_config c = {.rank = 8, .alpha = 16.0f, .dropout = 0.05f, .targets = LORA_ALL_LINEAR,
                     .rslora = 0, .seed = 42};
    return c;
}

float lora_scale(const lora_config *c) {
    return c->rslora ? c->alpha / sqrtf((float)c->rank) : c->alpha / (float)c->rank;
}

const char *lora_target_name(lora_target t) {
    return (unsigned)t < LORA_NUM_TARGETS ? target_names[t] : "?";
}

static const struct { const char *name; unsigned mask; } presets[] = {
    {"all-linear", LORA_ALL_LINEAR}, {"all", LORA_ALL_LINEAR}, {"attention", LORA_ATTENTION},
    {"experts", LORA_EXPERTS_BIT}, {"router", LORA_ROUTER_BIT},
};

int lora_targets_parse(const char *text, unsigned *mask, char *err, size_t errlen) {
    static const char known[] = "all-linear, attention, experts, or a comma-separated list of "
                                "q,k,v,o,gate,up,down,experts,router";
    if (!text || !*text) {
        snprintf(err, errlen, "empty LoRA target list; use %s", known);
        return -1;
    }
    unsigned m = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && *p == ' ') { p++; len--; }
        while (len && p[len - 1] == ' ') len--;
        unsigned found = 0;
        for (int t = 0; t < LORA_NUM_TARGETS && !found; t++) {
            if ((strlen(target_short[t]) == len && strncmp(p, target_short[t], len) == 0) ||
                (strlen(target_names[t]) == len && strncmp(p, target_names[t], len) == 0))
                found = 1u << t;
        }
        for (size_t i = 0; i < sizeof presets / sizeof presets[0] && !found; i++)
            if (strlen(presets[i].name) == len && strncmp(p, presets[i].name, len) == 0) found = presets[i].mask;
        if (!found) {
            snprintf(err, errlen, "unknown LoRA target \"%.*s\" in \"%s\"; targets are %s", (int)len, p, text, known);
            return -1;
        }
        m |= found;
        if (!e) break;
        p = e + 1;
    }
    if (!m) {
        snprintf(err, errlen, "no LoRA target in \"%s\"; use %s", text, known);
        return -1;
    }
    *mask = m;
    return 0;
}

char *lora_targets_format(unsigned mask, char *buf, size_t buflen) {
    if (!buflen) return buf;
    buf[0] = '\0';
    size_t used = 0;
    const char *names[LORA_NUM_TARGETS + 3];
    int n = 0;
    if ((mask & LORA_ALL_LINEAR) == LORA_ALL_LINEAR) {
        names[n++] = "all-linear";
    } else {
        for (int t = 0; t < LORA_NUM_TARGETS; t++)
            if (mask & (1u << t)) names[n++] = target_short[t];
        if (mask & LORA_EXPERTS_BIT) names[n++] = "experts";
    }
    if (mask & LORA_ROUTER_BIT) names[n++] = "router";
    for (int i = 0; i < n; i++) {
        int w = snprintf(buf + used, buflen - used, "%s%s", used ? "," : "", names[i]);
        if (w < 0 || (size_t)w >= buflen - used) break;
        used += (size_t)w;
    }
    return buf;
}

int lora_config_check(const lora_config *c, char *err, size_t errlen) {
    if (c->rank < 1) {
        snprintf(err, errlen, "LoRA rank %d must be at least 1 (typical: 8, 16, 32)", c->rank);
        return -1;
    }
    if (!(c->alpha > 0.0f) || !isfinite(c->alpha)) {
        snprintf(err, errlen, "LoRA alpha %g must be a positive number (typical: 2 × rank)", (double)c->alpha);
        return -1;
    }
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) {
        snprintf(err, errlen, "LoRA dropout %g must be in [0, 1) (typical: 0.05)", (double)c->dropout);
        return -1;
    }
    if (!(c->targets & (LORA_ALL_LINEAR | LORA_ROUTER_BIT))) {
        snprintf(err, errlen, "no LoRA target; use all-linear, attention, experts or a list of q,k,v,o,gate,up,down");
        return -1;
    }
    return 0;
}

void lora_init_a(float *a, int r, int in, uint64_t seed, uint64_t stream_id) {
    // kaiming_uniform_(a=sqrt(5)): gain = sqrt(2/(1+5)), bound = gain*sqrt(3/fan_in) = 1/sqrt(in).
    rng_state s = {.seed = rng_mix64(seed ^ rng_mix64(stream_id + 0x4C6F5241ull)), .counter = 0};
    float bound = 1.0f / sqrtf((float)in);
    for (size_t i = 0; i < (size_t)r * (size_t)in; i++)
        a[i] = (2.0f * rng_next_uniform(&s) - 1.0f) * bound;
}

unsigned lora_target_of_module(const char *name) {
    char mod[256];
    const char *cut = strstr(name, ".lora_");
    size_t len = cut ? (size_t)(cut - name) : strlen(name);
    if (len >= sizeof mod) return 0;
    memcpy(mod, name, len);
    mod[len] = '\0';
    if (strstr(mod, "experts.") == mod || strstr(mod, ".experts.")) return LORA_EXPERTS_BIT;
    const char *dot = strrchr(mod, '.'), *leaf = dot ? dot + 1 : mod;
    if (!strcmp(leaf, "gate")) return LORA_ROUTER_BIT;   // Qwen3-MoE's mlp.gate, Mixtral's block_sparse_moe.gate
    // gpt-oss in PEFT's target_parameters layout (model/lora_peft.h): the fused experts' wrappers
    // "mlp.experts" (the inner one "mlp.experts.base_layer", matched above) and the router's.
    if (!strcmp(leaf, "experts")) return LORA_EXPERTS_BIT;
    if (!strcmp(leaf, "router")) return LORA_ROUTER_BIT;
    if (!strcmp(leaf, "w1") || !strcmp(leaf, "w2") || !strcmp(leaf, "w3")) return LORA_EXPERTS_BIT;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (!strcmp(leaf, target_names[t])) return 1u << t;
    return 0;
}

static const char *leaf_of(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

// path → regex, layer and expert indices as \d+ ("model\.layers\.\d+\.mlp\.experts\.\d+\.w1").
static void path_pattern(const char *path, char *out, size_t outlen) {
    size_t o = 0;
    for (const char *p = path; *p && o + 8 < outlen; p++) {
        int after_index = (p - path >= 7 && !strncmp(p - 7, "layers.", 7)) ||
                          (p - path >= 8 && !strncmp(p - 8, "experts.", 8));
        if (after_index && *p >= '0' && *p <= '9') {
            while (p[1] >= '0' && p[1] <= '9') p++;
            o += (size_t)snprintf(out + o, outlen - o, "\\d+");
        } else if (*p == '.') {
            o += (size_t)snprintf(out + o, outlen - o, "\\.");
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

// Adds s to the set (n strings of width w) unless present; returns the new count.
static int set_add(char *set, int n, int cap, size_t w, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(set + (size_t)i * w, s)) return n;
    if (n == cap) return n;
    snprintf(set + (size_t)n * w, w, "%s", s);
    return n + 1;
}

cJSON *lora_peft_target_modules(const char *const *adapted, int n_adapted, const char *const *linear,
                                int n_linear) {
    enum { CAP = 64, W = 256 };
    char *pats = calloc(CAP, W), *leaves = calloc(CAP, W), pat[W];
    cJSON *out = NULL;
    if (!pats || !leaves) goto done;
    int np = 0, nl = 0, ambiguous = 0;
    for (int i = 0; i < n_adapted; i++) {
        path_pattern(adapted[i], pat, sizeof pat);
        np = set_add(pats, np, CAP, W, pat);
        nl = set_add(leaves, nl, CAP, W, leaf_of(adapted[i]));
    }
    // A linear module with an adapted module's last name whose pattern is not adapted: PEFT's
    // suffix match would give it an adapter quarry never trained.
    for (int i = 0; i < n_linear && !ambiguous; i++) {
        int named = 0;
        for (int k = 0; k < nl && !named; k++) named = !strcmp(leaves + (size_t)k * W, leaf_of(linear[i]));
        if (!named) continue;
        path_pattern(linear[i], pat, sizeof pat);
        int found = 0;
        for (int k = 0; k < np && !found; k++) found = !strcmp(pats + (size_t)k * W, pat);
        ambiguous = !found;
    }
    if (!ambiguous) {
        out = cJSON_CreateArray();
        for (int k = 0; out && k < nl; k++) cJSON_AddItemToArray(out, cJSON_CreateString(leaves + (size_t)k * W));
    } else {
        size_t len = 1;
        for (int k = 0; k < np; k++) len += strlen(pats + (size_t)k * W) + 1;
        char *re = malloc(len + 2);
        if (re) {
            size_t o = 0;
            for (int k = 0; k < np; k++) o += (size_t)sprintf(re + o, "%s%s", k ? "|" : "", pats + (size_t)k * W);
            out = cJSON_CreateString(re);
            free(re);
        }
    }
done:
    free(pats);
    free(leaves);
    return out;
}

// A non-empty JSON object or array (rank_pattern and friends).
static int nonempty(const cJSON *v) { return v && (cJSON_IsObject(v) || cJSON_IsArray(v)) && v->child; }

int lora_config_from_peft(const cJSON *c, const char *path, int need_targets, lora_config *lc, char *err,
                          size_t errlen) {
    *lc = lora_config_default();
    lc->dropout = 0.0f;
    lc->targets = 0;
    if (!cJSON_IsObject(c)) {
        snprintf(err, errlen, "%s: not a JSON object\nhint: adapter_config.json is written by PEFT's save_pretrained", path);
        return -1;
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    if (pt && !(cJSON_IsString(pt) && !strcmp(pt->valuestring, "LORA"))) {
        snprintf(err, errlen, "%s: peft_type is not \"LORA\"; quarry applies and merges LoRA adapters only", path);
        return -1;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "r");
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(c, "lora_alpha");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != floor(r->valuedouble) || r->valuedouble > 1e6) {
        snprintf(err, errlen, "%s: \"r\" must be a positive integer", path);
        return -1;
    }
    if (!cJSON_IsNumber(alpha) || !(alpha->valuedouble > 0) || !isfinite(alpha->valuedouble)) {
        snprintf(err, errlen, "%s: \"lora_alpha\" must be a positive number", path);
        return -1;
    }
    lc->rank = (int)r->valuedouble;
    lc->alpha = (float)alpha->valuedouble;
    lc->rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "use_rslora"));
    static const struct { const char *key, *why; } refused[] = {
        {"use_dora", "DoRA adapters (use_dora) are not supported"},
        {"fan_in_fan_out", "fan_in_fan_out adapters (Conv1D models) are not supported"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, refused[i].key))) {
            snprintf(err, errlen, "%s: %s", path, refused[i].why);
            return -1;
        }
    if (nonempty(cJSON_GetObjectItemCaseSensitive(c, "rank_pattern")) ||
        nonempty(cJSON_GetObjectItemCaseSensitive(c, "alpha_pattern"))) {
        snprintf(err, errlen, "%s: per-module rank_pattern/alpha_pattern are not supported (one r and lora_alpha for all)", path);
        return -1;
    }
    if (nonempty(cJSON_GetObjectItemCaseSensitive(c, "modules_to_save"))) {
        snprintf(err, errlen, "%s: modules_to_save is not supported (only lora_A/lora_B are applied)", path);
        return -1;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "target_modules");
    char list[512] = "", e2[256];
    if (cJSON_IsString(t)) {
        snprintf(list, sizeof list, "%s", t->valuestring);
    } else if (cJSON_IsArray(t)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, t) {
            if (!cJSON_IsString(it)) {
                snprintf(err, errlen, "%s: target_modules must be strings", path);
                return -1;
            }
            // PEFT's module names: the router "gate", Mixtral's experts w1/w2/w3 (the names
            // quarry's lists spell router, experts).
            unsigned bit = lora_target_of_module(it->valuestring);
            const char *as = bit == LORA_ROUTER_BIT ? "router" : bit == LORA_EXPERTS_BIT ? "experts" : it->valuestring;
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", l ? "," : "", as);
        }
    } else if (need_targets) {
        snprintf(err, errlen, "%s: target_modules missing", path);
        return -1;
    }
    if (list[0] && lora_targets_parse(list, &lc->targets, e2, sizeof e2) != 0) {
        if (!need_targets) {   // merging goes by the tensors present
            lc->targets = 0;
            return 0;
        }
        snprintf(err, errlen, "%s: %s", path, e2);
        return -1;
    }
    if (need_targets && lora_config_check(lc, e2, sizeof e2) != 0) {
        snprintf(err, errlen, "%s: %s", path, e2);
        return -1;
    }
    return 0;
}

int lora_peft_is_fused_name(const char *name) {
    const char *x = strstr(name, ".mlp.experts.");
    if (!x) return 0;
    x += strlen(".mlp.experts.");
    if (!strncmp(x, "base_layer.", 11)) x += 11;
    return !strncmp(x, "lora_", 5);
}
