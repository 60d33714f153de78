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
        if ((is_a && t->shape[0] != a->r) || (is_b && t->shape[1] != a->r)) {
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
