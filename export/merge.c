// export/merge.c — see merge.h.
#include "merge.h"
#include "../data/fileio.h"
#include "../model/lora.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char PEFT_PREFIX[] = "base_model.model.";

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

int merge_adapter_open(merge_adapter *a, const char *dir, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text = NULL;
    size_t len = 0;
    if (fileio_read_all(path, &text, &len, err, errlen)) return -1;
    a->config = cJSON_ParseWithLength(text, len);
    free(text);
    lora_config lc;
    if (lora_config_from_peft(a->config, path, 0, &lc, err, errlen)) goto fail;
    const cJSON *c = a->config;
    a->r = lc.rank;
    a->alpha = cJSON_GetObjectItemCaseSensitive(c, "lora_alpha")->valuedouble;   // as written, not lc's float
    a->rslora = lc.rslora;
    a->scale = a->rslora ? a->alpha / sqrt((double)a->r) : a->alpha / (double)a->r;
    const cJSON *bm = cJSON_GetObjectItemCaseSensitive(c, "base_model_name_or_path");
    a->base_model = cJSON_IsString(bm) ? bm->valuestring : "";

    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    a->weights = st_open(path, err, errlen);
    if (!a->weights) goto fail;
    // Every tensor is a lora_A or lora_B under the PEFT prefix, in pairs, with rank r.
    int n = st_count(a->weights);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_get(a->weights, i);
        int is_a = ends_with(t->name, ".lora_A.weight"), is_b = ends_with(t->name, ".lora_B.weight");
        if (strncmp(t->name, PEFT_PREFIX, sizeof PEFT_PREFIX - 1) || (!is_a && !is_b)) {
            snprintf(err, errlen,
                     "%s: tensor %s is not a LoRA weight (base_model.model.<module>.lora_A.weight / lora_B.weight)",
                     path, t->name);
            goto fail;
        }
        if (t->dtype == ST_OTHER || t->ndim != 2) {
            snprintf(err, errlen, "%s: tensor %s must be a 2-D F32/F16/BF16 matrix (has %d dims, dtype %s)", path,
                     t->name, t->ndim, t->dtype_name);
            goto fail;
        }
        // gpt-oss's fused experts (PEFT's target_parameters): A (r·E, in), B (out, r·E).
        int64_t rows = is_a ? t->shape[0] : t->shape[1];
        int fused = lora_peft_is_fused_name(t->name) && rows % a->r == 0 && rows > 0;
        if (!fused && ((is_a && t->shape[0] != a->r) || (is_b && t->shape[1] != a->r))) {
            snprintf(err, errlen, "%s: tensor %s has shape [%lld, %lld], but r is %d in adapter_config.json", path,
                     t->name, (long long)t->shape[0], (long long)t->shape[1], a->r);
            goto fail;
        }
        char other[512];
        snprintf(other, sizeof other, "%.*s%s", (int)(strlen(t->name) - strlen(".lora_A.weight")), t->name,
                 is_a ? ".lora_B.weight" : ".lora_A.weight");
        if (!st_find(a->weights, other)) {
            snprintf(err, errlen, "%s: %s has no matching %s", path, t->name, other);
            goto fail;
        }
        a->pairs += is_a;
    }
    if (a->pairs == 0) {
        snprintf(err, errlen, "%s: no lora_A/lora_B tensors", path);
        goto fail;
    }
    return 0;
fail:
    merge_adapter_close(a);
    return -1;
}

void merge_adapter_close(merge_adapter *a) {
    if (a->weights) st_close(a->weights);
    cJSON_Delete(a->config);
    a->weights = NULL;
    a->config = NULL;
}

int merge_adapter_find(const merge_adapter *a, const char *weight_name, int64_t out, int64_t in,
                       const st_tensor **A, const st_tensor **B, char *err, size_t errlen) {
    *A = *B = NULL;
    if (!ends_with(weight_name, ".weight")) return 0;
    int stem = (int)(strlen(weight_name) - strlen(".weight"));
    char name[512];
    snprintf(name, sizeof name, "%s%.*s.lora_A.weight", PEFT_PREFIX, stem, weight_name);
    const st_tensor *ta = st_find(a->weights, name);
    if (!ta) return 0;
    snprintf(name, sizeof name, "%s%.*s.lora_B.weight", PEFT_PREFIX, stem, weight_name);
    const st_tensor *tb = st_find(a->weights, name);
    if (!tb) return 0;   // merge_adapter_open made sure pairs are complete
    if (ta->shape[1] != in || tb->shape[0] != out) {
        snprintf(err, errlen,
                 "%s/adapter_model.safetensors: the adapter of %s has A [%lld, %lld] and B [%lld, %lld], but the base "
                 "weight is [%lld, %lld]\nhint: the adapter was trained on a different base model",
                 a->dir, weight_name, (long long)ta->shape[0], (long long)ta->shape[1], (long long)tb->shape[0],
                 (long long)tb->shape[1], (long long)out, (long long)in);
        return -1;
    }
    *A = ta;
    *B = tb;
    return 1;
}

