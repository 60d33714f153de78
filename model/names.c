// model/names.c — see names.h.
#include "names.h"
#include "mxfp4_load.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const layer_suffix[] = {
    [TENSOR_ATTN_NORM] = "input_layernorm.weight",
    [TENSOR_Q] = "self_attn.q_proj.weight",
    [TENSOR_Q_BIAS] = "self_attn.q_proj.bias",
    [TENSOR_K] = "self_attn.k_proj.weight",
    [TENSOR_K_BIAS] = "self_attn.k_proj.bias",
    [TENSOR_V] = "self_attn.v_proj.weight",
    [TENSOR_V_BIAS] = "self_attn.v_proj.bias",
    [TENSOR_O] = "self_attn.o_proj.weight",
    [TENSOR_Q_NORM] = "self_attn.q_norm.weight",
    [TENSOR_K_NORM] = "self_attn.k_norm.weight",
    [TENSOR_MLP_NORM] = "post_attention_layernorm.weight",
    [TENSOR_GATE] = "mlp.gate_proj.weight",
    [TENSOR_UP] = "mlp.up_proj.weight",
    [TENSOR_DOWN] = "mlp.down_proj.weight",
};

void model_tensor_name(tensor_role role, int layer, char *buf, size_t n) {
    switch (role) {
    case TENSOR_EMBED: snprintf(buf, n, "model.embed_tokens.weight"); break;
    case TENSOR_FINAL_NORM: snprintf(buf, n, "model.norm.weight"); break;
    case TENSOR_LM_HEAD: snprintf(buf, n, "lm_head.weight"); break;
    default: snprintf(buf, n, "model.layers.%d.%s", layer, layer_suffix[role]); break;
    }
}

void model_tensor_name_of(const model_config *cfg, tensor_role role, int layer, int expert, char *buf, size_t n) {
    int mixtral = cfg->arch == ARCH_MIXTRAL;
    const char *block = mixtral ? "block_sparse_moe" : "mlp";
    // gate, up, down: Mixtral's w1, w3, w2.
    const char *proj = role == TENSOR_EXPERT_GATE ? (mixtral ? "w1" : "gate_proj")
                       : role == TENSOR_EXPERT_UP ? (mixtral ? "w3" : "up_proj")
                                                  : (mixtral ? "w2" : "down_proj");
    if (role == TENSOR_ROUTER)
        snprintf(buf, n, "model.layers.%d.%s.gate.weight", layer, block);
    else if (role == TENSOR_EXPERT_GATE || role == TENSOR_EXPERT_UP || role == TENSOR_EXPERT_DOWN)
        snprintf(buf, n, "model.layers.%d.%s.experts.%d.%s.weight", layer, block, expert, proj);
    else
        model_tensor_name(role, layer, buf, n);
}

int model_tensor_count(const model_config *cfg) {
    int attn = 6 + (cfg->attention_bias ? 3 : 0) + (cfg->qk_norm ? 2 : 0);
    int n = 1 + cfg->num_layers * attn + 1 + (cfg->tie_word_embeddings ? 0 : 1);
    for (int l = 0; l < cfg->num_layers; l++) n += model_config_layer_is_moe(cfg, l) ? 1 + 3 * cfg->n_experts : 3;
    return n;
}

static void put_x(const model_config *cfg, model_tensor_info *t, tensor_role role, int layer, int expert, int ndim,
                  int64_t d0, int64_t d1) {
    memset(t, 0, sizeof *t);
    model_tensor_name_of(cfg, role, layer, expert, t->name, sizeof t->name);
    t->role = role;
    t->layer = layer;
    t->expert = expert;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim > 1 ? d1 : 0;
    int norm = role == TENSOR_ATTN_NORM || role == TENSOR_MLP_NORM || role == TENSOR_FINAL_NORM ||
               role == TENSOR_Q_NORM || role == TENSOR_K_NORM;
    t->init = norm ? TENSOR_INIT_ONES
              : (role == TENSOR_Q_BIAS || role == TENSOR_K_BIAS || role == TENSOR_V_BIAS) ? TENSOR_INIT_ZEROS
                                                                                          : TENSOR_INIT_NORMAL;
}

#define put(t, role, layer, ndim, d0, d1) put_x(cfg, t, role, layer, -1, ndim, d0, d1)