void merge_lora_f32(float *w, const float *a, const float *b, int64_t out, int64_t in, int r, double scale) {
    // Row o of the update is Σ_k b[o,k] · a[k,:]; each thread accumulates a row of doubles.
#pragma omp parallel
    {
        double *acc = malloc(sizeof(double) * (size_t)(in > 0 ? in : 1));
#pragma omp for schedule(static)
        for (int64_t o = 0; o < out; o++) {
            float *wo = w + o * in;
            if (!acc) {   // no scratch (out of memory): the same sums, element by element
                for (int64_t i = 0; i < in; i++) {
                    double s = 0.0;
                    for (int k = 0; k < r; k++) s += (double)b[o * r + k] * (double)a[(int64_t)k * in + i];
                    wo[i] = (float)((double)wo[i] + scale * s);
                }
                continue;
            }
            for (int64_t i = 0; i < in; i++) acc[i] = 0.0;
            for (int k = 0; k < r; k++) {
                const double bk = (double)b[o * r + k];
                const float *ak = a + (int64_t)k * in;
                for (int64_t i = 0; i < in; i++) acc[i] += bk * (double)ak[i];
            }
            for (int64_t i = 0; i < in; i++) wo[i] = (float)((double)wo[i] + scale * acc[i]);
        }
        free(acc);
    }
}

void merge_convert(const float *src, size_t n, st_dtype dtype, void *dst) {
    if (dtype == ST_F32) {
        if (dst != src) memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *h = dst;
    const long long nn = (long long)n;
    if (dtype == ST_BF16) {
#pragma omp parallel for schedule(static)
        for (long long i = 0; i < nn; i++) h[i] = f32_to_bf16(src[i]);
    } else {
#pragma omp parallel for schedule(static)
        for (long long i = 0; i < nn; i++) h[i] = f32_to_f16(src[i]);
    }
}

size_t merge_dtype_size(st_dtype d) {
    return d == ST_F32 ? 4 : (d == ST_F16 || d == ST_BF16) ? 2 : 0;
}

// The PEFT names of the fused tensor's pair: the inner wrapper ("experts.base_layer") is
// gate_up_proj when both are adapted; a lone "experts" pair is the one target_parameters names.
int merge_adapter_find_fused(const merge_adapter *a, const char *tensor_name, int64_t E, int64_t in, int64_t out,
                             const st_tensor **A, const st_tensor **B, char *err, size_t errlen) {
    *A = *B = NULL;
    int l, used = 0;
    char what[32];
    if (sscanf(tensor_name, "model.layers.%d.mlp.experts.%31[a-z_]%n", &l, what, &used) != 2 || tensor_name[used])
        return 0;
    int gate_up = !strcmp(what, "gate_up_proj");
    if (!gate_up && strcmp(what, "down_proj")) return 0;
    char inner[256], outer[256], name[320];
    snprintf(inner, sizeof inner, "%smodel.layers.%d.mlp.experts.base_layer", PEFT_PREFIX, l);
    snprintf(outer, sizeof outer, "%smodel.layers.%d.mlp.experts", PEFT_PREFIX, l);
    snprintf(name, sizeof name, "%s.lora_A.weight", inner);
    int nested = st_find(a->weights, name) != NULL;
    const char *stem = NULL;
    if (nested) {
        stem = gate_up ? inner : outer;
    } else {
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(a->config, "target_parameters"), *it;
        int named = 0;
        cJSON_ArrayForEach(it, tp) {
            if (!cJSON_IsString(it)) continue;
            size_t n = strlen(it->valuestring), w = strlen(what);
            named |= n >= w && !strcmp(it->valuestring + n - w, what);
        }
        if (named) stem = outer;
    }
    if (!stem) return 0;
    snprintf(name, sizeof name, "%s.lora_A.weight", stem);
    const st_tensor *ta = st_find(a->weights, name);
    snprintf(name, sizeof name, "%s.lora_B.weight", stem);
    const st_tensor *tb = st_find(a->weights, name);
    if (!ta || !tb) return 0;
    int64_t rE = (int64_t)a->r * E;
    if (ta->shape[0] != rE || ta->shape[1] != in || tb->shape[0] != out || tb->shape[1] != rE) {
        snprintf(err, errlen,
                 "%s/adapter_model.safetensors: the adapter of %s has A [%lld, %lld] and B [%lld, %lld], but %lld "
                 "experts of [%lld, %lld] at r %d need A [%lld, %lld] and B [%lld, %lld]\n"
                 "hint: the adapter was trained on a different base model",
                 a->dir, tensor_name, (long long)ta->shape[0], (long long)ta->shape[1], (long long)tb->shape[0],
                 (long long)tb->shape[1], (long long)E, (long long)in, (long long)out, a->r, (long long)rE,
                 (long long)in, (long long)out, (long long)rE);
        return -1;
    }
    *A = ta;
    *B = tb;
    return 1;
}

void merge_lora_fused_f32(float *w, const float *a, const float *b, int64_t E, int64_t in, int64_t out, int r,
                          double scale) {
    // PEFT's get_delta_weight: ΔW[e][i][o] = scale · Σ_ρ B[o][ρ·E + e] · A[e·r + ρ][i].
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t e = 0; e < E; e++)
        for (int64_t i = 0; i < in; i++) {
            float *wi = w + (e * in + i) * out;
            for (int64_t o = 0; o < out; o++) {
                double s = 0.0;
                for (int k = 0; k < r; k++)
                    s += (double)b[o * r * E + (int64_t)k * E + e] * (double)a[(e * r + k) * in + i];
                wi[o] = (float)((double)wi[o] + scale * s);
            }
        }
}