int model_tensor_list(const model_config *cfg, model_tensor_info *out) {
    const int64_t C = cfg->hidden_size, V = cfg->vocab_size, F = cfg->intermediate_size;
    const int64_t q = (int64_t)cfg->num_heads * cfg->head_dim, kv = (int64_t)cfg->num_kv_heads * cfg->head_dim;
    int n = 0;
    put(&out[n++], TENSOR_EMBED, -1, 2, V, C);
    for (int l = 0; l < cfg->num_layers; l++) {
        put(&out[n++], TENSOR_ATTN_NORM, l, 1, C, 0);
        put(&out[n++], TENSOR_Q, l, 2, q, C);
        if (cfg->attention_bias) put(&out[n++], TENSOR_Q_BIAS, l, 1, q, 0);
        put(&out[n++], TENSOR_K, l, 2, kv, C);
        if (cfg->attention_bias) put(&out[n++], TENSOR_K_BIAS, l, 1, kv, 0);
        put(&out[n++], TENSOR_V, l, 2, kv, C);
        if (cfg->attention_bias) put(&out[n++], TENSOR_V_BIAS, l, 1, kv, 0);
        put(&out[n++], TENSOR_O, l, 2, C, q);
        if (cfg->qk_norm) {
            put(&out[n++], TENSOR_Q_NORM, l, 1, cfg->head_dim, 0);
            put(&out[n++], TENSOR_K_NORM, l, 1, cfg->head_dim, 0);
        }
        put(&out[n++], TENSOR_MLP_NORM, l, 1, C, 0);
        if (model_config_layer_is_moe(cfg, l)) {
            const int64_t I = cfg->moe_intermediate_size;
            put(&out[n++], TENSOR_ROUTER, l, 2, cfg->n_experts, C);
            for (int e = 0; e < cfg->n_experts; e++) {   // the published order: expert by expert
                put_x(cfg, &out[n++], TENSOR_EXPERT_GATE, l, e, 2, I, C);
                put_x(cfg, &out[n++], TENSOR_EXPERT_UP, l, e, 2, I, C);
                put_x(cfg, &out[n++], TENSOR_EXPERT_DOWN, l, e, 2, C, I);
            }
            continue;
        }
        put(&out[n++], TENSOR_GATE, l, 2, F, C);
        put(&out[n++], TENSOR_UP, l, 2, F, C);
        put(&out[n++], TENSOR_DOWN, l, 2, C, F);
    }
    put(&out[n++], TENSOR_FINAL_NORM, -1, 1, C, 0);
    if (!cfg->tie_word_embeddings) put(&out[n++], TENSOR_LM_HEAD, -1, 2, V, C);
    return n;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int model_tensor_check(const model_config *cfg, const st_set *s, const char *source, char *err, size_t errlen) {
    int n = model_tensor_count(cfg);
    model_tensor_info *list = malloc(sizeof *list * (size_t)n);
    if (!list) {
        snprintf(err, errlen, "%s: out of memory", source);
        return -1;
    }
    model_tensor_list(cfg, list);
    int rc = -1, mxfp4 = mxfp4_checkpoint(source);
    const char **sorted = NULL;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_find(s, list[i].name);
        char want[64], got[64];
        shape_str(want, sizeof want, list[i].ndim, list[i].shape);
        if (!t && mxfp4) {   // stored as NAME_blocks + NAME_scales: check the dequantised shape
            mxfp4_pair pair;
            int r = mxfp4_pair_find(s, list[i].name, &pair, source, err, errlen);
            if (r < 0) goto done;
            if (r > 0) {
                int same = pair.ndim == list[i].ndim;
                for (int d = 0; same && d < pair.ndim; d++) same = pair.dq_shape[d] == list[i].shape[d];
                if (!same) {
                    shape_str(got, sizeof got, pair.ndim, pair.dq_shape);
                    snprintf(err, errlen, "%s: tensor \"%s\" dequantised from MXFP4 has shape %s; the config implies %s",
                             source, list[i].name, got, want);
                    goto done;
                }
                continue;
            }
        }
        if (!t) {
            char moe[96] = "";
            if (cfg->n_experts > 0)
                snprintf(moe, sizeof moe, ", %d experts in layer %d", cfg->n_experts, list[i].layer);
            snprintf(err, errlen, "%s: tensor \"%s\" %s is missing; the config (%s, %d layers%s%s%s) implies it", source,
                     list[i].name, want, cfg->architecture, cfg->num_layers,
                     cfg->attention_bias ? ", attention_bias" : "", cfg->qk_norm ? ", q/k norms" : "",
                     list[i].layer >= 0 && model_config_layer_is_moe(cfg, list[i].layer) ? moe : "");
            goto done;
        }
        int same = t->ndim == list[i].ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == list[i].shape[d];
        if (!same) {
            shape_str(got, sizeof got, t->ndim, t->shape);
            snprintf(err, errlen, "%s: tensor \"%s\" has shape %s; the config implies %s%s", source, list[i].name, got, want,
                     list[i].role == TENSOR_ROUTER ? " (the router: num_experts × hidden_size)" : "");
            goto done;
        }
        if (t->dtype == ST_OTHER) {
            snprintf(err, errlen, "%s: tensor \"%s\" has dtype %s; supported: F32, F16, BF16", source, list[i].name,
                     t->dtype_name);
            goto done;
        }
    }
    // Nothing unexpected: every tensor of the file must be one of the list (sorted names and a
    // binary search: an MoE checkpoint has tens of thousands of tensors).
    sorted = malloc(sizeof *sorted * (size_t)n);
    if (!sorted) {
        snprintf(err, errlen, "%s: out of memory", source);
        goto done;
    }
    for (int i = 0; i < n; i++) sorted[i] = list[i].name;
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_get(s, i);
        if (ends_with(t->name, ".rotary_emb.inv_freq")) continue;
        if (cfg->tie_word_embeddings && !strcmp(t->name, "lm_head.weight")) continue;
        char stem[512];
        const char *key = mxfp4 && mxfp4_pair_part(t->name, stem, sizeof stem) ? stem : t->name;
        int found = bsearch(&key, sorted, (size_t)n, sizeof *sorted, cmp_name) != NULL;
        if (!found) {
            snprintf(err, errlen, "%s: unexpected tensor \"%s\" for %s with %d layers%s", source, t->name,
                     cfg->architecture, cfg->num_layers,
                     strstr(t->name, "bias") && !cfg->attention_bias ? " (biases, but attention_bias is false)" : "");
            goto done;
        }
    }
    rc = 0;
done:
    free(sorted);
    free(list);
    return rc;
}
